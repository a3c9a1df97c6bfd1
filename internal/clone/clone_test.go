package clone

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var roleSeq atomic.Int64

// newRole creates a login role (with a password) that is dropped after
// everything the test registers later, so after its databases.
func newRole(t *testing.T, attrs string) (name, password string) {
	t.Helper()
	srv := pgtest.Shared(t)
	name = fmt.Sprintf("ow_role_%d_%d", os.Getpid(), roleSeq.Add(1))
	password = "pw" + name
	superExec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' %s", name, password, attrs))
	t.Cleanup(func() { srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+ident(name)) })
	return name, password
}

// appExec runs sql as the app role on a connection of its own, closed at once
// (pgtest's MustExec keeps its session until the test ends).
func appExec(t *testing.T, db *pgtest.Database, sql string) {
	t.Helper()
	c, err := pgx.Connect(context.Background(), db.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func superExec(t *testing.T, db, sql string) {
	t.Helper()
	if err := pgtest.Shared(t).Exec(context.Background(), db, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func superConn(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), pgtest.Shared(t).SuperURL(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func superString(t *testing.T, db, sql string, args ...any) string {
	t.Helper()
	c, err := pgx.Connect(context.Background(), pgtest.Shared(t).SuperURL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var s string
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// appDB is a database owned by an app role with CREATEDB, with rows and a
// sequence, and its parsed DSN. Clones of it and databases a restore kept
// are dropped at the end.
func appDB(t *testing.T) (*pgtest.Database, *dsn.DSN) {
	t.Helper()
	db := pgtest.Shared(t).NewDatabase(t)
	superExec(t, "postgres", fmt.Sprintf("ALTER ROLE %s CREATEDB", ident(db.User)))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pgtest.Shared(t).SuperURL("postgres"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		rows, _ := c.Query(context.Background(), `select datname from pg_database where datname like $1 or (datname like 'openwatch\_rp\_%' and shobj_description(oid, 'pg_database') like $2)`,
			db.Name+keptSuffix+"%", `%"source":"`+db.Name+`"%`)
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, n := range names {
			c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident(n)+" WITH (FORCE)")
		}
	})
	appExec(t, db, `create table hosts (id bigserial primary key, name text not null, data jsonb);
		insert into hosts (name, data) select 'host-' || g, jsonb_build_object('n', g) from generate_series(1, 500) g;
		create sequence tickets start 7; select nextval('tickets'), nextval('tickets');`)
	d, err := dsn.Parse(db.URL())
	if err != nil {
		t.Fatal(err)
	}
	return db, d
}

// fingerprint is the content of the app's tables and sequences.
func fingerprint(t *testing.T, dbName string) string {
	return superString(t, dbName, `select md5(string_agg(h::text, '|' order by id)) || ' ' ||
		(select last_value || '/' || is_called from hosts_id_seq) || ' ' || (select last_value || '/' || is_called from tickets) from hosts h`)
}

func properties(t *testing.T, dbName string) Properties {
	t.Helper()
	p, err := readProperties(context.Background(), superConn(t, "postgres"), dbName)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dbOID(t *testing.T, name string) string {
	t.Helper()
	return superString(t, "postgres", "select coalesce((select oid::text from pg_database where datname = $1), 'missing')", name)
}

func eligible(t *testing.T, url string, mode Mode) Decision {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	dec, err := Eligible(context.Background(), c, Options{Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return dec
}

func TestNames(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	n, err := Name("20240601120000", at)
	if err != nil || n != "openwatch_rp_20240601120000_20250102t020405z" || !IsName(n) || len(n) > 63 {
		t.Fatalf("Name = %q, %v", n, err)
	}
	if n, _ := Name("", at); n != "openwatch_rp_none_20250102t020405z" || !IsName(n) {
		t.Fatalf("Name without schema = %q", n)
	}
	if _, err := Name("1; drop", at); err == nil {
		t.Fatal("a schema version that is not digits named a clone")
	}
	for _, s := range []string{"openwatch", "openwatch_rp_1_20250102T020405Z", "openwatch_rp_1_20250102t020405z_x", "app"} {
		if IsName(s) {
			t.Errorf("IsName(%q) = true", s)
		}
	}
	long := strings.Repeat("é", 40) // 80 bytes
	k := KeptName(long, at)
	if len(k) > 63 || !strings.HasSuffix(k, "_before_restore_20250102t020405z") || !strings.HasPrefix(long, strings.TrimSuffix(k, "_before_restore_20250102t020405z")) {
		t.Fatalf("KeptName = %q (%d bytes)", k, len(k))
	}
	if k := KeptName("app", at); k != "app_before_restore_20250102t020405z" {
		t.Fatalf("KeptName = %q", k)
	}
}

func TestNeedSpace(t *testing.T) {
	const gib = int64(1 << 30)
	for _, c := range []struct {
		name            string
		free, total, db int64
		wantNeed        int64
		wantOK          bool
	}{
		{"a small file system keeps at least 1 GiB free", 2 * gib, 5 * gib, gib, 2 * gib, true},
		{"one byte short on a small file system", 2*gib - 1, 5 * gib, gib, 2 * gib, false},
		{"a large file system keeps 10% free", 30 * gib, 100 * gib, 20 * gib, 30 * gib, true},
		{"10% of a large file system is more than 1 GiB", 29 * gib, 100 * gib, 20 * gib, 30 * gib, false},
		{"free space for the clone but not the margin", 21 * gib, 100 * gib, 20 * gib, 30 * gib, false},
	} {
		need, ok := needSpace(c.free, c.total, c.db)
		if need != c.wantNeed || ok != c.wantOK {
			t.Errorf("%s: needSpace = %d, %v; want %d, %v", c.name, need, ok, c.wantNeed, c.wantOK)
		}
	}
}

func TestDecideSpace(t *testing.T) {
	const gib = int64(1 << 30)
	roomy := Space{Dir: "/d", Free: 50 * gib, Total: 100 * gib, DBSize: gib}
	tight := Space{Dir: "/d", Free: 5 * gib, Total: 100 * gib, DBSize: gib}
	unknown := errors.New("the server 10.0.0.5 is not on this machine")
	for _, c := range []struct {
		name       string
		mode       Mode
		space      Space
		err        error
		method     string
		reason     string
		spaceKnown bool
	}{
		{"enough space: a clone", ModeAuto, roomy, nil, MethodClone, "", true},
		{"too little space: a file", ModeAuto, tight, nil, MethodFile, "not enough free space for a clone: 5.0 GiB free in /d, a clone needs 11.0 GiB", true},
		{"too little space: a file even when clone is forced", ModeClone, tight, nil, MethodFile, "not enough free space", true},
		{"unknown space: a file", ModeAuto, Space{}, unknown, MethodFile, "cannot be checked (the server 10.0.0.5 is not on this machine)", false},
		{"unknown space with RESTORE_POINT=clone: a clone, saying so", ModeClone, Space{}, unknown, MethodClone, "not checked: the server 10.0.0.5", false},
	} {
		dec := decideSpace(c.mode, c.space, c.err)
		if dec.Method != c.method || dec.SpaceChecked != c.spaceKnown || !strings.Contains(dec.Reason, c.reason) || (c.reason == "") != (dec.Reason == "") {
			t.Errorf("%s: decideSpace = %+v", c.name, dec)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "Clone": ModeClone, " file ": ModeFile} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, m, err)
		}
	}
	if _, err := ParseMode("snapshot"); err == nil {
		t.Error("ParseMode accepted snapshot")
	}
}

// TestDataDirectoryDiscovery finds the test server's data directory both
// ways: over TCP to 127.0.0.1 (the backend's parent) and over the unix
// socket (the socket's lock file), and reads its free space.
func TestDataDirectoryDiscovery(t *testing.T) {
	srv := pgtest.Shared(t)
	db, _ := appDB(t)
	oid := dbOID(t, db.Name)
	want, err := filepath.EvalSymlinks(filepath.Join(srv.SocketDir, "data", "base", oid))
	if err != nil {
		t.Fatal(err)
	}
	for name, url := range map[string]string{"tcp": db.URL(), "unix socket": db.SocketKeywordValue()} {
		t.Run(name, func(t *testing.T) {
			c, err := pgx.Connect(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			s, err := measureSpace(context.Background(), c)
			c.Close(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if s.Dir != want || s.Free <= 0 || s.Total < s.Free || s.DBSize <= 0 {
				t.Fatalf("space = %+v, want the directory %s", s, want)
			}
			dec := eligible(t, url, ModeAuto)
			if dec.Method != MethodClone || !dec.SpaceChecked || dec.Space.Dir != want {
				t.Fatalf("Eligible = %+v", dec)
			}
		})
	}
}

func TestEligibleFallsBackToFile(t *testing.T) {
	t.Run("without CREATEDB", func(t *testing.T) {
		db, _ := appDB(t)
		superExec(t, "postgres", fmt.Sprintf("ALTER ROLE %s NOCREATEDB", ident(db.User)))
		dec := eligible(t, db.URL(), ModeClone)
		if dec.Method != MethodFile || !strings.Contains(dec.Reason, "lacks CREATEDB") {
			t.Fatalf("Eligible = %+v", dec)
		}
	})
	t.Run("not the owner", func(t *testing.T) {
		other, pw := newRole(t, "CREATEDB")
		db, _ := appDB(t)
		superExec(t, db.Name, fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s", ident(db.Name), ident(other)))
		u := url.URL{Scheme: "postgres", User: url.UserPassword(other, pw), Host: fmt.Sprintf("%s:%d", db.Server.Host, db.Server.Port),
			Path: "/" + db.Name, RawQuery: "sslmode=disable"}
		dec := eligible(t, u.String(), ModeAuto)
		if dec.Method != MethodFile || !strings.Contains(dec.Reason, "does not own") {
			t.Fatalf("Eligible = %+v", dec)
		}
	})
	t.Run("another session", func(t *testing.T) {
		db, _ := appDB(t)
		cfg, _ := pgx.ParseConfig(db.URL())
		cfg.RuntimeParams["application_name"] = "openwatch-service"
		other, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close(context.Background())
		dec := eligible(t, db.URL(), ModeClone)
		if dec.Method != MethodFile || !strings.Contains(dec.Reason, "1 other session(s)") || !strings.Contains(dec.Reason, "openwatch-service") {
			t.Fatalf("Eligible = %+v", dec)
		}
	})
	t.Run("a property the role cannot re-apply", func(t *testing.T) {
		reader, _ := newRole(t, "")
		db, _ := appDB(t)
		superExec(t, "postgres", fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET work_mem = '8MB'", ident(reader), ident(db.Name)))
		dec := eligible(t, db.URL(), ModeClone)
		if dec.Method != MethodFile || !strings.Contains(dec.Reason, "could not restore") || !strings.Contains(dec.Reason, "permission denied") {
			t.Fatalf("Eligible = %+v", dec)
		}
		// The dry run changed nothing.
		if got := properties(t, db.Name).RoleSettings; len(got) != 1 || got[0].Role != reader {
			t.Fatalf("role settings after the dry run: %v", got)
		}
	})
	t.Run("RESTORE_POINT=file", func(t *testing.T) {
		db, _ := appDB(t)
		if dec := eligible(t, db.URL(), ModeFile); dec.Method != MethodFile || !strings.Contains(dec.Reason, "RESTORE_POINT=file") {
			t.Fatalf("Eligible = %+v", dec)
		}
	})
}

// setProperties gives db every kind of database-level property a clone does
// not carry.
func setProperties(t *testing.T, db *pgtest.Database, reader string) {
	t.Helper()
	q := ident(db.Name)
	for _, s := range []string{
		fmt.Sprintf(`ALTER DATABASE %s SET search_path = "$user", public, "a b"`, q),
		fmt.Sprintf(`ALTER DATABASE %s SET work_mem = '16MB'`, q),
		fmt.Sprintf(`ALTER ROLE %s IN DATABASE %s SET statement_timeout = '1min'`, ident(db.User), q),
		fmt.Sprintf(`REVOKE CONNECT, TEMPORARY ON DATABASE %s FROM PUBLIC`, q),
		fmt.Sprintf(`GRANT CONNECT ON DATABASE %s TO %s`, q, ident(reader)),
		fmt.Sprintf(`COMMENT ON DATABASE %s IS 'the openwatch database, it''s ours'`, q),
		fmt.Sprintf(`ALTER DATABASE %s CONNECTION LIMIT 50`, q),
	} {
		appExec(t, db, s)
	}
}

func TestCreateAndRestoreBySwap(t *testing.T) {
	reader, _ := newRole(t, "")
	db, d := appDB(t)
	setProperties(t, db, reader)
	before, beforeProps := fingerprint(t, db.Name), properties(t, db.Name)
	if len(beforeProps.Settings) != 2 || len(beforeProps.RoleSettings) != 1 || beforeProps.ConnectionLimit != 50 || beforeProps.Comment == nil {
		t.Fatalf("the test's properties did not take: %+v", beforeProps)
	}

	if dec := eligible(t, db.URL(), ModeAuto); dec.Method != MethodClone {
		t.Fatalf("Eligible = %+v", dec)
	}
	p, err := Create(context.Background(), d, "", Meta{PackageVersion: "1.2.3-1", SchemaVersion: "20240601120000"})
	if err != nil {
		t.Fatal(err)
	}
	if !IsName(p.Name) || p.Source != db.Name || p.Size <= 0 || p.SchemaVersion != "20240601120000" {
		t.Fatalf("Create = %+v", p)
	}
	// Before 18 no file cloning is tried, nothing to report; on 18 the
	// method reported is what the file system did, as measured (the temp
	// dir's tmpfs or ext4 copy). The reflink file systems: reflink_test.go.
	major := pgtest.Shared(t).Major()
	switch {
	case p.Written < 0 || p.WrittenUnknown != "":
		t.Fatalf("Create on PostgreSQL %d did not measure what it wrote: %+v", major, p)
	case p.CopyMethod == CopyPlain && p.Written < p.Size/2:
		t.Fatalf("Create on PostgreSQL %d reports a copy that wrote %d bytes of %d", major, p.Written, p.Size)
	case p.CopyMethod == CopyClone && p.Written >= p.Size/2:
		t.Fatalf("Create on PostgreSQL %d reports shared blocks having written %d bytes of %d", major, p.Written, p.Size)
	case major < 18 && (p.CopyMethod != CopyPlain || p.CopyFallback != ""):
		t.Fatalf("Create on PostgreSQL %d: method %q, fallback %q", major, p.CopyMethod, p.CopyFallback)
	case major >= 18 && p.CopyMethod == CopyPlain && !strings.Contains(p.CopyFallback, "copied the files"):
		t.Fatalf("Create on PostgreSQL %d copied without saying why: fallback %q", major, p.CopyFallback)
	}
	p.Written, p.WrittenUnknown, p.CopyFallback = 0, "", ""
	p.CopyMethod = "" // what Create did; List does not know
	if got := fingerprint(t, p.Name); got != before {
		t.Fatalf("the clone's content %s differs from the database's %s", got, before)
	}
	if owner := superString(t, "postgres", "select pg_get_userbyid(datdba)::text from pg_database where datname = $1", p.Name); owner != db.User {
		t.Fatalf("the clone belongs to %s, not the app role %s", owner, db.User)
	}
	c := superConn(t, "postgres")
	points, err := List(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	var listed *Point
	for i := range points {
		if points[i].Name == p.Name {
			listed = &points[i]
		}
	}
	if listed != nil && listed.Size > 0 {
		// The size is the server's pg_database_size, which autovacuum's
		// visibility and free space maps may grow between Create and List.
		p.Size = listed.Size
	}
	if listed == nil || !reflect.DeepEqual(*listed, p) {
		t.Fatalf("List = %+v, want %+v among them", points, p)
	}

	// The service goes on: data and properties change.
	appExec(t, db, `delete from hosts where id > 100; insert into hosts (name) values ('new'); select nextval('tickets')`)
	q := ident(db.Name)
	for _, s := range []string{
		fmt.Sprintf(`ALTER DATABASE %s SET work_mem = '1MB'`, q),
		fmt.Sprintf(`ALTER DATABASE %s RESET search_path`, q),
		fmt.Sprintf(`GRANT CONNECT ON DATABASE %s TO PUBLIC`, q),
		fmt.Sprintf(`COMMENT ON DATABASE %s IS 'changed'`, q),
		fmt.Sprintf(`ALTER DATABASE %s CONNECTION LIMIT 3`, q),
		fmt.Sprintf(`ALTER ROLE %s IN DATABASE %s RESET ALL`, ident(db.User), q),
	} {
		appExec(t, db, s)
	}
	changed := fingerprint(t, db.Name)
	if changed == before {
		t.Fatal("the change did not take")
	}

	res, err := Restore(context.Background(), d, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, db.Name); got != before {
		t.Fatalf("after the restore the content is %s, want %s", got, before)
	}
	if diff := differences(beforeProps, properties(t, db.Name)); diff != "" {
		t.Fatalf("after the restore: %s", diff)
	}
	if got := fingerprint(t, res.Kept); got != changed {
		t.Fatalf("the kept database %s holds %s, want the pre-restore content %s", res.Kept, got, changed)
	}
	if dbOID(t, p.Name) != "missing" {
		t.Fatalf("the clone %s still exists under its name", p.Name)
	}
	// The app role uses the swapped-in database as before.
	appExec(t, db, "create table after_restore (id int)")
	if err := pgtest.Shared(t).Exec(context.Background(), "postgres", strings.TrimSuffix(res.DropKept, ";")); err != nil {
		t.Fatalf("%s: %v", res.DropKept, err)
	}
	t.Logf("kept %s; %s", res.Kept, res.DropKept)
}

func TestRestoreRefusesWhileSessionsAreConnected(t *testing.T) {
	db, d := appDB(t)
	p, err := Create(context.Background(), d, "", Meta{SchemaVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	appExec(t, db, "insert into hosts (name) values ('after')")
	oid, content := dbOID(t, db.Name), fingerprint(t, db.Name)

	cfg, _ := pgx.ParseConfig(db.URL())
	cfg.RuntimeParams["application_name"] = "openwatch-service"
	other, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())

	_, err = Restore(context.Background(), d, p.Name)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Sessions != 1 || !reflect.DeepEqual(busy.Applications, []string{"openwatch-service"}) ||
		!strings.Contains(err.Error(), StopCommand) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("Restore = %v", err)
	}
	if dbOID(t, db.Name) != oid || fingerprint(t, db.Name) != content || dbOID(t, p.Name) == "missing" {
		t.Fatal("a refused restore changed the databases")
	}
	if _, err := Create(context.Background(), d, "", Meta{SchemaVersion: "2"}); !errors.As(err, &busy) {
		t.Fatalf("Create with a session connected = %v", err)
	}
}

// TestRestoreFailureInTheMiddleChangesNothing makes the re-apply of the
// recorded properties fail after both renames ran: the grant to a role that
// no longer exists.
func TestRestoreFailureInTheMiddleChangesNothing(t *testing.T) {
	reader, _ := newRole(t, "")
	db, d := appDB(t)
	setProperties(t, db, reader)
	p, err := Create(context.Background(), d, "", Meta{SchemaVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	appExec(t, db, "insert into hosts (name) values ('after')")
	superExec(t, "postgres", fmt.Sprintf("REVOKE CONNECT ON DATABASE %s FROM %s", ident(db.Name), ident(reader)))
	superExec(t, "postgres", "DROP ROLE "+ident(reader))
	oid, content, props := dbOID(t, db.Name), fingerprint(t, db.Name), properties(t, db.Name)
	cloneOID := dbOID(t, p.Name)

	_, err = Restore(context.Background(), d, p.Name)
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), "GRANT CONNECT") {
		t.Fatalf("Restore = %v", err)
	}
	if dbOID(t, db.Name) != oid || fingerprint(t, db.Name) != content || dbOID(t, p.Name) != cloneOID {
		t.Fatal("the failed restore left the databases changed")
	}
	if diff := differences(props, properties(t, db.Name)); diff != "" {
		t.Fatalf("the failed restore changed the properties: %s", diff)
	}
	if n := superString(t, "postgres", "select count(*)::text from pg_database where datname like $1", db.Name+keptSuffix+"%"); n != "0" {
		t.Fatalf("%s databases named like a kept one", n)
	}
}

func TestDrop(t *testing.T) {
	db, d := appDB(t)
	if err := Drop(context.Background(), d, db.Name); err == nil || dbOID(t, db.Name) == "missing" {
		t.Fatalf("Drop of the app's database = %v", err)
	}
	impostor := "openwatch_rp_1_20000101t000000z"
	superExec(t, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", impostor, ident(db.User)))
	t.Cleanup(func() { pgtest.Shared(t).Exec(context.Background(), "postgres", "DROP DATABASE IF EXISTS "+impostor) })
	if err := Drop(context.Background(), d, impostor); err == nil || !strings.Contains(err.Error(), "record") || dbOID(t, impostor) == "missing" {
		t.Fatalf("Drop of a database without the record = %v", err)
	}
	p, err := Create(context.Background(), d, "", Meta{SchemaVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Drop(context.Background(), d, p.Name); err != nil || dbOID(t, p.Name) != "missing" {
		t.Fatalf("Drop = %v", err)
	}
}

// Who may CHECKPOINT depends on the version: a superuser always, a member
// of pg_checkpoint from 15 on (the role does not exist before). Whether a
// checkpoint ran is read from the server's own count of requested ones.
func TestCheckpointRunsAsTheServersVersionAllows(t *testing.T) {
	db, _ := appDB(t)
	s := pgtest.Shared(t)
	ctx := context.Background()
	stats := superConn(t, "postgres")
	requested := func() int {
		q := "select checkpoints_req from pg_stat_bgwriter"
		if s.VersionNum >= 170000 {
			q = "select num_requested from pg_stat_checkpointer"
		}
		var n int
		if err := stats.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// checkpoint calls Checkpoint and says whether the server counted one.
	checkpoint := func(who string, conn *pgx.Conn, want bool) {
		t.Helper()
		before := requested()
		did, err := Checkpoint(ctx, conn)
		if err != nil || did != want {
			t.Fatalf("PostgreSQL %d: Checkpoint as %s = %v, %v; want %v", s.Major(), who, did, err, want)
		}
		counted := false
		for range 50 {
			if counted = requested() > before; counted || !want {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if counted != want {
			t.Fatalf("PostgreSQL %d: Checkpoint as %s: the server counted a checkpoint: %v, want %v", s.Major(), who, counted, want)
		}
	}

	checkpoint("a plain role", db.Conn(t), false)
	var hasRole bool
	if err := superConn(t, "postgres").QueryRow(ctx, "select exists (select from pg_roles where rolname = 'pg_checkpoint')").Scan(&hasRole); err != nil {
		t.Fatal(err)
	}
	if hasRole != CheckpointRole(s.VersionNum) {
		t.Fatalf("PostgreSQL %d has pg_checkpoint: %v, CheckpointRole says %v", s.Major(), hasRole, CheckpointRole(s.VersionNum))
	}
	if hasRole {
		superExec(t, "postgres", fmt.Sprintf("GRANT pg_checkpoint TO %s", ident(db.User)))
		checkpoint("a member of pg_checkpoint", db.Conn(t), true)
	}
	checkpoint("superuser", superConn(t, "postgres"), true)
}

func TestMayCheckpoint(t *testing.T) {
	for _, c := range []struct {
		version       int
		super, member bool
		want          bool
	}{
		{130000, false, false, false},
		{140012, false, true, false}, // no such role before 15: nothing grants it
		{140012, true, false, true},
		{150000, false, true, true},
		{180001, false, false, false},
		{180001, true, false, true},
	} {
		if got := MayCheckpoint(c.version, c.super, c.member); got != c.want {
			t.Errorf("MayCheckpoint(%d, superuser %v, member %v) = %v, want %v", c.version, c.super, c.member, got, c.want)
		}
	}
}

func TestSetClause(t *testing.T) {
	for in, want := range map[string]string{
		`search_path="$user", public, "a b", "q""x"`: `"search_path" = '$user', 'public', 'a b', 'q"x'`,
		`work_mem=16MB`:       `"work_mem" = '16MB'`,
		`app.note=it's`:       `"app.note" = 'it''s'`,
		`search_path=`:        `"search_path" = ''`,
		`temp_tablespaces=ts`: `"temp_tablespaces" = 'ts'`,
	} {
		if got := setClause(in); got != want {
			t.Errorf("setClause(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestTimings logs how long a clone and a swap take on a database of about
// 100 MB (pgtest runs with fsync off: real servers take longer).
func TestTimings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100 MB database")
	}
	db, d := appDB(t)
	appExec(t, db, `insert into hosts (name, data) select 'bulk-' || g, jsonb_build_object('n', g, 'pad', repeat('x', 40)) from generate_series(1, 700000) g; analyze hosts`)
	size := superString(t, "postgres", "select pg_size_pretty(pg_database_size($1::text))", db.Name)
	c := superConn(t, db.Name)
	start := time.Now()
	Checkpoint(context.Background(), c)
	c.Close(context.Background())
	checkpoint := time.Since(start)
	start = time.Now()
	p, err := Create(context.Background(), d, "", Meta{SchemaVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	create := time.Since(start)
	start = time.Now()
	res, err := Restore(context.Background(), d, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	restore := time.Since(start)
	t.Logf("database %s: CHECKPOINT beforehand %v, Create %v, Restore (swap) %v; kept %s", size, checkpoint.Round(time.Millisecond), create.Round(time.Millisecond), restore.Round(time.Millisecond), res.Kept)
}

// TestCreateAsSuperuserKeepsTheOwner takes the clone as a superuser: the
// clone still belongs to the database's owner, and after a swap the app role
// creates tables in public as before (PostgreSQL 15's public schema belongs
// to pg_database_owner).
func TestCreateAsSuperuserKeepsTheOwner(t *testing.T) {
	db, _ := appDB(t)
	d, err := dsn.Parse(pgtest.Shared(t).SuperURL(db.Name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Create(context.Background(), d, "", Meta{SchemaVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if owner := superString(t, "postgres", "select pg_get_userbyid(datdba)::text from pg_database where datname = $1", p.Name); owner != db.User {
		t.Fatalf("the clone belongs to %s, not the app role %s", owner, db.User)
	}
	if _, err := Restore(context.Background(), d, p.Name); err != nil {
		t.Fatal(err)
	}
	appExec(t, db, "create table public.after_restore (id int)")
}

// PostgreSQL 18 added file_copy_method = clone; before it, setting it fails.
// Untested against a real PostgreSQL 18 (none runs here).
func TestFileCloneIsAskedForFromPostgreSQL18(t *testing.T) {
	for v, want := range map[int]bool{150004: false, 170005: false, 179999: false, 180000: true, 180001: true, 190000: true} {
		if got := FileCloneAvailable(v); got != want {
			t.Errorf("FileCloneAvailable(%d) = %v, want %v", v, got, want)
		}
	}
	if got, want := createStatement("rp", "app", "db", 150000), `CREATE DATABASE "rp" OWNER "app" TEMPLATE "db" STRATEGY FILE_COPY`; got != want {
		t.Errorf("PG 15: %s, want %s", got, want)
	}
	if got, want := createStatement("rp", "app", "db", 140000), `CREATE DATABASE "rp" OWNER "app" TEMPLATE "db"`; got != want {
		t.Errorf("PG 14: %s, want %s", got, want)
	}
}

// A clone goes only once its file exists: however many newer clones there
// are, one without a file is the only copy of the database as it was.
func TestRetainKeepsEveryCloneUntilItsFileExists(t *testing.T) {
	pts := []Point{{Name: "c3"}, {Name: "c2"}, {Name: "c1"}} // newest first
	files := map[string]string{}
	file := func(p Point) string { return files[p.Name] }
	describe := func(vs []Verdict) string {
		var s []string
		for _, v := range vs {
			s = append(s, fmt.Sprintf("%s:%v:%s", v.Point.Name, v.Drop, v.File))
		}
		return strings.Join(s, " ")
	}
	if got, want := describe(Retain(pts, file)), "c3:false: c2:false: c1:false:"; got != want {
		t.Errorf("no files: %s, want %s", got, want)
	}
	files["c3"], files["c1"] = "/b/f3", "/b/f1"
	if got, want := describe(Retain(pts, file)), "c3:true:/b/f3 c2:false: c1:true:/b/f1"; got != want {
		t.Errorf("files for c3 and c1: %s, want %s", got, want)
	}
	if got := Retain(nil, file); len(got) != 0 {
		t.Errorf("no clones: %v", got)
	}
}

func TestTimingRoundTripAndEstimate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, TimingFile)
	if _, ok := ReadTiming(path); ok {
		t.Fatal("a timing read from nothing")
	}
	want := Timing{Bytes: 1 << 30, Duration: 2500 * time.Millisecond, Method: CopyPlain}
	if err := WriteTiming(path, want); err != nil {
		t.Fatal(err)
	}
	got, ok := ReadTiming(path)
	if !ok || got != want {
		t.Fatalf("ReadTiming = %+v, %v; want %+v", got, ok, want)
	}
	if e := got.Estimate(2<<30, CopyPlain); e != 5*time.Second {
		t.Errorf("Estimate(2 GiB) = %s, want 5s", e)
	}
	if e := got.Estimate(2<<30, CopyClone); e != 0 {
		t.Errorf("a plain copy's rate estimated a reflink clone: %s", e)
	}
	if err := WriteTiming(filepath.Join(dir, "absent", TimingFile), want); err == nil {
		t.Error("WriteTiming created a directory")
	}
}

// A retry that fails at once takes its clone in the same second as the
// attempt before it: it gets the next free second, not an error (which
// would turn the restore point into a file, or fail RESTORE_POINT=clone).
func TestCreateInTheSameSecondTakesTheNextFreeName(t *testing.T) {
	_, d := appDB(t)
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var names []string
	for range 2 {
		p, err := Create(context.Background(), d, "", Meta{SchemaVersion: "7", Created: when})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pgtest.Shared(t).Exec(context.Background(), "postgres", "DROP DATABASE IF EXISTS "+p.Name) })
		names = append(names, p.Name)
	}
	if want := []string{Prefix + "7_20260102t030405z", Prefix + "7_20260102t030406z"}; !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
}

// A name taken between Create's look-up and its CREATE DATABASE (another
// database of the same server cloned in the same second) is recognised as
// taken, so Create moves on to the next second; other errors are not.
func TestDuplicateDatabaseIsRecognised(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := context.Background()
	name := fmt.Sprintf("ow_dup_%d", time.Now().UnixNano())
	if err := srv.Exec(ctx, "postgres", "CREATE DATABASE "+ident(name)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Exec(context.Background(), "postgres", "DROP DATABASE IF EXISTS "+ident(name)) })
	err := srv.Exec(ctx, "postgres", "CREATE DATABASE "+ident(name))
	if err == nil || !duplicateDatabase(err) {
		t.Errorf("CREATE DATABASE of a taken name: duplicateDatabase(%v) = false, want true", err)
	}
	err = srv.Exec(ctx, "postgres", "CREATE DATABASE "+ident(name+"_x")+" TEMPLATE no_such_template_db")
	if err == nil || duplicateDatabase(err) {
		t.Errorf("CREATE DATABASE from a missing template: duplicateDatabase(%v) = true, want false", err)
	}
}
