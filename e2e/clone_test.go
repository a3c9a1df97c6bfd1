package e2e

import (
	"context"
	"path"
	"slices"
	"strings"

	"github.com/openwatch/openwatch/internal/clone"
)

// cloneRestorePoint: with CREATEDB for the app role and nothing else
// connected, a real package upgrade takes its restore point as a clone of
// the database, migrates, starts the service, and the export that follows
// leaves the usual verified file (named for the new package and the old
// schema) and no clone behind.
func cloneRestorePoint(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	if err := e.db.Server.Exec(context.Background(), "postgres", `ALTER ROLE "`+e.db.User+`" CREATEDB`); err != nil {
		e.t.Fatal(err)
	}
	before := e.data()

	res := e.pm(e.f.upgrade(e.f.pkg(nw))...)
	if res.code != 0 {
		e.t.Fatalf("upgrade: exit %d", res.code)
	}
	if !strings.Contains(res.out, "a clone of the database") {
		e.t.Errorf("the upgrade did not take a clone restore point:\n%s", res.out)
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations) {
		e.t.Errorf("schema_migrations = %v, want %v", got, repoMigrations)
	}
	// Stopped while pending, no pg_dump in the downtime, started at head,
	// and only then the export (pg_dump of the clone) in systemd-run.
	ev := lines(e.r.events())
	stop := eventIndex(ev, 0, isCall(applianceUnit, "stop"))
	start := startIndex(ev, stop+1, applianceUnit)
	switch {
	case stop < 0 || !strings.HasSuffix(ev[stop+1], "migrate-check=10"):
		e.t.Errorf("%s was not stopped while the migration was pending", applianceUnit)
	case start < 0 || !strings.HasSuffix(ev[start+1], "migrate-check=0"):
		e.t.Errorf("%s was not started with the schema at head", applianceUnit)
	case eventIndex(ev[:start], stop, hasPrefix("pg_dump ")) >= 0:
		e.t.Errorf("pg_dump ran while the service was stopped; the clone should have replaced it")
	}
	run := eventIndex(ev, max(start, 0), hasPrefix("systemd-run "))
	if run < 0 || eventIndex(ev, run, hasPrefix("pg_dump ")) < 0 {
		e.t.Errorf("the export (pg_dump of the clone) did not run through systemd-run after the start")
	}
	e.oneRestorePoint(nw, old.Head)
	if left := e.clones(); len(left) != 0 {
		e.t.Errorf("clones left after the export: %v", left)
	}
	if got := e.data(); got != before {
		e.t.Errorf("data changed by the upgrade:\nbefore %s\nafter  %s", before, got)
	}
}

// failingMigrationWithClone: with CREATEDB the failed upgrade's restore point
// is a clone. The failure output lists it among the restore points (as the
// runbook's `openwatch backup --list` does), nothing is exported while the
// service stays stopped, and the documented recovery, which takes a clone of
// its own, keeps the first one: both are exported to files once the service
// runs, and no clone is left.
func failingMigrationWithClone(e *env) {
	nw, failing := e.vs["new"], e.vs["failing"]
	e.installAndInitialise(nw)
	if err := e.db.Server.Exec(context.Background(), "postgres", `ALTER ROLE "`+e.db.User+`" CREATEDB`); err != nil {
		e.t.Fatal(err)
	}
	e.exec("CREATE TABLE e2e_block_migration (why text)")
	// A failure once the service is stopped, as without a rehearsal (which
	// would find it first: failingMigrationRehearsed).
	conf := e.r.readFile(upgradeConfPath)
	e.r.writeFile(upgradeConfPath, conf+"\nREHEARSE=no\n", 0o640)
	data := e.data()

	res := e.pm(e.f.upgrade(e.f.pkg(failing))...)
	if !e.f.reportsFailure(res) {
		e.t.Errorf("%s (exit %d) does not report the failed post-install script", res.cmd, res.code)
	}
	first := e.clones()
	if len(first) != 1 {
		e.t.Fatalf("clones after the failed upgrade: %v, want one\n%s", first, res.out)
	}
	listing := res.out[max(strings.Index(res.out, "Restore points, files and clones"), 0):]
	if !strings.Contains(listing, first[0]+"  (clone, ") {
		e.t.Errorf("the failure output does not list the clone %s among the restore points:\n%s", first[0], res.out)
	}
	e.assertNoRestorePoint() // nothing exported while the service is stopped
	if got := e.mustOperator("openwatch", "backup", "--list").out; !strings.Contains(got, first[0]) {
		e.t.Errorf("openwatch backup --list does not show the clone %s:\n%s", first[0], got)
	}

	e.exec("DROP TABLE e2e_block_migration")
	res = e.pm(e.f.recover...)
	if res.code != 0 {
		e.t.Fatalf("recovery %s: exit %d\n%s", res.cmd, res.code, res.out)
	}
	if !strings.Contains(res.out, "a clone of the database") {
		e.t.Errorf("the recovery did not take a clone of its own:\n%s", res.out)
	}
	if left := e.clones(); len(left) != 0 {
		e.t.Errorf("clones left after the recovery's export: %v", left)
	}
	files := e.backupFiles()
	if len(files) != 2 {
		e.t.Fatalf("restore point files after the recovery: %v, want two (the failed attempt's clone and the recovery's)", files)
	}
	for _, f := range files {
		if m := restorePointName.FindStringSubmatch(path.Base(f)); m == nil || m[2] != nw.Head {
			e.t.Errorf("restore point %s: want schema %s", path.Base(f), nw.Head)
		}
	}
	if got := e.data(); got != data {
		e.t.Errorf("data changed:\nbefore %s\nafter  %s", data, got)
	}
	e.wantRecovered(failing)
}

// clones lists the clone restore points of this case's database (the
// server is shared by cases that run in parallel), by name.
func (e *env) clones() []string {
	e.t.Helper()
	return e.queryStrings("SELECT datname::text FROM pg_database WHERE starts_with(datname, '" + clone.Prefix + "')" +
		" AND shobj_description(oid, 'pg_database') LIKE '%\"source\":\"" + e.db.Name + "\"%' ORDER BY datname")
}
