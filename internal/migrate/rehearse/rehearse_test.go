package rehearse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv("OW_REHEARSE_CHILD") != "" {
		os.Exit(child())
	}
	if bin, err := pgtest.BinDir(); err == nil {
		os.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	}
	os.Exit(pgtest.Main(m))
}

// child rehearses in a separate process so a test can kill -9 it.
func child() int {
	d, err := dsn.Parse(os.Getenv("OW_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, err = Run(context.Background(), Options{DSN: d, FS: os.DirFS(os.Getenv("OW_FS")), Out: os.Stdout, UncheckedSpace: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func mig(up string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte("-- migrate:up\n" + up + "\n-- migrate:down\nselect 1;\n")}
}

// setup gives the test a database whose role has CREATEDB, migrated with
// base, holding rows that a unique index on hosts.name refuses.
func setup(t *testing.T, base fstest.MapFS) (*pgtest.Database, *dsn.DSN) {
	t.Helper()
	db := pgtest.Shared(t).NewDatabase(t)
	grant(t, db, "CREATEDB")
	d, err := dsn.Parse(db.URL())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := migrate.Run(context.Background(), migrate.Options{DSN: d, FS: base, Out: &out, LockTimeout: time.Minute}); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	return db, d
}

func grant(t *testing.T, db *pgtest.Database, attr string) {
	t.Helper()
	if err := db.Server.Exec(context.Background(), "postgres", fmt.Sprintf(`ALTER ROLE "%s" %s`, db.User, attr)); err != nil {
		t.Fatal(err)
	}
}

var base = fstest.MapFS{
	"001_hosts.sql": mig("create table hosts (id serial primary key, name text, note text); insert into hosts (name, note) values ('a', 'x'), ('a', null), ('b', 'y');"),
}

func with(extra map[string]*fstest.MapFile) fstest.MapFS {
	fsys := fstest.MapFS{}
	for k, v := range base {
		fsys[k] = v
	}
	for k, v := range extra {
		fsys[k] = v
	}
	return fsys
}

// live is what must not change: the schema (columns, indexes, constraints,
// applied versions) and the rows.
func live(t *testing.T, db *pgtest.Database) string {
	t.Helper()
	return db.QueryString(t, `select concat_ws(' | ',
		(select string_agg(version, ',' order by version) from schema_migrations),
		(select string_agg(table_name || '.' || column_name || ':' || data_type || ':' || is_nullable, ',' order by table_name, column_name)
			from information_schema.columns where table_schema = 'public'),
		(select string_agg(indexdef, ',' order by indexdef) from pg_indexes where schemaname = 'public'),
		(select string_agg(conname, ',' order by conname) from pg_constraint where connamespace = 'public'::regnamespace),
		(select string_agg(concat_ws(':', id, name, note), ',' order by id) from hosts))`)
}

// databases is the server's list of databases.
func databases(t *testing.T, db *pgtest.Database) string {
	t.Helper()
	return db.QueryString(t, "select string_agg(datname, ',' order by datname) from pg_database")
}

func rehearse(ctx context.Context, d *dsn.DSN, fsys fstest.MapFS) (Report, error, string) {
	var out bytes.Buffer
	rep, err := Run(ctx, Options{DSN: d, FS: fsys, Out: &out})
	return rep, err, out.String()
}

func TestAMigrationThatFailsOnExistingRowsFailsTheRehearsalAndChangesNothing(t *testing.T) {
	tests := []struct {
		name, file     string
		mig            *fstest.MapFile
		nonTransaction bool
		say            string
	}{
		{"a unique index over duplicates", "002_unique.sql", mig("alter table hosts add constraint hosts_name_key unique (name);"), false, "could not create unique index"},
		{"NOT NULL over empty values", "002_not_null.sql", mig("alter table hosts alter column note set not null;"), false, `column "note"`},
		{"a transaction:false unique index over duplicates", "002_concurrently.sql",
			&fstest.MapFile{Data: []byte("-- migrate:up transaction:false\ncreate unique index concurrently hosts_name_idx on hosts (name);\n-- migrate:down\nselect 1;\n")}, true, "could not create unique index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, d := setup(t, base)
			before, dbs := live(t, db), databases(t, db)
			fsys := with(map[string]*fstest.MapFile{
				tt.file:       tt.mig,
				"003_ok.sql":  mig("create table after (n int);"),
				"000_old.sql": nil,
			})
			delete(fsys, "000_old.sql")
			_, err, out := rehearse(context.Background(), d, fsys)
			var wf *WouldFailError
			if !errors.As(err, &wf) {
				t.Fatalf("err = %v, want a WouldFailError\n%s", err, out)
			}
			if wf.Failed.Failed.Name != tt.file || !strings.Contains(wf.Error(), tt.say) || wf.Failed.NonTransactional != tt.nonTransaction {
				t.Errorf("failure = %v (non-transactional %v), want %s failing with %q", wf, wf.Failed.NonTransactional, tt.file, tt.say)
			}
			if len(wf.Failed.NotApplied) != 1 || wf.Failed.NotApplied[0].Name != "003_ok.sql" {
				t.Errorf("not rehearsed: %v, want 003_ok.sql", wf.Failed.NotApplied)
			}
			if tt.nonTransaction && (len(wf.Failed.Leftovers) != 1 || wf.Failed.Leftovers[0] != "public.hosts_name_idx") {
				t.Errorf("leftovers on the copy: %v, want the invalid index", wf.Failed.Leftovers)
			}
			if got := live(t, db); got != before {
				t.Errorf("the live database changed:\n before %s\n after  %s", before, got)
			}
			if got := databases(t, db); got != dbs {
				t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
			}
		})
	}
}

func TestGoodMigrationsRehearseWithTheirTimeAndChangeNothing(t *testing.T) {
	db, d := setup(t, base)
	before, dbs := live(t, db), databases(t, db)
	fsys := with(map[string]*fstest.MapFile{
		"002_slow.sql":  mig("alter table hosts add column seen timestamptz; select pg_sleep(0.3);"),
		"003_index.sql": &fstest.MapFile{Data: []byte("-- migrate:up transaction:false\ncreate index concurrently hosts_seen_idx on hosts (seen);\n-- migrate:down\nselect 1;\n")},
	})
	rep, err, out := rehearse(context.Background(), d, fsys)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Steps) != 2 || rep.Steps[0].Migration.Name != "002_slow.sql" || rep.Steps[1].Migration.Name != "003_index.sql" {
		t.Fatalf("steps %+v", rep.Steps)
	}
	if rep.Steps[0].Took < 300*time.Millisecond || rep.MigrationTime() < rep.Steps[0].Took+rep.Steps[1].Took {
		t.Errorf("002 took %s on the copy, it sleeps 0.3 s; total %s", rep.Steps[0].Took, rep.MigrationTime())
	}
	if rep.CopySize <= 0 || rep.CopyTook <= 0 || !IsName(rep.Scratch) {
		t.Errorf("the copy's cost is not reported: %+v", rep)
	}
	for _, want := range []string{"002_slow.sql ok in", "003_index.sql ok in", "dropped the scratch database " + rep.Scratch} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := live(t, db); got != before {
		t.Errorf("the live database changed:\n before %s\n after  %s", before, got)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
	}
}

