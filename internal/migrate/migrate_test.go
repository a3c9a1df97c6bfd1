package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/pgtest"
	"github.com/openwatch/openwatch/migrations"
)

func TestMain(m *testing.M) {
	if os.Getenv("OW_MIGRATE_CHILD") != "" {
		os.Exit(child())
	}
	os.Exit(pgtest.Main(m))
}

// child runs migrate in a separate process so a test can kill -9 it.
func child() int {
	d, err := dsn.Parse(os.Getenv("OW_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, err = Run(context.Background(), Options{DSN: d, FS: os.DirFS(os.Getenv("OW_FS")), Out: os.Stdout, LockTimeout: time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func mig(up string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte("-- migrate:up\n" + up + "\n-- migrate:down\nselect 1;\n")}
}

// setup gives the test a fresh database and its parsed DSN.
func setup(t *testing.T) (*pgtest.Database, *dsn.DSN) {
	t.Helper()
	db := pgtest.Shared(t).NewDatabase(t)
	d, err := dsn.Parse(db.URL())
	if err != nil {
		t.Fatal(err)
	}
	return db, d
}

func query(t *testing.T, db *pgtest.Database, sql string) string {
	t.Helper()
	return db.QueryString(t, sql)
}

func applied(t *testing.T, db *pgtest.Database) string {
	return query(t, db, "select coalesce(string_agg(version, ',' order by version), '') from schema_migrations")
}

func run(d *dsn.DSN, fsys fstest.MapFS, out *bytes.Buffer) (Result, error) {
	return Run(context.Background(), Options{DSN: d, FS: fsys, Out: out, LockTimeout: 30 * time.Second})
}

var logFS = fstest.MapFS{
	"001_log.sql":   mig("create table run_log (n int); insert into run_log values (1); select pg_sleep(0.5);"),
	"002_two.sql":   mig("insert into run_log values (2);"),
	"003_three.sql": mig("insert into run_log values (3);"),
}

func TestTheShippedMigrationsApplyAndRollBack(t *testing.T) {
	db, d := setup(t)
	var out bytes.Buffer
	if _, err := Run(context.Background(), Options{DSN: d, FS: migrations.FS, Out: &out, LockTimeout: time.Minute}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	known, _ := Known(migrations.FS)
	if len(known) < 3 || applied(t, db) != joinVersions(known) {
		t.Fatalf("applied %q, want %q", applied(t, db), joinVersions(known))
	}
	if got := query(t, db, "select data_type from information_schema.columns where table_name = 'scan_results' and column_name = 'findings'"); got != "jsonb" {
		t.Fatalf("scan_results.findings is %q", got)
	}
	// Every down section works: roll back to nothing.
	conn := db.Conn(t)
	for i := len(known) - 1; i >= 0; i-- {
		b, _ := migrations.FS.ReadFile(known[i].Name)
		down := strings.SplitN(string(b), "-- migrate:down", 2)[1]
		if _, err := conn.Exec(context.Background(), down); err != nil {
			t.Fatalf("down %s: %v", known[i].Name, err)
		}
	}
	if n := query(t, db, "select count(*)::text from pg_tables where schemaname = 'public' and tablename not in ('schema_migrations', '"+ChecksumTable+"', '"+DownTable+"')"); n != "0" {
		t.Fatalf("%s tables left after every down section", n)
	}
}

func TestTwoConcurrentRunsApplyEachMigrationOnce(t *testing.T) {
	db, d := setup(t)
	var wg sync.WaitGroup
	outs, errs := make([]bytes.Buffer, 2), make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = run(d, logFS, &outs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, outs[i].String())
		}
	}
	if got := query(t, db, "select string_agg(n::text, ',' order by n) from run_log"); got != "1,2,3" {
		t.Fatalf("run_log = %q, want each migration applied once", got)
	}
	both := outs[0].String() + outs[1].String()
	if !strings.Contains(both, "waiting") && !strings.Contains(both, "nothing left") {
		t.Logf("output:\n%s", both) // the second run may have started after the first finished
	}
}

func TestASecondRunWaitsBoundedForTheLock(t *testing.T) {
	db, d := setup(t)
	holder := db.Conn(t)
	if _, err := holder.Exec(context.Background(), "select pg_advisory_lock($1)", LockKey); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	_, err := Run(context.Background(), Options{DSN: d, FS: logFS, Out: &out, LockTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrLockTimeout) || !strings.Contains(out.String(), "waiting") {
		t.Fatalf("err = %v, out = %q; want ErrLockTimeout after saying it waits", err, out.String())
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("waited %s, longer than the timeout", time.Since(start))
	}
	if n := query(t, db, "select count(*)::text from pg_tables where tablename = 'run_log'"); n != "0" {
		t.Fatal("migrations were applied without the lock")
	}
}

func TestAFailureInMigrationTwoOfThreeReportsWhatWasApplied(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{
		"001_a.sql": mig("create table a (n int);"),
		"002_b.sql": mig("create table b (n int); select 1/0;"),
		"003_c.sql": mig("create table c (n int);"),
	}
	var out bytes.Buffer
	_, err := run(d, fsys, &out)
	var f *FailedError
	if !errors.As(err, &f) {
		t.Fatalf("err = %v, want *FailedError", err)
	}
	if got := []string{names(f.Applied), f.Failed.Name, names(f.NotApplied)}; !reflect.DeepEqual(got, []string{"001_a.sql", "002_b.sql", "003_c.sql"}) {
		t.Fatalf("applied/failed/not applied = %q", got)
	}
	if !strings.Contains(f.Err.Error(), "division by zero") {
		t.Fatalf("the database's error is missing: %v", f.Err)
	}
	if !strings.Contains(out.String(), "Applied: 001_a.sql") || strings.Contains(out.String(), "Applied: 002_b.sql") {
		t.Fatalf("the log must say Applied for 001 and not for the rolled-back 002:\n%s", out.String())
	}
	if applied(t, db) != "001" || query(t, db, "select coalesce(to_regclass('b')::text, 'absent')") != "absent" {
		t.Fatalf("applied %q: migration 2 left a partial schema", applied(t, db))
	}
}

func names(ms []Migration) string { return join(ms, func(m Migration) string { return m.Name }) }

func joinVersions(ms []Migration) string {
	return join(ms, func(m Migration) string { return m.Version })
}

// join joins field of each of ms with commas.
func join(ms []Migration, field func(Migration) string) string {
	var s []string
	for _, m := range ms {
		s = append(s, field(m))
	}
	return strings.Join(s, ",")
}

func TestANewerSchemaIsRefusedAndNothingApplied(t *testing.T) {
	db, d := setup(t)
	var out bytes.Buffer
	if _, err := run(d, fstest.MapFS{"001_a.sql": mig("create table a (n int);"), "003_c.sql": mig("create table c (n int);")}, &out); err != nil {
		t.Fatal(err)
	}
	old := fstest.MapFS{"001_a.sql": mig("create table a (n int);"), "002_b.sql": mig("create table b (n int);")}
	_, err := run(d, old, &out)
	var n *NewerSchemaError
	if !errors.As(err, &n) || !reflect.DeepEqual(n.State.Unknown, []string{"003"}) || n.State.Head != "002" {
		t.Fatalf("err = %v, want a NewerSchemaError naming 003 and 002", err)
	}
	if applied(t, db) != "001,003" {
		t.Fatalf("applied %q: something was applied", applied(t, db))
	}
}

func TestAFailedBackupAppliesNothing(t *testing.T) {
	db, d := setup(t)
	var sawData []bool
	backup := func(_ context.Context, s State, hasData bool) error {
		sawData = append(sawData, hasData)
		if s.Current != "" {
			return errors.New("disk full")
		}
		return nil
	}
	first := fstest.MapFS{"001_a.sql": mig("create table a (n int);")}
	if _, err := Run(context.Background(), Options{DSN: d, FS: first, Out: &bytes.Buffer{}, LockTimeout: time.Second, BeforeApply: backup}); err != nil {
		t.Fatal(err)
	}
	second := fstest.MapFS{"001_a.sql": mig("create table a (n int);"), "002_b.sql": mig("create table b (n int);")}
	_, err := Run(context.Background(), Options{DSN: d, FS: second, Out: &bytes.Buffer{}, LockTimeout: time.Second, BeforeApply: backup})
	var b *BackupError
	if !errors.As(err, &b) || applied(t, db) != "001" {
		t.Fatalf("err = %v, applied %q; want a BackupError with only 001 applied", err, applied(t, db))
	}
	if !reflect.DeepEqual(sawData, []bool{false, true}) {
		t.Fatalf("hasData = %v, want false on the empty schema, then true", sawData)
	}
}

func TestKillNineDuringAMigrationLeavesASchemaARerunCompletes(t *testing.T) {
	db, d := setup(t)
	dir := t.TempDir()
	files := map[string]string{
		"001_a.sql": "create table a (n int);",
		"002_b.sql": "create table b (n int); insert into b values (1); select pg_sleep(3);",
		"003_c.sql": "create table c (n int);",
	}
	for name, up := range files {
		os.WriteFile(filepath.Join(dir, name), mig(up).Data, 0o644)
	}
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "OW_MIGRATE_CHILD=1", "OW_DSN="+db.URL(), "OW_FS="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, db, "select exists (select 1 from pg_stat_activity where state = 'active' and query like '%pg_sleep(3)%' and query not like '%pg_stat_activity%')")
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	if got := applied(t, db); got != "001" {
		t.Fatalf("after kill -9: applied %q, want 001", got)
	}
	var out bytes.Buffer
	if _, err := Run(context.Background(), Options{DSN: d, FS: os.DirFS(dir), Out: &out, LockTimeout: time.Minute}); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out.String())
	}
	if got := applied(t, db); got != "001,002,003" || query(t, db, "select count(*)::text from b") != "1" {
		t.Fatalf("after rerun: applied %q", got)
	}
}

func waitFor(t *testing.T, db *pgtest.Database, sql string) {
	t.Helper()
	conn := db.Conn(t)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var ok bool
		if err := conn.QueryRow(context.Background(), sql).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for: %s", sql)
}

func TestCompareSortsOutPendingAndUnknown(t *testing.T) {
	known := []Migration{{"1", "1_a.sql"}, {"2", "2_b.sql"}, {"3", "3_c.sql"}}
	tests := []struct {
		name    string
		applied []string
		atHead  bool
		newer   bool
		pending int
	}{
		{"an empty schema has everything pending", nil, false, false, 3},
		{"a partly migrated schema has the rest pending", []string{"1"}, false, false, 2},
		{"a fully migrated schema is at head", []string{"1", "2", "3"}, true, false, 0},
		{"an unknown version makes the schema newer", []string{"1", "2", "3", "4"}, false, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Compare(known, tt.applied)
			if s.AtHead() != tt.atHead || s.Newer() != tt.newer || len(s.Pending) != tt.pending {
				t.Fatalf("got %+v", s)
			}
		})
	}
}
