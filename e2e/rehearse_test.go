package e2e

import (
	"context"
	"slices"
	"strings"
)

// failingMigrationRehearsed: with CREATEDB (and REHEARSE=auto, as shipped)
// the preflight rehearses the new migration on a scratch copy of the
// database while the service still runs. A migration that fails on the data
// fails the upgrade there: the helper's message says nothing was changed and
// the service was not stopped, and so it is: never stopped, schema, rows,
// the role's databases and the backup directory as before. After the cause
// is fixed, the documented recovery upgrades.
func failingMigrationRehearsed(e *env) {
	nw, failing := e.vs["new"], e.vs["failing"]
	e.installAndInitialise(nw)
	if err := e.db.Server.Exec(context.Background(), "postgres", `ALTER ROLE "`+e.db.User+`" CREATEDB`); err != nil {
		e.t.Fatal(err)
	}
	e.exec("CREATE TABLE e2e_block_migration (why text)")
	ownDatabases := "SELECT datname::text FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1"
	shape, data, versions, dbs := e.schemaShape(), e.data(), e.schemaVersions(), e.queryStrings(ownDatabases)
	e.r.resetEvents()

	res := e.pm(e.f.upgrade(e.f.pkg(failing))...)
	if !e.f.reportsFailure(res) {
		e.t.Errorf("%s (exit %d) does not report the failed post-install script", res.cmd, res.code)
	}
	for _, want := range []string{
		"PREFLIGHT FAILED (openwatch migrate --preflight exit 16): nothing was",
		"would fail on this database: ", "e2e: blocked while table e2e_block_migration exists",
		"the live database is as it was and the scratch copy was dropped; the service was not stopped.",
		"After fixing the cause, run: " + strings.Join(e.f.recover, " "),
	} {
		if !strings.Contains(res.out, want) {
			e.t.Errorf("the failure output lacks %q:\n%s", want, res.out)
		}
	}
	if i := eventIndex(lines(e.r.events()), 0, isCall(applianceUnit, "stop")); i >= 0 {
		e.t.Errorf("%s was stopped although the rehearsal failed before", applianceUnit)
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the failed preflight", applianceUnit)
	}
	if got := e.schemaVersions(); !slices.Equal(got, versions) {
		e.t.Errorf("schema_migrations = %v, want unchanged %v", got, versions)
	}
	if got := e.schemaShape(); got != shape {
		e.t.Errorf("the schema changed:\nbefore:\n%s\nafter:\n%s", shape, got)
	}
	if got := e.data(); got != data {
		e.t.Errorf("data changed:\nbefore %s\nafter  %s", data, got)
	}
	if got := e.queryStrings(ownDatabases); !slices.Equal(got, dbs) {
		e.t.Errorf("the role's databases are %v, want %v as before (no clone, no scratch copy left)", got, dbs)
	}
	e.assertNoRestorePoint()
	if got := e.journal("OUTCOME"); got != "preflight-failed" {
		e.t.Errorf("journal OUTCOME = %q, want preflight-failed", got)
	}

	e.exec("DROP TABLE e2e_block_migration")
	res = e.pm(e.f.recover...)
	if res.code != 0 {
		e.t.Fatalf("recovery %s: exit %d\n%s", res.cmd, res.code, res.out)
	}
	if !strings.Contains(res.out, "preflight: rehearsal: all 1 migration(s) succeeded on a copy of the database") {
		e.t.Errorf("the recovery's preflight did not rehearse:\n%s", res.out)
	}
	if got, want := e.schemaVersions(), append(slices.Clone(repoMigrations), failing.Head); !slices.Equal(got, want) {
		e.t.Errorf("after recovery schema_migrations = %v, want %v", got, want)
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the recovery", applianceUnit)
	}
}