func TestWithoutCreatedbTheRehearsalSaysWhichStatementGrantsIt(t *testing.T) {
	db, d := setup(t, base)
	grant(t, db, "NOCREATEDB")
	dbs := databases(t, db)
	_, err, out := rehearse(context.Background(), d, with(map[string]*fstest.MapFile{"002_x.sql": mig("select 1;")}))
	var ce *CannotError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "lacks CREATEDB") || ce.Fix != fmt.Sprintf(`ALTER ROLE "%s" CREATEDB;`, db.User) {
		t.Fatalf("err = %v, want a CannotError naming ALTER ROLE … CREATEDB\n%s", err, out)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed: %s -> %s", dbs, got)
	}
}

func TestNothingPendingCopiesNothing(t *testing.T) {
	db, d := setup(t, base)
	dbs := databases(t, db)
	rep, err, out := rehearse(context.Background(), d, base)
	if err != nil || len(rep.Pending) != 0 || rep.Scratch != "" || out != "" {
		t.Fatalf("rep %+v, err %v, out %q", rep, err, out)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed: %s -> %s", dbs, got)
	}
}

func TestACanceledRehearsalDropsItsCopyAtOnce(t *testing.T) {
	db, d := setup(t, base)
	before, dbs := live(t, db), databases(t, db)
	fsys := with(map[string]*fstest.MapFile{"002_slow.sql": mig("select pg_sleep(60);"), "003_after.sql": mig("select 1;")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		waitFor(t, db, "select exists (select from pg_stat_activity where state = 'active' and query like '%pg_sleep(60)%' and query not like '%pg_stat_activity%')")
		cancel() // what SIGTERM does through signal.NotifyContext
	}()
	start := time.Now()
	_, err, out := rehearse(ctx, d, fsys)
	var ie *InterruptedError
	if !errors.As(err, &ie) || len(ie.NotRehearsed) != 2 {
		t.Fatalf("err = %v, want an InterruptedError with 002 and 003 not rehearsed\n%s", err, out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the rehearsal waited %s for the migration in progress on the copy", took)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
	}
	if got := live(t, db); got != before {
		t.Errorf("the live database changed:\n before %s\n after  %s", before, got)
	}
}

func TestAKilledRehearsalsCopyIsDroppedByTheNextRunAndARunningOnesIsNot(t *testing.T) {
	db, d := setup(t, base)
	dbs := databases(t, db)
	dir := t.TempDir()
	for name, f := range with(map[string]*fstest.MapFile{"002_slow.sql": mig("select pg_sleep(60);")}) {
		if err := os.WriteFile(filepath.Join(dir, name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "OW_REHEARSE_CHILD=1", "OW_DSN="+db.URL(), "OW_FS="+dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	sleeping := "select count(*) from pg_stat_activity where state = 'active' and query like '%pg_sleep(60)%' and query not like '%pg_stat_activity%'"
	first := start()
	waitFor(t, db, "select ("+sleeping+") = 1")
	// A second rehearsal while the first runs leaves the first's copy alone.
	second := start()
	waitFor(t, db, "select ("+sleeping+") = 2")
	if err := second.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second.Wait()
	if n := db.QueryString(t, "select count(*)::text from pg_database where datname like 'openwatch\\_rehearsal\\_%'"); n != "2" {
		t.Fatalf("%s scratch databases while one rehearsal runs and one was killed, want 2", n)
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	// The server ends a killed client's sessions, and releases their locks,
	// only once it notices: a run before that rightly leaves the copy alone.
	waitFor(t, db, "select count(*) = 0 from pg_locks where locktype = 'advisory'")

	// Both were killed: the next run drops both copies, then rehearses.
	fsys := with(map[string]*fstest.MapFile{"002_fast.sql": mig("select 1;")})
	rep, err, out := rehearse(context.Background(), d, fsys)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Dropped) != 2 || !strings.Contains(out, "dropped "+rep.Dropped[0]+", the scratch database a killed rehearsal left") {
		t.Errorf("dropped %v, want both killed runs' copies\n%s", rep.Dropped, out)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
	}
}

func TestADatabaseThatOnlyLooksLikeAScratchCopyIsNotDropped(t *testing.T) {
	db, d := setup(t, base)
	srv := db.Server
	ctx := context.Background()
	// Another database's rehearsal (its record names another source), and
	// one of the same role with a foreign comment.
	for _, c := range []struct{ name, comment string }{
		{Prefix + "00000000000000aa", `{"openwatch":"openwatch rehearsal","source":"other_db"}`},
		{Prefix + "00000000000000bb", `kept by the operator`},
	} {
		if err := srv.Exec(ctx, "postgres", fmt.Sprintf(`CREATE DATABASE %s OWNER "%s"`, c.name, db.User)); err != nil {
			t.Fatal(err)
		}
		if err := srv.Exec(ctx, "postgres", fmt.Sprintf(`COMMENT ON DATABASE %s IS '%s'`, c.name, c.comment)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+c.name) })
	}
	dbs := databases(t, db)
	rep, err, out := rehearse(ctx, d, with(map[string]*fstest.MapFile{"002_fast.sql": mig("select 1;")}))
	if err != nil || len(rep.Dropped) != 0 {
		t.Fatalf("dropped %v, err %v\n%s", rep.Dropped, err, out)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
	}
}

func waitFor(t *testing.T, db *pgtest.Database, sql string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for db.QueryString(t, "select ("+sql+")::text") != "true" {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for: %s", sql)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdCopy connects as the superuser, a session of another role than the
// copy's owner (as an autovacuum worker is), to the scratch database on
// which a query like sleeping runs, once it runs, and keeps the session
// until the returned function is called.
func holdCopy(t *testing.T, db *pgtest.Database, sleeping string) (name string, release func()) {
	t.Helper()
	waitFor(t, db, "select exists (select from pg_stat_activity where state = 'active' and query like '"+sleeping+"' and query not like '%pg_stat_activity%')")
	name = db.QueryString(t, "select datname::text from pg_stat_activity where state = 'active' and query like '"+sleeping+"' and query not like '%pg_stat_activity%'")
	if !IsName(name) {
		t.Errorf("the migration runs on %q, not on a scratch database", name)
		return name, func() {}
	}
	conn, err := pgx.Connect(context.Background(), db.Server.SuperURL(name))
	if err != nil {
		t.Errorf("connect to the copy as the superuser: %v", err)
		return name, func() {}
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return name, func() { conn.Close(context.Background()) }
}

func TestASessionOfAnotherRoleOnTheCopyDoesNotFailARehearsalThatPassedAndTheNextRunDropsTheCopy(t *testing.T) {
	db, d := setup(t, base)
	dbs := databases(t, db)
	fsys := with(map[string]*fstest.MapFile{"002_slow.sql": mig("select pg_sleep(2);")})
	type held struct {
		name    string
		release func()
	}
	got := make(chan held, 1)
	go func() {
		name, release := holdCopy(t, db, "%pg_sleep(2)%")
		got <- held{name, release}
	}()
	rep, err, out := rehearse(context.Background(), d, fsys)
	h := <-got
	defer h.release()
	if err != nil {
		t.Fatalf("the rehearsal passed, but Run failed: %v\n%s", err, out)
	}
	if len(rep.Steps) != 1 || rep.Scratch != h.name {
		t.Errorf("steps %v, scratch %q; want 002_slow.sql rehearsed on %s", rep.Steps, rep.Scratch, h.name)
	}
	if rep.DropErr == nil || !strings.Contains(rep.DropErr.Error(), `DROP DATABASE "`+h.name+`";`) {
		t.Errorf("DropErr = %v, want one naming the copy and its DROP DATABASE", rep.DropErr)
	}
	if n := db.QueryString(t, "select count(*)::text from pg_database where datname = '"+h.name+"'"); n != "1" {
		t.Fatalf("the copy another session is on is gone (%s)", n)
	}
	h.release()
	// The run is over: its lock is released, and the next run drops the copy.
	waitFor(t, db, "select count(*) = 0 from pg_stat_activity where datname = '"+h.name+"'")
	rep, err, out = rehearse(context.Background(), d, with(map[string]*fstest.MapFile{"002_fast.sql": mig("select 1;")}))
	if err != nil || rep.DropErr != nil {
		t.Fatalf("the next run: %v, drop: %v\n%s", err, rep.DropErr, out)
	}
	if len(rep.Dropped) != 1 || rep.Dropped[0] != h.name {
		t.Errorf("the next run dropped %v, want %s\n%s", rep.Dropped, h.name, out)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
	}
}

func TestACopyLeftWithAnotherRolesSessionIsListedAndDroppedWithoutCreatedb(t *testing.T) {
	db, d := setup(t, base)
	dbs := databases(t, db)
	go holdCopy(t, db, "%pg_sleep(1.5)%")
	rep, err, out := rehearse(context.Background(), d, with(map[string]*fstest.MapFile{"002_slow.sql": mig("select pg_sleep(1.5);")}))
	if err != nil || rep.DropErr == nil {
		t.Fatalf("err %v, DropErr %v: want the rehearsal passed and its copy left\n%s", err, rep.DropErr, out)
	}
	// Its rehearsal is over (its lock released): a leftover, although the
	// session stays on it.
	ls, err := ListLeftovers(context.Background(), d)
	if err != nil || len(ls) != 1 || ls[0].Name != rep.Scratch || ls[0].Size <= 0 || ls[0].Started.IsZero() ||
		ls[0].DropStatement() != `DROP DATABASE "`+rep.Scratch+`";` {
		t.Fatalf("leftovers %+v, %v; want %s with its size, start and DROP", ls, err, rep.Scratch)
	}
	if got := databases(t, db); got == dbs {
		t.Fatalf("ListLeftovers dropped the copy")
	}
	// Without CREATEDB the owner still drops it, once the session is gone.
	grant(t, db, "NOCREATEDB")
	db.Server.Exec(context.Background(), "postgres", "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", rep.Scratch)
	waitFor(t, db, "select count(*) = 0 from pg_stat_activity where datname = '"+rep.Scratch+"'")
	dropped, err := DropLeftovers(context.Background(), d)
	if err != nil || len(dropped) != 1 || dropped[0] != rep.Scratch {
		t.Fatalf("DropLeftovers = %v, %v; want %s", dropped, err, rep.Scratch)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
	}
}

// lockTemplate0 holds, in a superuser's open transaction, a lock on
// template0 that makes CREATE DATABASE ... TEMPLATE template0 wait: the
// rehearsal stays in the step that creates its copy until it is released.
func lockTemplate0(t *testing.T, srv *pgtest.Server) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), srv.SuperURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), "begin; comment on database template0 is 'locked by a test'"); err != nil {
		t.Fatal(err)
	}
}

func TestASignalWhileTheCopyIsCreatedIsAnInterruptionNotARehearsalThatCouldNotRun(t *testing.T) {
	db, d := setup(t, base)
	dbs := databases(t, db)
	lockTemplate0(t, db.Server)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		waitFor(t, db, "select exists (select from pg_stat_activity where wait_event_type = 'Lock' and query like 'CREATE DATABASE %' and usename = current_user)")
		cancel() // what SIGTERM does through signal.NotifyContext
	}()
	rep, err, out := rehearse(ctx, d, with(map[string]*fstest.MapFile{"002_fast.sql": mig("select 1;")}))
	var ie *InterruptedError
	if !errors.As(err, &ie) || len(ie.NotRehearsed) != 1 {
		t.Fatalf("err = %v, want an InterruptedError with 002 not rehearsed\n%s", err, out)
	}
	if rep.Scratch != "" || rep.DropErr != nil {
		t.Errorf("scratch %q, drop %v: the copy was never created", rep.Scratch, rep.DropErr)
	}
	if got := databases(t, db); got != dbs {
		t.Errorf("the server's databases changed:\n before %s\n after  %s", dbs, got)
	}
}
