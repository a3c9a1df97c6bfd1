package cli

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

const firstMigration = "20260101000001_create_hosts.sql"

func TestAnEditedAppliedMigrationStopsCheckAndMigrateWithFourteen(t *testing.T) {
	e := newEnv(t)
	e.mustRun(ExitOK, "migrate", "--no-backup")
	shipped := e.query("select sha256 from openwatch_migration_checksums where file = '" + firstMigration + "'")
	// What the database holds after a package applied a different file.
	const other = "0000000000000000000000000000000000000000000000000000000000000001"
	e.exec("update openwatch_migration_checksums set sha256 = '" + other + "' where file = '" + firstMigration + "'")
	e.downgradeOneStep()
	for _, args := range [][]string{{"migrate", "--check"}, {"migrate"}} {
		r := e.mustRun(ExitChecksum, args...)
		for _, w := range []string{firstMigration, "applied with sha256 " + other, "shipped sha256 " + shipped, "nothing was changed", "Install again the package version"} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("openwatch %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r)
			}
		}
	}
	if got := e.applied(); strings.Contains(got, head) {
		t.Fatalf("migrate applied %s despite the mismatch", head)
	}
	if !strings.Contains(e.run("migrate", "--help").stdout+e.run("migrate", "--help").stderr, "14  an applied migration differs") {
		t.Error("--help does not document exit 14")
	}
}

func TestADatabaseMigratedBeforeChecksumsIsRecordedByTheFirstMigrateOnly(t *testing.T) {
	e := newEnv(t)
	e.mustRun(ExitOK, "migrate", "--no-backup")
	e.exec("drop table openwatch_migration_checksums")
	e.mustRun(ExitOK, "migrate", "--check")
	if got := e.query("select coalesce(to_regclass('openwatch_migration_checksums')::text, 'none')"); got != "none" {
		t.Fatalf("--check wrote: %s exists", got)
	}
	r := e.mustRun(ExitOK, "migrate")
	if !strings.Contains(r.stdout, "recorded the checksums of 3 migration(s) applied before openwatch recorded them") {
		t.Fatalf("first migrate does not say it recorded them:\n%s", r)
	}
	if n := e.query("select count(*) from openwatch_migration_checksums"); n != "3" {
		t.Fatalf("%s checksums recorded, want 3", n)
	}
	if r := e.mustRun(ExitOK, "migrate"); strings.Contains(r.stdout, "recorded the checksums") {
		t.Fatalf("second migrate says it again:\n%s", r)
	}
}

func TestABlockedMigrationExitsEighteenNamingTheBlockerAndARetrySucceeds(t *testing.T) {
	e := newEnv(t)
	e.writeConf("BACKUP_DIR=" + e.backups + "\nMIGRATION_LOCK_WAIT=1\n")
	e.mustRun(ExitOK, "migrate", "--no-backup")
	e.downgradeOneStep()
	// host_profiles references hosts: creating it waits for a writer of hosts.
	ctx := context.Background()
	blocker, pid := e.db.IdleInTransaction(t, "report job", "insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	r := e.mustRun(ExitLockTimeout, "migrate", "--no-backup")
	for _, w := range []string{"20260101000003_create_host_profiles.sql", "table public.hosts", "rolled back",
		"pid " + strconv.Itoa(pid), `"report job"`, "idle in transaction", "Then run: openwatch migrate"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r)
		}
	}
	if strings.Contains(e.applied(), head) {
		t.Fatal("the blocked migration was recorded as applied")
	}
	if _, err := blocker.Exec(ctx, "rollback"); err != nil {
		t.Fatal(err)
	}
	e.mustRun(ExitOK, "migrate", "--no-backup")
	if !strings.HasSuffix(e.applied(), head) {
		t.Fatalf("retry applied %s", e.applied())
	}
}
