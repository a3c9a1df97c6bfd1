package migrate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/openwatch/openwatch/internal/dsn"
)

func migUpDown(up, down string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte("-- migrate:up\n" + up + "\n-- migrate:down\n" + down + "\n")}
}

// release1 and release2 are two releases' migrations: release2 adds one a
// release1 binary does not ship.
var release1 = fstest.MapFS{
	"001_hosts.sql": migUpDown("create table hosts (id bigint generated always as identity primary key, name text not null);",
		"drop table hosts;"),
	"002_scans.sql": migUpDown("create table scans (host_id bigint references hosts, at timestamptz not null default now());",
		"drop table scans;"),
}

func release2() fstest.MapFS {
	fsys := fstest.MapFS{}
	for k, v := range release1 {
		fsys[k] = v
	}
	// A down section holding a dollar quote and the word migrate:down.
	fsys["003_notes.sql"] = migUpDown("alter table hosts add column notes text;\ncomment on column hosts.notes is $$free text$$;",
		"-- undoes 003: migrate:down of notes\nalter table hosts drop column notes;")
	return fsys
}

func downTo(d *dsn.DSN, fsys fstest.MapFS, target string, out *bytes.Buffer, before func(context.Context, State, bool) error) (DownResult, error) {
	return Down(context.Background(), Options{DSN: d, FS: fsys, Out: out, LockTimeout: 30 * time.Second, BeforeApply: before}, target)
}

func stored(t *testing.T, db interface {
	QueryString(testing.TB, string) string
}) string {
	t.Helper()
	return db.QueryString(t, "select coalesce(string_agg(version || ':' || down_transaction, ',' order by version), '') from "+DownTable)
}

func TestApplyingAMigrationStoresItsDownSectionInItsOwnTransaction(t *testing.T) {
	db, d := setup(t)
	fsys := release2()
	fsys["004_bad.sql"] = migUpDown("create table never (n int);\nselect 1/0;", "drop table never;")
	_, err := run(d, fsys, &bytes.Buffer{})
	var failed *FailedError
	if !errors.As(err, &failed) || failed.Failed.Name != "004_bad.sql" {
		t.Fatalf("err = %v, want 004_bad.sql to fail", err)
	}
	if got := stored(t, db); got != "001:true,002:true,003:true" {
		t.Fatalf("stored down sections %q, want those of the three applied migrations only (004's rolled back with it)", got)
	}
	b, _ := fsys.ReadFile("003_notes.sql")
	if got := db.QueryString(t, "select down || '|' || sha256 from "+DownTable+" where version = '003'"); got != "-- undoes 003: migrate:down of notes\nalter table hosts drop column notes;\n|"+Checksum(b) {
		t.Fatalf("stored for 003: %q", got)
	}
}

