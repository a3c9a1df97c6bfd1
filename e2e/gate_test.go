package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// The package managers' gate where hardening, the package manager's own
// input or the operator's environment differ from the plain case: with the
// real apt and dnf, the real packages, in disposable roots.

// noGateLeftovers fails when the gate left its private directory anywhere
// it may make one.
func (e *env) noGateLeftovers() {
	e.t.Helper()
	for _, base := range []string{"/run", "/var/cache", "/tmp"} {
		if left := e.r.glob(base + "/openwatch-gate.*"); len(left) != 0 {
			e.t.Errorf("the gate left %v", left)
		}
	}
}

// readyFor is the gate's line for a ready upgrade, naming the database.
func (e *env) readyFor() string {
	return fmt.Sprintf("is ready for database %q on ", e.db.Name)
}

func TestGateApt(t *testing.T) {
	for _, shell := range []string{"dash", "busybox"} {
		t.Run("/tmp mounted noexec under "+shell+": the gate runs the incoming binary from a private directory, says it is ready, and the upgrade goes on", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, formatNamed(t, "deb"), shell)
			old, next := e.vs["old"], e.vs["new"]
			apt := e.aptRepo(old, next)
			e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
			e.initialise(old)
			// CIS/STIG: /tmp noexec. Proof that it is: a copy of true cannot run there.
			e.mustRoot("mount -o remount,noexec /tmp && cp /bin/true /tmp/e2e-true && ! /tmp/e2e-true 2>/dev/null && rm /tmp/e2e-true")

			res := e.pm(append(apt, "install", "openwatch")...)
			if res.code != 0 || !strings.Contains(res.out, e.readyFor()) || strings.Contains(res.out, "cannot decide") || strings.Contains(res.out, "UPGRADE REFUSED") {
				t.Errorf("apt-get install with /tmp noexec: exit %d, want 0 and the gate's %q\n%s", res.code, e.readyFor(), res.out)
			}
			if got := e.installedVersion(); got != next.FullVersion()+" ii" {
				t.Errorf("installed %q, want %s ii", got, next.FullVersion())
			}
			e.noGateLeftovers()
		})
	}

	t.Run("a local .deb whose path has spaces is checked like any other: a bad setting refuses it", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		apt := e.aptRepo(old)
		e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
		e.initialise(old)
		local := "/root/my downloads/openwatch " + next.FullVersion() + ".deb"
		e.mustRoot(`mkdir -p "${2%/*}" && cp "$1" "$2"`, next.DEB, local)
		e.misspellSetting()

		install := append(apt, "install", local)
		res := e.pm(install...)
		e.refusedUntouched(res, old, old.FullVersion()+" ii", strings.Join(install, " "))
		e.noGateLeftovers()
	})

	t.Run("a transaction that also installs a PostgreSQL client is not refused for the pg_dump installed now, and the upgrade step checks the new one", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		// The client the transaction brings: pg_dump as it is in this root
		// (the recording shim of the real one), in a package named as
		// Debian names the PostgreSQL 17 client.
		e.mustRoot(`set -e
mkdir -p /srv/e2e/client/DEBIAN /srv/e2e/client/usr/bin /srv/e2e/debs
cp /usr/bin/pg_dump /srv/e2e/client/usr/bin/pg_dump
cat >/srv/e2e/client/DEBIAN/control <<EOF
Package: postgresql-client-17
Version: 17.0-1e2e
Architecture: all
Maintainer: e2e <e2e@example.invalid>
Replaces: postgresql-client-common
Description: e2e stand-in for the PostgreSQL 17 client
EOF
dpkg-deb --root-owner-group -Zgzip --build /srv/e2e/client /srv/e2e/debs/postgresql-client-17_17.0-1e2e_all.deb >/dev/null`)
		apt := e.aptRepo(old, next)
		e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
		e.initialise(old)
		// The pg_dump installed now is older than the server.
		e.r.writeFile("/usr/bin/pg_dump", "#!/bin/sh\ncase $1 in --version) echo 'pg_dump (PostgreSQL) 12.22'; exit 0 ;; esac\necho 'e2e: the old pg_dump ran' >&2\nexit 1\n", 0o755)

		alone := e.pm(append(apt, "install", "openwatch")...)
		if alone.code == 0 || !strings.Contains(alone.out, "UPGRADE REFUSED") || !strings.Contains(alone.out, "pg_dump") {
			t.Errorf("the upgrade alone, with an old pg_dump: exit %d, want the gate's refusal naming pg_dump\n%s", alone.code, alone.out)
		}

		res := e.pm(append(apt, "install", "openwatch", "postgresql-client-17")...)
		want := "openwatch-gate: cannot decide: pg_dump as installed now cannot take the restore point, but this transaction also installs postgresql-client-17; the upgrade goes on"
		if res.code != 0 || !strings.Contains(res.out, want) {
			t.Errorf("apt-get install openwatch postgresql-client-17: exit %d, want 0 and %q\n%s", res.code, want, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion()+" ii" {
			t.Errorf("installed %q, want %s ii", got, next.FullVersion())
		}
		if got := e.head(); got != next.Head {
			t.Errorf("schema at %s, want %s", got, next.Head)
		}
		if strings.Contains(res.out, "e2e: the old pg_dump ran") {
			t.Errorf("the old pg_dump took the restore point:\n%s", res.out)
		}
	})

	t.Run("an apt run that only configures a half-configured openwatch prints nothing from the gate", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old, failing := e.vs["old"], e.vs["failing"]
		apt := e.aptRepo(old, failing)
		e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
		e.initialise(old)
		e.exec("CREATE TABLE e2e_block_migration (why text)")
		if res := e.pm(append(apt, "install", "openwatch")...); res.code == 0 {
			t.Fatalf("the failing upgrade exited 0\n%s", res.out)
		}
		if got := e.installedVersion(); !strings.HasPrefix(got, failing.FullVersion()+" i") || strings.HasSuffix(got, "ii") {
			t.Fatalf("installed %q after the failed upgrade, want %s half-configured", got, failing.FullVersion())
		}
		e.exec("DROP TABLE e2e_block_migration")

		res := e.pm(append(apt, "install", "-f")...)
		if res.code != 0 || strings.Contains(res.out, "openwatch-gate:") {
			t.Errorf("apt-get install -f configuring openwatch: exit %d, want 0 and no line from the gate\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); got != failing.FullVersion()+" ii" {
			t.Errorf("installed %q, want %s ii", got, failing.FullVersion())
		}
	})

	t.Run("a database URL and PG variables exported in root's shell do not redirect the gate: it checks the service's database and names it", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		apt := e.aptRepo(old, next)
		e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
		e.initialise(old)
		e.r.writeFile(upgradeConfPath, strings.Replace(e.r.readFile(upgradeConfPath), "\nDATABASE_WAIT_TIMEOUT=30\n", "\nDATABASE_WAIT_TIMEOUT=0\n", 1), 0o640)

		upgrade := append(apt, "install", "openwatch")
		res := e.operator(append([]string{"env", "OPENWATCH_DATABASE_DSN=postgres://elsewhere@127.0.0.1:1/elsewhere", "PGHOST=127.0.0.2", "PGDATABASE=elsewhere"}, upgrade...)...)
		if !strings.Contains(res.out, e.readyFor()) || strings.Contains(res.out, "openwatch-gate: cannot decide") {
			t.Errorf("with OPENWATCH_DATABASE_DSN exported: want the gate's %q\n%s", e.readyFor(), res.out)
		}
	})
}

