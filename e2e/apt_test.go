package e2e

import (
	"strings"
	"testing"
)

// TestApt drives the real apt from a local file: repository: the package's
// DPkg::Pre-Install-Pkgs hook runs the incoming .deb's binary before dpkg is
// called, and apt stops when it refuses.
func TestApt(t *testing.T) {
	t.Run("a bad setting in upgrade.conf: apt-get install is refused before anything is unpacked; once fixed it upgrades", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		apt := e.aptRepo(old, next)
		e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
		e.initialise(old)
		conf := e.misspellSetting()

		upgrade := append(apt, "install", "openwatch")
		res := e.pm(upgrade...)
		e.refusedUntouched(res, old, old.FullVersion()+" ii", strings.Join(upgrade, " "))

		e.r.writeFile(upgradeConfPath, conf, 0o640)
		e.r.resetEvents()
		res = e.pm(upgrade...)
		if res.code != 0 || !strings.Contains(res.out, e.readyFor()) {
			t.Errorf("the upgrade with the setting fixed: exit %d\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion()+" ii" {
			t.Errorf("installed %q, want %s ii", got, next.FullVersion())
		}
		if got := e.head(); got != next.Head {
			t.Errorf("schema at %s, want %s", got, next.Head)
		}

		// Removed, not purged: the hook's conffile stays, the gate is gone,
		// and apt must still work.
		e.mustOperator(append(apt, "remove", "openwatch")...)
		if !e.r.exists("/etc/apt/apt.conf.d/50openwatch-gate") || e.r.exists(helperPath) {
			t.Fatalf("after apt-get remove: want the hook's conffile kept and the package's files gone")
		}
		res = e.pm(append(apt, "install", "openwatch")...)
		if res.code != 0 || strings.Contains(res.out, "openwatch-gate:") || !strings.Contains(res.out, "openwatch-gate.sh: not found") {
			t.Errorf("apt-get install after a remove, with the hook's conffile left: exit %d (want 0, with only the shell's \"not found\" for the gate)\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion()+" ii" {
			t.Errorf("installed %q after the reinstall, want %s ii", got, next.FullVersion())
		}
	})

	t.Run("an unreachable database: the gate cannot decide, says so and lets apt-get upgrade go on", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		apt := e.aptRepo(old, next)
		e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
		e.initialise(old)
		e.r.writeFile(upgradeConfPath, strings.Replace(e.r.readFile(upgradeConfPath), "\nDATABASE_WAIT_TIMEOUT=30\n", "\nDATABASE_WAIT_TIMEOUT=0\n", 1), 0o640)
		e.writeSecrets(e.closedDSN())

		res := e.pm(append(apt, "upgrade")...)
		if res.code != 0 || !strings.Contains(res.out, "openwatch-gate: cannot decide: the database is unreachable") {
			t.Errorf("apt-get upgrade with the database down: exit %d\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion()+" ii" {
			t.Errorf("installed %q, want %s ii", got, next.FullVersion())
		}
	})
}
