package e2e

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Where the operator and monitoring see a failed or unfinished upgrade after
// the package manager's output is gone (inside a booted machine).
const motdPath = "/run/motd.d/openwatch"

// failedUnits is `systemctl --failed`'s list of unit names.
func (s *sysCase) failedUnits() []string {
	var units []string
	for _, l := range lines(s.m.run(30*time.Second, "systemctl", "--failed", "--no-legend", "--plain").out) {
		if f := strings.Fields(l); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	return units
}

// motd is the login message the package left ("" when there is none).
func (s *sysCase) motd() string {
	res := s.m.run(30*time.Second, "sh", "-c", "cat "+motdPath+" 2>/dev/null")
	return strings.TrimSpace(res.out)
}

// errJournal is the system journal at priority err (and above) since a time.
func (s *sysCase) errJournal(since int64) string {
	s.m.run(30*time.Second, "journalctl", "--sync")
	return s.m.run(time.Minute, "journalctl", "--no-pager", "-o", "cat", "-p", "err",
		"--since", fmt.Sprintf("@%d.%06d", since/1e6, since%1e6)).out
}

// assertFailureVisible: systemctl --failed lists the unit (when it ran before
// the upgrade), the login message names the outcome and cmd, and the system
// journal has both at priority err.
func (s *sysCase) assertFailureVisible(since int64, cmd, reason string, unitFailed bool) {
	s.t.Helper()
	if got := slices.Contains(s.failedUnits(), applianceUnit); got != unitFailed {
		s.t.Errorf("systemctl --failed lists %s: %v, want %v (listed: %v)", applianceUnit, got, unitFailed, s.failedUnits())
	}
	if m := s.motd(); !strings.Contains(m, reason) || !strings.Contains(m, "run: "+cmd) {
		s.t.Errorf("login message %s = %q, want it to name %q and %q", motdPath, m, reason, cmd)
	}
	if j := s.errJournal(since); !strings.Contains(j, reason) || !strings.Contains(j, "run: "+cmd) {
		s.t.Errorf("the system journal at priority err since the upgrade does not name %q and %q:\n%s", reason, cmd, j)
	}
}

// assertFailureCleared: nothing is left of it once the recovery succeeded.
func (s *sysCase) assertFailureCleared() {
	s.t.Helper()
	if slices.Contains(s.failedUnits(), applianceUnit) {
		s.t.Errorf("systemctl --failed still lists %s after the recovery", applianceUnit)
	}
	if m := s.motd(); m != "" {
		s.t.Errorf("the login message outlived the recovery: %q", m)
	}
}

// sysFailureVisibleAndRetryCheap: the service running, new → failing fails.
// systemctl --failed lists the unit, the login message and the system
// journal at priority err name the failure and `dpkg --configure -a`. A
// retry without the fix (the service stayed stopped) takes no second
// restore point, says it reuses the first, and that the failure is the same
// one; still visible. After the fix the retry starts the service and clears
// the failed state and the login message.
func sysFailureVisibleAndRetryCheap(s *sysCase) {
	nw, failing := s.vs["new"], s.vs["failing"]
	s.install(nw, true)
	since := now()
	s.failingUpgrade()
	retry := strings.Join(dpkgConfigureAll, " ")
	s.assertFailureVisible(since, retry, "a migration failed and was rolled back", true)
	// The start guard runs as the service account and reads root's journal
	// (group-readable, in root's directory): its own refusal names the
	// failure and the one command that recovers under dpkg.
	if j := s.errJournal(since); !strings.Contains(j, "start guard: refused to start "+applianceUnit+": migrations are pending. "+
		"The last upgrade ended migration-failed: a migration failed and was rolled back. After fixing the cause, run: "+retry) {
		s.t.Errorf("the start guard's refusal does not name the failure and %s:\n%s", retry, j)
	}
	rps := s.restorePoints()

	res := s.pm(dpkgConfigureAll...)
	if res.code == 0 {
		s.t.Fatalf("%s succeeded with the migration still blocked", retry)
	}
	if got := s.restorePoints(); !slices.Equal(got, rps) {
		s.t.Errorf("restore points after a retry while the service stayed stopped: %v, want only the first attempt's %v", got, rps)
	}
	for _, want := range []string{"taken by the earlier attempt of this upgrade; no new one is taken", "this is the same failure as the earlier attempt's"} {
		if !strings.Contains(res.out, want) {
			s.t.Errorf("the retry's output does not say %q:\n%s", want, res.out)
		}
	}
	s.assertFailureVisible(since, retry, "a migration failed and was rolled back", true)

	s.sql(appDB, "DROP TABLE "+blockTable)
	rows := s.maxID()
	s.mustPM(dpkgConfigureAll...)
	if got := s.dpkgStatus(); got != failing.FullVersion()+" ii" {
		s.t.Errorf("dpkg status after the retry %q, want %q", got, failing.FullVersion()+" ii")
	}
	s.assertRunningOnNewSchema(since, rows, append(slices.Clone(repoMigrations), failing.Head))
	s.assertFailureCleared()
}

// sysGuardRefusalIsNotAStop (issue 15, part 4): the service running,
// PostgreSQL stopped: old → new installs and leaves the service running. A
// restart (needrestart, a reboot) with PostgreSQL back is refused by the
// start guard, which leaves the unit failed, with its reason and the one
// command at priority err. The printed follow-up migrates and starts the
// service: the guard's refusal was not the operator's decision; the failed
// state and the login message are gone.
func sysGuardRefusalIsNotAStop(s *sysCase) {
	old, nw := s.vs["old"], s.vs["new"]
	s.install(old, true)
	s.mustPM("systemctl", "stop", s.pgUnit)
	res := s.pm(aptInstall(nw)...)
	if res.code != 0 {
		s.t.Fatalf("upgrade with PostgreSQL down: exit %d, want 0", res.code)
	}
	s.wantState(applianceUnit, "after the upgrade with PostgreSQL down", "active")
	if m := s.motd(); !strings.Contains(m, "not finished") || !strings.Contains(m, helperPath) {
		s.t.Errorf("login message after the unfinished upgrade = %q, want it to name %s", m, helperPath)
	}
	cmds := recoveryCommands(res.out)
	if len(cmds) != 1 || cmds[0] != helperPath {
		s.t.Errorf("the upgrade's output should name one recovery command, %s; it names %q", helperPath, cmds)
		cmds = []string{helperPath}
	}

	s.mustPM("systemctl", "start", s.pgUnit)
	refused := now()
	if res := s.pm("systemctl", "restart", applianceUnit); res.code == 0 {
		s.t.Fatalf("systemctl restart %s succeeded with migrations pending", applianceUnit)
	}
	s.wantState(applianceUnit, "after the refused restart", "failed")
	if !slices.Contains(s.failedUnits(), applianceUnit) {
		s.t.Errorf("systemctl --failed does not list %s after the guard refused it", applianceUnit)
	}
	if j := s.errJournal(refused); !strings.Contains(j, "start guard: refused to start "+applianceUnit+": migrations are pending") || !strings.Contains(j, "run: "+helperPath) {
		s.t.Errorf("the journal at priority err does not show the guard's refusal and %s:\n%s", helperPath, j)
	}

	rows := s.maxID()
	res = s.mustPM(splitExec(cmds[0])...)
	if !strings.Contains(res.out, "stopped by the start guard's refusal") {
		s.t.Errorf("the follow-up does not say why it starts the service:\n%s", res.out)
	}
	s.assertRunningOnNewSchema(refused, rows, repoMigrations)
	s.assertFailureCleared()
}

// sysOperatorStopIsKept: the same unfinished upgrade, but the operator
// stops the running service before running the follow-up: the follow-up
// migrates and leaves it stopped.
func sysOperatorStopIsKept(s *sysCase) {
	old, nw := s.vs["old"], s.vs["new"]
	s.install(old, true)
	s.mustPM("systemctl", "stop", s.pgUnit)
	if res := s.pm(aptInstall(nw)...); res.code != 0 {
		s.t.Fatalf("upgrade with PostgreSQL down: exit %d, want 0", res.code)
	}
	s.mustPM("systemctl", "stop", applianceUnit)
	s.mustPM("systemctl", "start", s.pgUnit)
	since := now()
	res := s.mustPM(helperPath)
	if got := s.schemaVersions(appDB); !slices.Equal(got, repoMigrations) {
		s.t.Errorf("schema_migrations after the follow-up = %v, want %v", got, repoMigrations)
	}
	s.wantState(applianceUnit, "after the follow-up; the operator had stopped it", "inactive")
	if started, _ := s.unitEvents(since); len(started) != 0 {
		s.t.Errorf("the follow-up started %s, which the operator had stopped:\n%s", applianceUnit, res.out)
	}
	s.assertFailureCleared()
}