func TestADatabaseMigratedBeforeDownSectionsWereStoredGetsThemFromTheShippedFilesVerifiedByChecksum(t *testing.T) {
	db, d := setup(t)
	if _, err := run(d, release1, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	// What a release before this feature left: checksums, no down sections.
	db.MustExec(t, "drop table "+DownTable)
	var out bytes.Buffer
	if _, err := run(d, release2(), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "stored the down sections of 2 migration(s) applied before openwatch stored them (for the way back): 001_hosts.sql, 002_scans.sql") {
		t.Fatalf("output:\n%s", out.String())
	}
	if got := stored(t, db); got != "001:true,002:true,003:true" {
		t.Fatalf("stored %q, want all three", got)
	}
	// An edited file is refused, not stored.
	db.MustExec(t, "delete from "+DownTable+" where version = '002'")
	edited := release2()
	edited["002_scans.sql"] = migUpDown("create table scans (host_id bigint references hosts, at timestamptz not null default now());", "select 1;")
	_, err := run(d, edited, &bytes.Buffer{})
	var sum *ChecksumError
	if !errors.As(err, &sum) {
		t.Fatalf("err = %v, want a *ChecksumError", err)
	}
	if got := stored(t, db); got != "001:true,003:true" {
		t.Fatalf("stored %q after the refusal", got)
	}
}

func TestDownRollsBackMigrationsTheBinaryDoesNotShipAndKeepsTheRows(t *testing.T) {
	db, d := setup(t)
	if _, err := run(d, release2(), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	db.MustExec(t, "insert into hosts (name, notes) values ('a', 'x'), ('b', null); insert into scans (host_id) select id from hosts")
	var tookRestorePoint State
	var out bytes.Buffer
	// The release1 binary: it does not ship 003.
	res, err := downTo(d, release1, "002", &out, func(_ context.Context, s State, hasData bool) error {
		if !hasData {
			t.Error("BeforeApply: hasData false")
		}
		tookRestorePoint = s
		return nil
	})
	if err != nil {
		t.Fatalf("Down: %v\n%s", err, out.String())
	}
	if len(res.RolledBack) != 1 || res.RolledBack[0].Name != "003_notes.sql" || tookRestorePoint.Current != "003" {
		t.Fatalf("rolled back %v, restore point at %q", res.RolledBack, tookRestorePoint.Current)
	}
	if got := applied(t, db); got != "001,002" {
		t.Fatalf("applied %s, want 001,002", got)
	}
	if got := db.QueryString(t, "select string_agg(name, ',' order by name) || ' ' || (select count(*) from scans) || ' ' || "+
		"(select count(*) from information_schema.columns where table_name = 'hosts' and column_name = 'notes') from hosts"); got != "a,b 2 0" {
		t.Fatalf("rows/schema after Down: %q, want hosts a,b, 2 scans, no notes column", got)
	}
	if got := stored(t, db); got != "001:true,002:true" {
		t.Fatalf("stored %q", got)
	}
	if got := db.QueryString(t, "select count(*) from "+ChecksumTable+" where version = '003'"); got != "0" {
		t.Fatalf("checksum of 003 still recorded")
	}
	// And up again with the newer binary's files.
	if _, err := run(d, release2(), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if got := applied(t, db); got != "001,002,003" {
		t.Fatalf("applied %s after migrating up again", got)
	}
}

func TestAMigrationWithoutAWayDownIsRefusedBeforeAnythingChanges(t *testing.T) {
	db, d := setup(t)
	fsys := release2()
	fsys["004_irreversible.sql"] = migUpDown("update hosts set name = lower(name);", "-- lowercasing cannot be undone")
	if _, err := run(d, fsys, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	called := false
	_, err := downTo(d, release1, "002", &bytes.Buffer{}, func(context.Context, State, bool) error { called = true; return nil })
	var noWay *NoWayDownError
	if !errors.As(err, &noWay) || len(noWay.Migrations) != 1 || noWay.Migrations[0].Name != "004_irreversible.sql" {
		t.Fatalf("err = %v, want a *NoWayDownError naming 004_irreversible.sql", err)
	}
	if called || applied(t, db) != "001,002,003,004" {
		t.Fatalf("something changed: restore point taken %v, applied %s", called, applied(t, db))
	}
	// Down to 004's own version is fine: 004 stays.
	if _, err := downTo(d, fsys, "004", &bytes.Buffer{}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAFailingDownSectionIsRolledBackAndNamed(t *testing.T) {
	db, d := setup(t)
	fsys := release2()
	fsys["004_x.sql"] = migUpDown("create table x (n int);", "drop table x;\nselect 1/0;")
	if _, err := run(d, fsys, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	_, err := downTo(d, release1, "001", &bytes.Buffer{}, nil)
	var failed *DownFailedError
	if !errors.As(err, &failed) || failed.Failed.Name != "004_x.sql" || len(failed.RolledBack) != 0 || len(failed.NotRolledBack) != 2 {
		t.Fatalf("err = %v (%+v), want 004_x.sql failed, nothing rolled back, 003 and 002 not", err, failed)
	}
	if got := applied(t, db) + " " + db.QueryString(t, "select coalesce(to_regclass('x')::text, 'none')"); got != "001,002,003,004 x" {
		t.Fatalf("after the failed down: %q", got)
	}
}

func TestDownWithoutStoredSectionsForMigrationsItDoesNotShipIsRefused(t *testing.T) {
	db, d := setup(t)
	if _, err := run(d, release2(), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	db.MustExec(t, "delete from "+DownTable+" where version = '003'")
	_, err := downTo(d, release1, "002", &bytes.Buffer{}, nil)
	var no *NoDownError
	if !errors.As(err, &no) || strings.Join(no.Versions, ",") != "003" || applied(t, db) != "001,002,003" {
		t.Fatalf("err = %v, applied %s; want a *NoDownError for 003 and nothing changed", err, applied(t, db))
	}
	_, err = downTo(d, release1, "007", &bytes.Buffer{}, nil)
	var unknown *UnknownTargetError
	if !errors.As(err, &unknown) {
		t.Fatalf("err = %v, want an *UnknownTargetError", err)
	}
}

// The lint's real-project-like migrations (migrations/testdata/realistic)
// apply, and their down sections take them back, with rows kept, until the
// one that says it has no way down.
func TestARealProjectsMigrationsGoUpAndDownKeepingRows(t *testing.T) {
	db, d := setup(t)
	all := os.DirFS(filepath.Join("..", "..", "migrations", "testdata", "realistic"))
	known, err := Known(all)
	if err != nil || len(known) < 5 {
		t.Fatalf("Known = %v, %v", known, err)
	}
	purge := known[len(known)-1]
	withoutPurge := UpTo(all, known, known[len(known)-2])
	if _, err := Run(context.Background(), Options{DSN: d, FS: UpTo(all, known, known[1]), Out: &bytes.Buffer{}, LockTimeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	db.MustExec(t, "insert into users (email, name) values ('a@example.org', 'A'); insert into alerts (user_id, severity, message) select id, 'info', 'm' from users")
	if _, err := Run(context.Background(), Options{DSN: d, FS: all, Out: &bytes.Buffer{}, LockTimeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	_, err = Down(context.Background(), Options{DSN: d, FS: withoutPurge, Out: &bytes.Buffer{}, LockTimeout: time.Minute}, known[1].Version)
	var noWay *NoWayDownError
	if !errors.As(err, &noWay) || noWay.Migrations[0].Name != purge.Name {
		t.Fatalf("err = %v, want %s to have no way down", err, purge.Name)
	}
	// As if the purge had never been applied: every other way down works.
	db.MustExec(t, "delete from schema_migrations where version = '"+purge.Version+"'")
	var out bytes.Buffer
	res, err := Down(context.Background(), Options{DSN: d, FS: release1, Out: &out, LockTimeout: time.Minute}, known[1].Version)
	if err != nil || len(res.RolledBack) != len(known)-3 {
		t.Fatalf("Down: %v, rolled back %v\n%s", err, res.RolledBack, out.String())
	}
	if got := db.QueryString(t, "select (select string_agg(column_name, ',' order by column_name) from information_schema.columns where table_name = 'users') || ' ' || "+
		"(select count(*) from users) || ' ' || (select count(*) from alerts)"); got != "created_at,email,id,name 1 1" {
		t.Fatalf("after the way down: %q", got)
	}
}
