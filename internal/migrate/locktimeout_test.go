package migrate

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestABlockedMigrationGivesUpNamingTheBlockerAndARetrySucceeds(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{"001_t.sql": mig("create table t (n int);")}
	if _, err := run(d, fsys, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	fsys["002_alter.sql"] = mig("alter table t add column m int;")
	fsys["003_more.sql"] = mig("alter table t add column o int;")

	// A session that wrote to t and sits idle in its transaction.
	ctx := context.Background()
	blocker, pid := db.IdleInTransaction(t, "the blocker", "insert into t values (1)")

	var out bytes.Buffer
	_, err := Run(ctx, Options{DSN: d, FS: fsys, Out: &out, LockTimeout: time.Minute, LockWait: 500 * time.Millisecond})
	var lw *LockWaitError
	if !errors.As(err, &lw) {
		t.Fatalf("err = %v, want *LockWaitError\n%s", err, out.String())
	}
	if lw.Migration.Name != "002_alter.sql" || lw.Relation != "public.t" || len(lw.Blockers) != 1 || names(lw.NotApplied) != "003_more.sql" {
		t.Fatalf("got %+v", lw)
	}
	b := lw.Blockers[0]
	if b.PID != pid || b.ApplicationName != "the blocker" || b.State != "idle in transaction" || b.XactStart.IsZero() || b.BackendStart.IsZero() {
		t.Fatalf("blocker %+v, want pid %d 'the blocker' idle in transaction", b, pid)
	}
	for _, w := range []string{"002_alter.sql", "table public.t", "rolled back", "pid " + strconv.Itoa(pid), `"the blocker"`,
		"idle in transaction", "pg_terminate_backend(" + strconv.Itoa(pid) + ")", "MIGRATION_LOCK_WAIT"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message lacks %q:\n%v", w, err)
		}
	}
	if got := applied(t, db); got != "001" {
		t.Fatalf("applied %s, want 001", got)
	}
	if got := query(t, db, "select count(*)::text from information_schema.columns where table_name = 't'"); got != "1" {
		t.Fatalf("t has %s columns: the migration was not rolled back", got)
	}

	if _, err := blocker.Exec(ctx, "rollback"); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, Options{DSN: d, FS: fsys, Out: &out, LockTimeout: time.Minute, LockWait: 500 * time.Millisecond}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := applied(t, db); got != "001,002,003" {
		t.Fatalf("applied %s after the retry", got)
	}
}

func TestALockTimeoutOfATransactionFalseMigrationStaysAFailureThatNamesLeftovers(t *testing.T) {
	// lock_timeout ends CREATE INDEX CONCURRENTLY's wait too; what it left
	// behind matters more than who blocked it.
	db, d := setup(t)
	fsys := fstest.MapFS{"001_t.sql": mig("create table t (n int);")}
	if _, err := run(d, fsys, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	fsys["002_i.sql"] = &fstest.MapFile{Data: []byte("-- migrate:up transaction:false\ncreate index concurrently t_n on t (n);\n-- migrate:down\ndrop index t_n;\n")}
	ctx := context.Background()
	blocker := db.Conn(t)
	if _, err := blocker.Exec(ctx, "begin; lock table t in access exclusive mode"); err != nil {
		t.Fatal(err)
	}
	defer blocker.Exec(ctx, "rollback")
	_, err := Run(ctx, Options{DSN: d, FS: fsys, Out: &bytes.Buffer{}, LockTimeout: time.Minute, LockWait: 300 * time.Millisecond})
	var f *FailedError
	var lw *LockWaitError
	if !errors.As(err, &f) || !f.NonTransactional || errors.As(err, &lw) {
		t.Fatalf("err = %v, want a non-transactional *FailedError", err)
	}
}
