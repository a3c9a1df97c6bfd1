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
	"github.com/openwatch/openwatch/internal/envfile"
)

func (e *env) journalFile() string { return filepath.Join(filepath.Dir(e.conf), "upgrade.state") }

func (e *env) journalVar(key string) string {
	vars, _, _ := envfile.Read(e.journalFile())
	return vars[key]
}

// A retry while the service stayed stopped (the helper says so) takes the
// earlier attempt's restore point instead of another, and says so; a retry
// that fails the same way says it is the same failure; a retry after the
// service may have run takes a new one; a reusable restore point that is
// gone is replaced, saying why.
func TestARetryWhileTheServiceStayedStoppedReusesTheEarlierAttemptsRestorePoint(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.MapFS{"001_base.sql": mapFile("create table base (n int); insert into base values (1);")}
	if code, out := e.inProcess(context.Background(), fsys, "migrate"); code != 0 {
		t.Fatalf("first migrate: %d\n%s", code, out)
	}
	fsys["002_broken.sql"] = mapFile("create table broken (n int); select 1/0;")
	// What the helper leaves before it runs migrate; the binary keeps it.
	helperLines := "OUTCOME=in-progress\nPHASE=migrate\nSERVICE_BEFORE=running\nRECOVERY='dpkg --configure -a'\n"
	if err := os.WriteFile(e.journalFile(), []byte(helperLines), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out := e.inProcess(context.Background(), fsys, "migrate", "--attempt", "new")
	if code != ExitFailed || len(e.dumps()) != 1 {
		t.Fatalf("first attempt: exit %d, restore points %v\n%s", code, e.dumps(), out)
	}
	first := e.dumps()[0]
	if got := e.journalVar(journalRestorePoint); got != first {
		t.Errorf("journal RESTORE_POINT = %q, want %s", got, first)
	}
	if got := e.journalVar(journalFailure); !strings.Contains(got, "002_broken.sql") || !strings.HasPrefix(got, "migration-failed: ") {
		t.Errorf("journal FAILURE = %q", got)
	}
	if got := e.journalVar("RECOVERY"); got != "dpkg --configure -a" {
		t.Errorf("the binary lost the helper's lines: RECOVERY = %q", got)
	}
	if strings.Contains(out, "same failure") {
		t.Errorf("a first attempt called its failure the same as an earlier one:\n%s", out)
	}

	code, out = e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry-stopped")
	if code != ExitFailed || len(e.dumps()) != 1 {
		t.Fatalf("retry while stopped: exit %d, restore points %v (want the one from the first attempt only)\n%s", code, e.dumps(), out)
	}
	for _, want := range []string{
		"restore point: " + first + ", taken by the earlier attempt of this upgrade; no new one is taken",
		"this is the same failure as the earlier attempt's: migration-failed: migration 002_broken.sql failed",
		"To put the database back as it was before the earlier attempt of this upgrade:\n  openwatch restore --yes " + first,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out = e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry")
	if code != ExitFailed || len(e.dumps()) != 2 {
		t.Fatalf("retry after the service may have run: exit %d, restore points %v (want a new one)\n%s", code, e.dumps(), out)
	}
	if got := e.journalVar(journalRestorePoint); got == first || got == "" {
		t.Errorf("journal RESTORE_POINT = %q, want the retry's new one", got)
	}

	os.Remove(e.journalVar(journalRestorePoint))
	code, out = e.inProcess(context.Background(), fsys, "migrate", "--attempt", "retry-stopped")
	if code != ExitFailed || len(e.dumps()) != 2 || !strings.Contains(out, "is gone") {
		t.Fatalf("retry whose restore point was deleted: exit %d, restore points %v, want a new one and why\n%s", code, e.dumps(), out)
	}

	// Without --attempt (by hand) the journal is not the binary's to write.
	before, _ := os.ReadFile(e.journalFile())
	e.inProcess(context.Background(), fsys, "migrate")
	if after, _ := os.ReadFile(e.journalFile()); string(after) != string(before) {
		t.Errorf("a migrate by hand rewrote the journal:\n%s\nwas:\n%s", after, before)
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
	e.vars = []string{"INVOCATION_ID=0123abcd"}
	guard := []string{"migrate", "--check", "--guard", "--journal", journal}

	r := e.mustRun(ExitPending, guard...)
	want := "<3>openwatch start guard: refused to start " + defaults.AppUnit + ": migrations are pending. " +
		"To take a restore point, migrate, and start the service, run: " + config.DefaultUpgradeHelper + "\n"
	if !strings.HasSuffix(r.stderr, want) || strings.Count(r.stdout+r.stderr, " run: ") != 1 {
		t.Errorf("want one command, in the err-priority line %q:\n%s", want, r)
	}
	if b, err := os.ReadFile(record); err != nil || !strings.Contains(string(b), "INVOCATION_ID=0123abcd\n") || !strings.Contains(string(b), "EXIT=10\n") {
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
