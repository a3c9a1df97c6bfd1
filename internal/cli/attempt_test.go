package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/journal"
)

func (e *env) journalFile() string { return filepath.Join(filepath.Dir(e.conf), "upgrade.state") }

func (e *env) journalVar(key string) string {
	vars, _ := journal.Read(e.journalFile())
	return vars[key]
}

// A retry takes the earlier attempt's restore point only while the database
// server says nothing but that attempt's migrations changed the database: a
// retry that finds it unchanged reuses it, and a failure like the earlier
// one is said to be the same; rows written in between (the operator's fix,
// the service that ran for weeks, another node) make it take a new one and
// say why; so does a restore point that is gone.
func TestARetryReusesTheEarlierRestorePointOnlyWhileTheDatabaseIsUnchanged(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.MapFS{"001_base.sql": mapFile("create table base (n int); insert into base values (1);")}
	if code, out := e.inProcess(context.Background(), fsys, "migrate"); code != 0 {
		t.Fatalf("first migrate: %d\n%s", code, out)
	}
	fsys["002_broken.sql"] = mapFile("create table broken (n int); select 1/0;")
	// What the helper records (migrate --record begin) before migrate.
	if code, out := e.inProcess(context.Background(), fsys, "migrate", "--record", "begin", "--recovery", "dpkg --configure -a", "--observed", "active=yes"); code != 0 {
		t.Fatalf("record begin: %d\n%s", code, out)
	}

	code, out := e.inProcess(context.Background(), fsys, "migrate", "--attempt", "new")
	if code != ExitFailed || len(e.dumps()) != 1 {
		t.Fatalf("first attempt: exit %d, restore points %v\n%s", code, e.dumps(), out)
	}
	first := e.dumps()[0]
	if got := e.journalVar(journalRestorePoint); got != first {
		t.Errorf("journal RESTORE_POINT = %q, want %s", got, first)
	}
	if got := e.journalVar(journal.RestorePointState); got == "" {
		t.Errorf("journal RESTORE_POINT_STATE is empty: what the database looked like was not recorded")
	}
	if got := e.journalVar(journalFailure); !strings.Contains(got, "002_broken.sql") || !strings.HasPrefix(got, "migration-failed: ") {
		t.Errorf("journal FAILURE = %q", got)
	}
	if got := e.journalVar(journal.SchemaChanged); got != "no" {
		t.Errorf("journal SCHEMA_CHANGED = %q, want no (the failed migration was rolled back)", got)
	}
	if got := e.journalVar("RECOVERY"); got != "dpkg --configure -a" {
		t.Errorf("the binary lost the helper's lines: RECOVERY = %q", got)
	}
	if strings.Contains(out, "same failure") {
		t.Errorf("a first attempt called its failure the same as an earlier one:\n%s", out)
	}

	// Nothing wrote since: the retry reuses it (retry-stopped, what an
	// earlier release's helper passes, is a retry too).
	for _, attempt := range []string{"retry", "retry-stopped"} {
		code, out = e.inProcess(context.Background(), fsys, "migrate", "--attempt", attempt)
		if code != ExitFailed || len(e.dumps()) != 1 {
			t.Fatalf("%s with the database unchanged: exit %d, restore points %v (want the one from the first attempt only)\n%s", attempt, code, e.dumps(), out)
		}
		for _, want := range []string{
			"restore point: " + first + ", taken by the earlier attempt of this upgrade; no new one is taken",
			"this is the same failure as the earlier attempt's: migration-failed: migration 002_broken.sql failed",
			"To put the database back as it was before the earlier attempt of this upgrade:\n  openwatch restore --yes " + first,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", attempt, want, out)
			}
		}
	}

	// Weeks of the service's writes (or the operator's fix) since: the old
	// restore point would lose them.
	e.exec("insert into base values (2)")
	code, out = e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry")
	if code != ExitFailed || len(e.dumps()) != 2 {
		t.Fatalf("retry after rows were written: exit %d, restore points %v (want a new one)\n%s", code, e.dumps(), out)
	}
	if !strings.Contains(out, "restore point: a new one: the database changed since the earlier attempt's restore point "+first+" was taken") {
		t.Errorf("the new restore point does not say why:\n%s", out)
	}
	second := e.journalVar(journalRestorePoint)
	if second == first || second == "" {
		t.Errorf("journal RESTORE_POINT = %q, want the retry's new one", second)
	}

	// A TRUNCATE writes no row counts but changes the table's storage.
	e.exec("truncate base")
	code, out = e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry")
	if code != ExitFailed || len(e.dumps()) != 3 || !strings.Contains(out, "the database changed since") {
		t.Fatalf("retry after a TRUNCATE: exit %d, restore points %v (want a new one)\n%s", code, e.dumps(), out)
	}

	os.Remove(e.journalVar(journalRestorePoint))
	code, out = e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry")
	if code != ExitFailed || len(e.dumps()) != 3 || !strings.Contains(out, "is gone") {
		t.Fatalf("retry whose restore point was deleted: exit %d, restore points %v, want a new one and why\n%s", code, e.dumps(), out)
	}

	// Without --attempt (by hand) the journal is not the binary's to write.
	before, _ := os.ReadFile(e.journalFile())
	e.inProcess(context.Background(), fsys, "migrate")
	if after, _ := os.ReadFile(e.journalFile()); string(after) != string(before) {
		t.Errorf("a migrate by hand rewrote the journal:\n%s\nwas:\n%s", after, before)
	}
}