// TestGateDNF: the dnf plugin's side of the gate.
func TestGateDNF(t *testing.T) {
	t.Run("a gate that crashes, cannot run or is killed stops the transaction, naming what happened and how to skip it once", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		dnf := e.dnfRepo(old, next)
		e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		e.initialise(old)
		gate := "/usr/lib/openwatch/openwatch-gate.sh"
		upgrade := append(dnf, "upgrade", "openwatch")
		for _, c := range []struct{ script, says string }{
			{"#!/bin/sh\nexit 2\n", "failed with exit 2"},
			{"#!/bin/sh\nexec /nonexistent/e2e-tool\n", "failed with exit 127"},
			{"#!/bin/sh\nkill -KILL $$\n", "was killed by signal SIGKILL"},
		} {
			e.r.writeFile(gate, c.script, 0o755)
			res := e.pm(upgrade...)
			want := "the gate " + gate + " " + c.says + " before it decided. If the gate itself is broken, skip it for this run: OPENWATCH_SKIP_GATE=1 " + strings.Join(upgrade, " ")
			if res.code == 0 || !strings.Contains(res.out, want) {
				t.Errorf("dnf upgrade with a gate that %s: exit %d, want non-zero and %q\n%s", c.says, res.code, want, res.out)
			}
			if got := e.installedVersion(); got != old.FullVersion() {
				t.Errorf("installed %q after the gate %s, want %s", got, c.says, old.FullVersion())
			}
		}
		res := e.operator(append([]string{"env", "OPENWATCH_SKIP_GATE=1"}, upgrade...)...)
		if res.code != 0 || !strings.Contains(res.out, "openwatch-gate: skipped (OPENWATCH_SKIP_GATE=1)") {
			t.Errorf("OPENWATCH_SKIP_GATE=1 dnf upgrade past a broken gate: exit %d\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion() {
			t.Errorf("installed %q, want %s", got, next.FullVersion())
		}
	})

	t.Run("dnf --installroot: the host's gate does not judge an image's package against the host's configuration and database", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		dnf := e.dnfRepo(old, next)
		e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		e.initialise(old)
		e.misspellSetting() // the host's own upgrade would be refused
		// The image has no shell to run scriptlets with: its package is
		// unpacked only.
		image := append(append([]string{}, dnf...), "--installroot=/srv/image", "--setopt=tsflags=noscripts", "install", "e2e-system", "openwatch-"+next.FullVersion())
		res := e.pm(image...)
		want := "openwatch-gate: not checked: this dnf run installs into another root (--installroot=/srv/image)"
		if res.code != 0 || !strings.Contains(res.out, want) || strings.Contains(res.out, "UPGRADE REFUSED") {
			t.Errorf("%s: exit %d, want 0 and %q\n%s", res.cmd, res.code, want, res.out)
		}
		if got := strings.TrimSpace(e.r.run(30*time.Second, "rpm", "--root", "/srv/image", "-q", "--qf", "%{VERSION}-%{RELEASE}", "openwatch").out); got != next.FullVersion() {
			t.Errorf("the image holds openwatch %q, want %s", got, next.FullVersion())
		}
		if got := e.installedVersion(); got != old.FullVersion() {
			t.Errorf("the host's openwatch is %q, want %s untouched", got, old.FullVersion())
		}
	})

	t.Run("a transaction that also installs a PostgreSQL client (postgresql16) is not refused for the pg_dump installed now", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		// The client the transaction brings: pg_dump as it is in this root
		// (the recording shim of the real one), named as PGDG names the
		// PostgreSQL 16 client. It provides postgresql, as the client the
		// openwatch RPM requires, so rpm installs it before openwatch's %post.
		e.mustRoot(`set -e
mkdir -p /srv/e2e/rpmbuild /srv/e2e/rpms
cp /usr/bin/pg_dump /srv/e2e/pg_dump.good
cat >/srv/e2e/postgresql16.spec <<'SPEC'
Name: postgresql16
Version: 16.9
Release: 1e2e
Summary: e2e stand-in for the PostgreSQL 16 client
License: none
BuildArch: noarch
AutoReqProv: no
Provides: postgresql
%description
e2e stand-in for the PostgreSQL 16 client.
%install
mkdir -p %{buildroot}/usr/bin
cp /srv/e2e/pg_dump.good %{buildroot}/usr/bin/pg_dump
%files
/usr/bin/pg_dump
SPEC
rpmbuild -bb --quiet --define '_topdir /srv/e2e/rpmbuild' /srv/e2e/postgresql16.spec >/dev/null
cp /srv/e2e/rpmbuild/RPMS/noarch/postgresql16-16.9-1e2e.noarch.rpm /srv/e2e/rpms/`)
		dnf := e.dnfRepo(old, next)
		e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		e.initialise(old)
		e.r.writeFile("/usr/bin/pg_dump", "#!/bin/sh\ncase $1 in --version) echo 'pg_dump (PostgreSQL) 12.22'; exit 0 ;; esac\necho 'e2e: the old pg_dump ran' >&2\nexit 1\n", 0o755)

		res := e.pm(append(dnf, "install", "openwatch-"+next.FullVersion(), "postgresql16")...)
		want := "openwatch-gate: cannot decide: pg_dump as installed now cannot take the restore point, but this transaction also installs postgresql16; the upgrade goes on"
		if res.code != 0 || !strings.Contains(res.out, want) {
			t.Errorf("dnf install openwatch postgresql16: exit %d, want 0 and %q\n%s", res.code, want, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion() {
			t.Errorf("installed %q, want %s", got, next.FullVersion())
		}
		if got := e.head(); got != next.Head {
			t.Errorf("schema at %s, want %s", got, next.Head)
		}
		if strings.Contains(res.out, "e2e: the old pg_dump ran") {
			t.Errorf("the old pg_dump took the restore point:\n%s", res.out)
		}
	})

	t.Run("a password in dnf's arguments reaches neither the gate's argv nor any message", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old := e.vs["old"]
		dnf := e.dnfRepo(old, e.vs["new"])
		e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		e.initialise(old)
		e.misspellSetting()
		const secret = "e2eProxyS3cret"
		upgrade := append(append([]string{}, dnf...), "--setopt=proxy_password="+secret, "upgrade", "openwatch")
		res := e.pm(upgrade...)
		shown := strings.Replace(strings.Join(upgrade, " "), secret, "<redacted>", 1)
		e.refusedUntouched(res, old, old.FullVersion(), shown)
		if strings.Contains(res.out, secret) {
			t.Errorf("the output shows the proxy password:\n%s", res.out)
		}
		for _, a := range res.argv {
			// dnf itself (and what started it) has it: the operator put it there.
			own := strings.HasPrefix(a, "dnf ") || strings.Contains(a, "/usr/bin/dnf ") || strings.HasPrefix(a, "nsenter ") || strings.HasPrefix(a, "env -i ")
			if strings.Contains(a, secret) && !own {
				t.Errorf("a process other than dnf had the proxy password on its command line: %s", strings.ReplaceAll(a, secret, "<SECRET>"))
			}
		}
	})
}

