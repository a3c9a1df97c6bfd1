package pgtest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestNewDatabaseAcceptsItsOwnerByURLKeywordValueAndSocket(t *testing.T) {
	db := Shared(t).NewDatabase(t)
	for _, dsn := range []string{db.URL(), db.KeywordValue(), db.SocketKeywordValue()} {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		var who string
		if err := c.QueryRow(context.Background(), "select current_user").Scan(&who); err != nil || who != db.User {
			t.Fatalf("current_user = %q, %v; want %q", who, err, db.User)
		}
		c.Close(context.Background())
	}
}

func TestWrongPasswordIsRefused(t *testing.T) {
	db := Shared(t).NewDatabase(t)
	db.Password = "wrong"
	if c, err := pgx.Connect(context.Background(), db.URL()); err == nil {
		c.Close(context.Background())
		t.Fatal("connected with a wrong password: password authentication is not enforced")
	}
}

func TestIdleInTransactionHoldsItsLocksUntilRollback(t *testing.T) {
	db := Shared(t).NewDatabase(t)
	db.MustExec(t, "create table t (n int)")
	holder, pid := db.IdleInTransaction(t, "the holder's job", "lock table t in access exclusive mode")
	session := `select application_name || ' ' || state from pg_stat_activity where pid = ` + strconv.Itoa(pid)
	if got := db.QueryString(t, session); got != "the holder's job idle in transaction" {
		t.Fatalf("session %d: %q, want the holder's job idle in transaction", pid, got)
	}
	locked := `select count(*)::text from pg_locks where relation = 't'::regclass and mode = 'AccessExclusiveLock' and pid = ` + strconv.Itoa(pid)
	if got := db.QueryString(t, locked); got != "1" {
		t.Fatalf("%s locks held by the holder, want 1", got)
	}
	if _, err := holder.Exec(context.Background(), "rollback"); err != nil {
		t.Fatal(err)
	}
	if got := db.QueryString(t, locked); got != "0" {
		t.Fatalf("%s locks held after rollback, want 0", got)
	}
}

func TestStartRunsWithoutFsyncAndStartWithFsyncRunsDurable(t *testing.T) {
	durable, err := StartWith(StartOptions{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer durable.Stop()
	for _, c := range []struct {
		name string
		srv  *Server
		want string
	}{{"Start", Shared(t), "off off"}, {"StartWith(Fsync)", durable, "on on"}} {
		conn, err := pgx.Connect(context.Background(), c.srv.SuperURL("postgres"))
		if err != nil {
			t.Fatalf("%s: connect: %v", c.name, err)
		}
		var got string
		err = conn.QueryRow(context.Background(), "select current_setting('fsync') || ' ' || current_setting('full_page_writes')").Scan(&got)
		conn.Close(context.Background())
		if err != nil || got != c.want {
			t.Errorf("%s: fsync, full_page_writes = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

// Under scripts/pg-matrix.sh each run must be on the major it names: a
// server of another major (a wrong PG_BINDIR) fails the start.
func TestTheServerIsTheMajorTheMatrixAsksFor(t *testing.T) {
	s := Shared(t)
	if s.VersionNum < 130000 || s.Major() != s.VersionNum/10000 {
		t.Fatalf("VersionNum %d, Major %d", s.VersionNum, s.Major())
	}
	if want := os.Getenv(MajorVar); want != "" && want != strconv.Itoa(s.Major()) {
		t.Fatalf("%s=%s but the shared server is %d", MajorVar, want, s.Major())
	}
	t.Setenv(MajorVar, strconv.Itoa(s.Major()+1))
	if other, err := Start(); err == nil {
		other.Stop()
		t.Fatalf("with %s=%d a PostgreSQL %d server started", MajorVar, s.Major()+1, s.Major())
	} else if !strings.Contains(err.Error(), "PostgreSQL "+strconv.Itoa(s.Major())) {
		t.Fatalf("the error does not name the server's major: %v", err)
	}
}

// Autovacuum reaches a few rows just loaded within seconds on a test
// server, as it reaches a real-size database at default settings: tests
// meet the sessions it opens (a database's owner may not end them).
func TestAutovacuumWorksOnAFreshlyLoadedDatabaseWithinSeconds(t *testing.T) {
	db := Shared(t).NewDatabase(t)
	db.MustExec(t, "create table loaded (n int); insert into loaded select generate_series(1, 10)")
	deadline := time.Now().Add(20 * time.Second)
	for db.QueryString(t, "select (last_autoanalyze is not null or last_autovacuum is not null)::text from pg_stat_user_tables where relname = 'loaded'") != "true" {
		if time.Now().After(deadline) {
			t.Fatalf("autovacuum has not reached 10 freshly inserted rows in 20 s (autovacuum_naptime %s)",
				db.QueryString(t, "select current_setting('autovacuum_naptime')"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	durable, err := StartWith(StartOptions{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer durable.Stop()
	conn, err := pgx.Connect(context.Background(), durable.SuperURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var naptime string
	if err := conn.QueryRow(context.Background(), "select current_setting('autovacuum_naptime')").Scan(&naptime); err != nil || naptime != "1min" {
		t.Errorf("a benchmark's server runs autovacuum_naptime %q (%v), want the default 1min", naptime, err)
	}
}
