package e2e

import (
	"context"
	"slices"
	"strings"
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
	start := eventIndex(ev, stop+1, startedUnit(applianceUnit))
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
	if left := e.queryStrings("SELECT datname::text FROM pg_database WHERE datname LIKE 'openwatch_rp_%'"); len(left) != 0 {
		e.t.Errorf("clones left after the export: %v", left)
	}
	if got := e.data(); got != before {
		e.t.Errorf("data changed by the upgrade:\nbefore %s\nafter  %s", before, got)
	}
}