// The example: an upgrade took restore point RP, migrated, and the
// service failed to start; the operator fixed it and it ran for weeks; the
// next upgrade stopped it and could not take its restore point (exit 13).
// Its retry must not offer RP, which lacks those weeks.
func TestARetryNeverReusesARestorePointOlderThanTheDatabasesLastWrites(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.MapFS{"001_base.sql": mapFile("create table base (n int); insert into base values (1);")}
	e.inProcess(context.Background(), fsys, "migrate")
	fsys["002_v2.sql"] = mapFile("create table v2 (n int);")
	e.inProcess(context.Background(), fsys, "migrate", "--record", "begin", "--observed", "active=yes")
	if code, out := e.inProcess(context.Background(), fsys, "migrate", "--attempt", "new"); code != 0 {
		t.Fatalf("v2: %d\n%s", code, out)
	}
	rp := e.journalVar(journalRestorePoint)
	e.inProcess(context.Background(), fsys, "migrate", "--record", "failed", "--outcome", "start-failed", "--phase", "start",
		"--message", "the schema is migrated, but openwatch.service failed to start", "--observed", "active=no")
	// Weeks of the service's rows.
	e.exec("insert into base select generate_series(2, 100)")
	// v3: its restore point cannot be taken (the backup directory is a file).
	fsys["003_v3.sql"] = mapFile("create table v3 (n int);")
	os.RemoveAll(e.backups)
	os.WriteFile(e.backups, nil, 0o600)
	e.inProcess(context.Background(), fsys, "migrate", "--record", "begin", "--observed", "active=no", "--observed", "systemd=no")
	if code, out := e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry"); code != ExitBackupFailed {
		t.Fatalf("v3 without room for a restore point: exit %d, want %d\n%s", code, ExitBackupFailed, out)
	}
	if got := e.journalVar(journalRestorePoint); got != "" {
		t.Errorf("the journal still offers %q after an attempt that took none", got)
	}
	os.Remove(e.backups)
	// retry-stopped: what the helper of the release before said here, since
	// the service had not run since the v3 attempt stopped it.
	code, out := e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry-stopped")
	if code != 0 || strings.Contains(out, "taken by the earlier attempt") || e.journalVar(journalRestorePoint) == rp {
		t.Fatalf("the retry reused %s, which lacks the rows written since: exit %d\n%s", rp, code, out)
	}
}

