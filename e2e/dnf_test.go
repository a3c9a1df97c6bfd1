package e2e

import (
	"strings"
	"testing"
)

// TestDNF drives the real dnf 4 (Debian's, on this machine's Python) from a
// local createrepo_c repository: the package's dnf plugin refuses a
// transaction whose incoming binary fails its preflight before rpm unpacks
// anything, and turns a %post failure, which rpm 4 only warns about, into
// dnf's own error and a non-zero exit.
func TestDNF(t *testing.T) {
	t.Run("a bad setting in upgrade.conf: dnf upgrade is refused before anything is installed; once fixed it upgrades and exits 0", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		dnf := e.dnfRepo(old, next)
		e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		e.initialise(old)
		conf := e.misspellSetting()

		upgrade := append(dnf, "upgrade", "openwatch")
		res := e.pm(upgrade...)
		e.refusedUntouched(res, old, old.FullVersion(), strings.Join(upgrade, " "))
		if !strings.Contains(res.out, "Error: openwatch: the upgrade to openwatch-"+next.FullVersion()) {
			t.Errorf("dnf's own error does not name the refused upgrade:\n%s", res.out)
		}

		e.r.writeFile(upgradeConfPath, conf, 0o640)
		e.r.resetEvents()
		res = e.pm(upgrade...)
		if res.code != 0 || !strings.Contains(res.out, e.readyFor()) {
			t.Errorf("the upgrade with the setting fixed: exit %d\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion() {
			t.Errorf("installed %q, want %s", got, next.FullVersion())
		}
		if got := e.head(); got != next.Head {
			t.Errorf("schema at %s, want %s", got, next.Head)
		}
		if !e.r.active(applianceUnit) {
			t.Errorf("%s is not running after the upgrade", applianceUnit)
		}
	})

	t.Run("a migration that fails in %post makes dnf upgrade exit non-zero naming the recovery command; a later transaction does not repeat it", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old, failing := e.vs["old"], e.vs["failing"]
		dnf := e.dnfRepo(old, failing)
		e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		e.initialise(old)
		e.exec("CREATE TABLE e2e_block_migration (why text)")

		res := e.pm(append(dnf, "upgrade", "openwatch")...)
		if res.code == 0 {
			t.Errorf("dnf upgrade exited 0 after the migration failed")
		}
		if !rpmPostFailed.MatchString(res.out) {
			t.Errorf("rpm's own warning is missing (the case does not exercise a failed %%post):\n%s", res.out)
		}
		want := "Error: openwatch: THE UPGRADE FAILED in its %post ("
		if !strings.Contains(res.out, want) || !strings.Contains(res.out, "outcome migration-failed, phase migrate). To recover, run: "+helperPath) {
			t.Errorf("dnf's error does not name the outcome and the recovery command %s:\n%s", helperPath, res.out)
		}
		if got := e.installedVersion(); got != failing.FullVersion() {
			t.Errorf("installed %q, want %s (rpm keeps a package whose %%post failed)", got, failing.FullVersion())
		}
		// What dnf's history recorded (reported, not asserted: dnf 4 gives
		// a plugin no way to change it).
		e.operator(append(dnf, "history", "info", "last")...)

		// The journal still says migration-failed, but this transaction
		// did not write it: no report.
		if res := e.pm(append(dnf, "reinstall", "e2e-system")...); res.code != 0 || strings.Contains(res.out, "THE UPGRADE FAILED") {
			t.Errorf("a transaction without openwatch repeated an older failure: exit %d\n%s", res.code, res.out)
		}

		e.exec("DROP TABLE e2e_block_migration")
		e.mustOperator(helperPath)
		if got := e.head(); got != failing.Head {
			t.Errorf("schema at %s after the recovery, want %s", got, failing.Head)
		}
	})
}
