package cli

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/migrations"
)

// newerRelease is what a later release ships: this binary's migrations and
// one more, which this binary does not know.
func newerRelease(t *testing.T, extra string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	err := fs.WalkDir(migrations.FS, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, p)
		fsys[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fsys["20991231000000_host_notes.sql"] = &fstest.MapFile{Data: []byte(extra)}
	return fsys
}

// upgradeWith applies fsys's migrations as the newer release's binary would.
func (e *env) upgradeWith(fsys fs.FS) {
	e.t.Helper()
	d, err := dsn.Parse(e.db.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := migrate.Run(context.Background(), migrate.Options{DSN: d, FS: fsys, Out: &out, LockTimeout: time.Minute}); err != nil {
		e.t.Fatalf("the newer release's migrate: %v\n%s", err, out.String())
	}
}

const reversibleNotes = "-- migrate:up\nALTER TABLE hosts ADD COLUMN notes text;\n\n-- migrate:down\nALTER TABLE hosts DROP COLUMN notes;\n"

func TestMigrateToTakesTheSchemaDownPastAMigrationThisBinaryDoesNotShipKeepingTheRows(t *testing.T) {
	e := newEnv(t)
	e.upgradeWith(newerRelease(t, reversibleNotes))
	e.exec("insert into hosts (hostname, address, notes) values ('written-after-the-upgrade', '10.0.0.1', 'n')")
	r := e.mustRun(ExitNewer, "migrate", "--check")
	r = e.run("migrate", "--to", head)
	if r.code != ExitOK || !strings.Contains(r.stdout, "rolled back 1 migration(s): 20991231000000_host_notes.sql; schema now at "+head) {
		t.Fatalf("migrate --to %s: %s", head, r)
	}
	if got := e.applied(); got != "20260101000001,20260101000002,"+head {
		t.Fatalf("applied %s", got)
	}
	if got := e.query("select hostname || ' ' || (select count(*) from information_schema.columns where table_name = 'hosts' and column_name = 'notes') from hosts"); got != "written-after-the-upgrade 0" {
		t.Fatalf("after the way back: %q, want the row kept and no notes column", got)
	}
	if len(e.dumps()) != 1 || !strings.Contains(r.stdout, "restore point: "+e.dumps()[0]) {
		t.Fatalf("restore points %v; output %s", e.dumps(), r)
	}
	e.mustRun(ExitOK, "migrate", "--check")
	e.mustRun(ExitOK, "migrate", "--to", head) // already there
}

func TestMigrateToGoesUpAndDownWithinThisBinarysMigrations(t *testing.T) {
	e := newEnv(t)
	e.mustRun(ExitOK, "migrate", "--to", "20260101000002")
	if got := e.applied(); got != "20260101000001,20260101000002" {
		t.Fatalf("applied %s after --to 20260101000002", got)
	}
	e.exec("insert into hosts (hostname, address) values ('h', '10.0.0.2')")
	e.mustRun(ExitOK, "migrate", "--to", "20260101000001")
	if got := e.applied() + " " + e.query("select coalesce(to_regclass('scan_results')::text, 'none') || ' ' || (select count(*) from hosts)"); got != "20260101000001 none 1" {
		t.Fatalf("after --to 20260101000001: %q", got)
	}
	r := e.mustRun(ExitUsage, "migrate", "--to", "20200101000000")
	if !strings.Contains(r.stderr, "neither applied in the database nor one of this binary's migrations") {
		t.Fatalf("unknown target: %s", r)
	}
	e.mustRun(ExitUsage, "migrate", "--to", head, "--check")
}

func TestMigrateToRefusesAMigrationWithoutAWayDownNamingTheRestorePoint(t *testing.T) {
	e := newEnv(t)
	e.mustRun(ExitOK, "migrate")
	e.exec("insert into hosts (hostname, address) values ('before', '10.0.0.3')")
	rp := strings.TrimSpace(e.mustRun(ExitOK, "backup").stdout)
	e.upgradeWith(newerRelease(t, "-- migrate:up\nUPDATE hosts SET hostname = upper(hostname);\n\n-- migrate:down\n-- upper-casing cannot be undone\n"))
	e.exec("insert into hosts (hostname, address) values ('written-after', '10.0.0.4')")
	r := e.run("migrate", "--to", head)
	if r.code != ExitNoWayDown {
		t.Fatalf("want exit %d, got %s", ExitNoWayDown, r)
	}
	for _, w := range []string{"20991231000000_host_notes.sql have an empty -- migrate:down section", "nothing was changed",
		"openwatch restore --yes " + rp, "every row written since that restore point was taken would be lost"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r)
		}
	}
	if got := e.applied() + " " + e.query("select string_agg(hostname, ',' order by hostname) from hosts"); got != "20260101000001,20260101000002,"+head+",20991231000000 BEFORE,written-after" {
		t.Fatalf("something changed: %q", got)
	}
	if files, _ := os.ReadDir(e.backups); len(files) != 1 {
		t.Fatalf("a restore point was taken for a refused move: %v", files)
	}
}

func TestMigrateToPreflightTellsWhetherThereIsAWayDownAndChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.upgradeWith(newerRelease(t, reversibleNotes))
	r := e.mustRun(ExitOK, "migrate", "--to", head, "--preflight")
	if !strings.Contains(r.stdout, "preflight: 1 migration(s) to roll back, newest first: 20991231000000_host_notes.sql") {
		t.Fatalf("preflight: %s", r)
	}
	if got := e.applied(); got != "20260101000001,20260101000002,"+head+",20991231000000" || len(e.dumps()) != 0 {
		t.Fatalf("the preflight changed something: applied %s, restore points %v", got, e.dumps())
	}

	e = newEnv(t)
	e.upgradeWith(newerRelease(t, "-- migrate:up\nDELETE FROM hosts;\n\n-- migrate:down\n"))
	r = e.mustRun(ExitNoWayDown, "migrate", "--to", head, "--preflight")
	if !strings.Contains(r.stderr, "no way down") || e.applied() != "20260101000001,20260101000002,"+head+",20991231000000" {
		t.Fatalf("preflight without a way down: %s\napplied %s", r, e.applied())
	}

	e = newEnv(t)
	r = e.mustRun(ExitOK, "migrate", "--to", "20260101000002", "--preflight")
	if got := e.query("select coalesce(to_regclass('schema_migrations')::text, 'none')"); !strings.Contains(r.stdout, "preflight: 2 migration(s) pending") || got != "none" {
		t.Fatalf("preflight going up: %s\nschema_migrations: %s", r, got)
	}
}