// As the start guard, --check logs its refusal at priority err (journald's
// "<3>" prefix) with the reason and one command: the journal's recovery
// command after a failed upgrade, else the helper; it records the refused
// invocation for the helper and forgets it once the schema matches.
func TestTheStartGuardLogsItsRefusalAtPriorityErrAndRecordsIt(t *testing.T) {
	e := newEnv(t)
	journal := filepath.Join(t.TempDir(), "upgrade.state")
	record := filepath.Join(filepath.Dir(journal), "start-refused")
	e.vars = []string{"INVOCATION_ID=0123456789abcdef0123456789abcdef"}
	guard := []string{"migrate", "--check", "--guard", "--journal", journal, "--state-dir", filepath.Dir(record)}

	r := e.mustRun(ExitPending, guard...)
	want := "<3>openwatch start guard: refused to start " + defaults.AppUnit + ": migrations are pending. " +
		"To take a restore point, migrate, and start the service, run: " + config.DefaultUpgradeHelper + "\n"
	if !strings.HasSuffix(r.stderr, want) || strings.Count(r.stdout+r.stderr, " run: ") != 1 {
		t.Errorf("want one command, in the err-priority line %q:\n%s", want, r)
	}
	if b, err := os.ReadFile(record); err != nil || !strings.Contains(string(b), "INVOCATION_ID=0123456789abcdef0123456789abcdef\n") || !strings.Contains(string(b), "EXIT=10\n") {
		t.Errorf("record %s: %q, %v", record, b, err)
	}

	os.WriteFile(journal, []byte("OUTCOME=migration-failed\nPHASE=migrate\nRECOVERY='dpkg --configure -a'\nMESSAGE='a migration failed and was rolled back'\n"), 0o600)
	r = e.mustRun(ExitPending, guard...)
	if !strings.Contains(r.stderr, "<3>openwatch start guard: refused to start "+defaults.AppUnit+": migrations are pending. "+
		"The last upgrade ended migration-failed: a migration failed and was rolled back. After fixing the cause, run: dpkg --configure -a\n") ||
		strings.Contains(r.stdout+r.stderr, config.DefaultUpgradeHelper) {
		t.Errorf("after a failed upgrade the guard must name its recovery command alone:\n%s", r)
	}
	if st := e.mustRun(0, "migrate", "--status", "--journal", journal).stdout; !strings.Contains(st, "migration-failed in phase migrate (): a migration failed and was rolled back; to recover, run: dpkg --configure -a") {
		t.Errorf("--status does not show the journal's MESSAGE:\n%s", st)
	}

	e.mustRun(0, "migrate")
	if r := e.mustRun(0, guard...); strings.Contains(r.stderr, "<3>") {
		t.Errorf("an allowed start logged at priority err:\n%s", r)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("the record of a refusal outlived an allowed start: %v", err)
	}
}

// Run by the upgrade helper, --check states the schema and names no
// command: the helper migrates next, and names the one recovery command
// itself. By hand it names the helper.
func TestCheckNamesTheNextCommandOnlyWhenRunByHand(t *testing.T) {
	e := newEnv(t)
	if r := e.mustRun(ExitPending, "migrate", "--check"); !strings.Contains(r.stdout, "run: "+config.DefaultUpgradeHelper) {
		t.Errorf("by hand, --check does not name the helper:\n%s", r)
	}
	e.vars = []string{RecoveryVar + "=dpkg --configure -a"}
	if r := e.mustRun(ExitPending, "migrate", "--check"); strings.Contains(r.stdout+r.stderr, "run:") || !strings.Contains(r.stdout, "migration(s) pending") {
		t.Errorf("run by the helper, --check names a command of its own:\n%s", r)
	}
}

// A transaction the gate refused shows in migrate --status (where a client
// that hides the scripts' output, PackageKit, leaves the operator), beside
// the last upgrade's outcome, until the next upgrade begins.
func TestAGateRefusalShowsInStatusUntilTheNextUpgrade(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	dir := t.TempDir()
	j := []string{"--journal", filepath.Join(dir, "upgrade.state"), "--state-dir", dir}
	e.mustRun(0, append(j, "migrate", "--record", "gate-refused", "--message", "the incoming openwatch 1.2.0-1: migrate --preflight exit 19",
		"--recovery", "apt-get upgrade")...)
	st := e.mustRun(0, append(j, "migrate", "--status")...).stdout
	if !strings.Contains(st, "refused upgrade:") || !strings.Contains(st, "the incoming openwatch 1.2.0-1: migrate --preflight exit 19; once fixed, run: apt-get upgrade") {
		t.Errorf("--status does not show the refusal:\n%s", st)
	}
	if js := e.mustRun(0, append(j, "migrate", "--status", "--json")...).stdout; !strings.Contains(js, `"gate_recovery": "apt-get upgrade"`) {
		t.Errorf("--status --json does not show the refusal:\n%s", js)
	}
	e.mustRun(0, append(j, "migrate", "--record", "begin", "--observed", "active=yes")...)
	if st := e.mustRun(0, append(j, "migrate", "--status")...).stdout; strings.Contains(st, "refused upgrade:") {
		t.Errorf("the refusal outlived the next upgrade's start:\n%s", st)
	}
	if r := e.run(append(j, "migrate", "--record", "failed", "--outcome", "x; rm -rf /", "--phase", "migrate", "--message", "m")...); r.code != ExitUsage {
		t.Errorf("an invalid outcome was accepted: %s", r)
	}
}