// TestGateJournal boots a machine (real systemd and journald, see
// nspawn_test.go): a client that drops the scripts' output (PackageKit,
// Cockpit) cannot hide a refusal, which reaches the system journal at
// priority err with its reason and the command to run again.
func TestGateJournal(t *testing.T) {
	s := newSysCase(t)
	old, next := s.vs["old"], s.vs["new"]
	s.install(old, false)
	conf, err := os.ReadFile(s.m.path(upgradeConfPath))
	if err != nil {
		t.Fatal(err)
	}
	s.m.writeFile(upgradeConfPath, string(conf)+"AUTO_BACKUPS=yes\n", 0o640)

	install := aptInstall(next)
	res := s.pm(install...)
	if res.code == 0 || !strings.Contains(res.out, "UPGRADE REFUSED") {
		t.Fatalf("%s with a misspelt setting: exit %d, want the gate's refusal\n%s", res.cmd, res.code, res.out)
	}
	s.m.run(30*time.Second, "journalctl", "--sync")
	got := s.m.run(time.Minute, "journalctl", "--no-pager", "-o", "cat", "-p", "err", "-t", "openwatch-gate").out
	for _, want := range []string{
		"UPGRADE REFUSED (the incoming openwatch " + next.FullVersion() + ": migrate --preflight exit 19: invalid configuration:",
		"AUTO_BACKUPS",
		"run again: " + strings.Join(install, " "),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the system journal at priority err (-t openwatch-gate) lacks %q:\n%s", want, got)
		}
	}
}
