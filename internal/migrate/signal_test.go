package migrate

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestACanceledRunFinishesTheMigrationInProgressAndStartsNoOther(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{
		"001_a.sql": mig("create table a (n int);"),
		"002_b.sql": mig("create table b (n int); select pg_sleep(2); insert into b values (2);"),
		"003_c.sql": mig("create table c (n int);"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	var out bytes.Buffer
	go func() {
		res, err := Run(ctx, Options{DSN: d, FS: fsys, Out: &out, LockTimeout: time.Minute})
		done <- result{res, err}
	}()
	waitFor(t, db, "select exists (select 1 from pg_stat_activity where state = 'active' and query like '%pg_sleep(2)%' and query not like '%pg_stat_activity%')")
	cancel() // what SIGTERM does through signal.NotifyContext
	r := <-done

	var intr *InterruptedError
	if !errors.As(r.err, &intr) || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want an InterruptedError wrapping context.Canceled\n%s", r.err, out.String())
	}
	if got := []string{names(intr.Applied), names(intr.NotApplied), names(r.res.Applied)}; !reflect.DeepEqual(got, []string{"001_a.sql,002_b.sql", "003_c.sql", "001_a.sql,002_b.sql"}) {
		t.Fatalf("applied/not applied/result = %q", got)
	}
	if applied(t, db) != "001,002" || query(t, db, "select string_agg(n::text, ',') from b") != "2" {
		t.Fatalf("applied %q: migration 2 must be complete and 3 not started", applied(t, db))
	}
	want := "interrupted (context canceled) before migration 003_c.sql started; applied completely in this run: 001_a.sql, 002_b.sql; not applied: 003_c.sql"
	if r.err.Error() != want {
		t.Fatalf("message\n %s\nwant\n %s", r.err, want)
	}
	if !strings.Contains(out.String(), "Applied: 002_b.sql") {
		t.Fatalf("the log does not say 002 was applied:\n%s", out.String())
	}
}

func TestAFailedNonTransactionalMigrationNamesWhatItLeftBehind(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{
		"001_a.sql": mig("create table t (x int); insert into t values (1), (1);"),
		"002_b.sql": &fstest.MapFile{Data: []byte("-- migrate:up transaction:false\ncreate unique index concurrently t_x_key on t (x);\n-- migrate:down\ndrop index t_x_key;\n")},
		"003_c.sql": mig("create table c (n int);"),
	}
	var out bytes.Buffer
	_, err := run(d, fsys, &out)
	var f *FailedError
	if !errors.As(err, &f) {
		t.Fatalf("err = %v, want *FailedError", err)
	}
	if f.Failed.Name != "002_b.sql" || !f.NonTransactional || !reflect.DeepEqual(f.Leftovers, []string{"public.t_x_key"}) {
		t.Fatalf("failed %s, non-transactional %v, leftovers %q; want 002_b.sql, true, [public.t_x_key]", f.Failed.Name, f.NonTransactional, f.Leftovers)
	}
	if !strings.Contains(err.Error(), "002_b.sql failed and was not rolled back") || !strings.Contains(err.Error(), "could not create unique index") {
		t.Fatalf("message: %v", err)
	}

	// A retry fails on the leftover, not on the data.
	_, err = run(d, fsys, &out)
	if !errors.As(err, &f) || !strings.Contains(f.Err.Error(), "already exists") {
		t.Fatalf("retry: err = %v, want the leftover index to get in the way", err)
	}
	// What the operator is told to do clears it.
	for _, name := range f.Leftovers {
		db.MustExec(t, "drop index concurrently "+name)
	}
	db.MustExec(t, "delete from t where ctid <> (select min(ctid) from t)")
	if _, err := run(d, fsys, &out); err != nil {
		t.Fatalf("after dropping the leftovers: %v", err)
	}
	if applied(t, db) != "001,002,003" {
		t.Fatalf("applied %q", applied(t, db))
	}
}

func TestAFailedTransactionalMigrationIsNotCalledNonTransactional(t *testing.T) {
	db, d := setup(t)
	// An invalid index from elsewhere is not this migration's leftover.
	db.MustExec(t, "create table t (x int); insert into t values (1), (1)")
	if _, err := db.Conn(t).Exec(context.Background(), "create unique index concurrently t_x_key on t (x)"); err == nil {
		t.Fatal("the unique index was built on duplicate data")
	}
	_, err := run(d, fstest.MapFS{"001_a.sql": mig("create table a (n int); select 1/0;")}, &bytes.Buffer{})
	var f *FailedError
	if !errors.As(err, &f) || f.NonTransactional || f.Leftovers != nil || strings.Contains(err.Error(), "not rolled back") {
		t.Fatalf("err = %v (%+v), want a rolled-back failure without leftovers", err, f)
	}
}

func TestALockTimeoutIsTypedAndTrue(t *testing.T) {
	db, d := setup(t)
	holder := db.Conn(t)
	if _, err := holder.Exec(context.Background(), "select pg_advisory_lock($1)", LockKey); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), Options{DSN: d, FS: logFS, Out: &bytes.Buffer{}, LockTimeout: 100 * time.Millisecond})
	want := "another openwatch migrate or restore is still running (it holds the migration lock) (waited 100ms, MIGRATE_LOCK_TIMEOUT in upgrade.conf)"
	if !errors.Is(err, ErrLockTimeout) || err.Error() != want {
		t.Fatalf("Run: %v\nwant ErrLockTimeout saying %s", err, want)
	}
	// restore takes the same lock and names its own next command.
	err = Lock(context.Background(), db.Conn(t), 100*time.Millisecond, func() {})
	if !errors.Is(err, ErrLockTimeout) || strings.Contains(err.Error(), "then run") {
		t.Fatalf("Lock: %v, want ErrLockTimeout without a migrate hint", err)
	}
}
