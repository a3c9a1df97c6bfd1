package e2e

import (
	"strings"
	"testing"
	"time"
)

// Local repositories inside a disposable root, so that the real dnf and apt
// resolve, download and install the packages as they do from a mirror.

// formatNamed is the format called name ("deb" or "rpm").
func formatNamed(t *testing.T, name string) format {
	for _, f := range formats {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no format %s", name)
	return format{}
}

// dnfRepo makes a repository of the variants' RPMs and the system stand-in
// with createrepo_c, and returns the dnf command line that uses it alone.
func (e *env) dnfRepo(vs ...*variant) []string {
	e.t.Helper()
	base, err := systemRPM()
	if err != nil {
		e.t.Fatalf("building the stand-in for the system's RPMs: %v", err)
	}
	files := []string{base}
	for _, v := range vs {
		files = append(files, v.RPM)
	}
	e.r.writeFile("/srv/e2e/dnf.conf", `[main]
gpgcheck=0
reposdir=/srv/e2e/none
cachedir=/var/cache/e2e-dnf
install_weak_deps=0

[e2e]
name=e2e
baseurl=file:///srv/e2e/rpms
gpgcheck=0
metadata_expire=0
`, 0o644)
	e.mustRoot("mkdir -p /srv/e2e/rpms && cp \"$@\" /srv/e2e/rpms/ && createrepo_c -q /srv/e2e/rpms", files...)
	return []string{"dnf", "-y", "-c", "/srv/e2e/dnf.conf", "--releasever=e2e"}
}

// aptRepo makes a flat repository of the variants' .debs with
// dpkg-scanpackages, points apt at it alone, runs apt-get update and returns
// the apt-get command line.
func (e *env) aptRepo(vs ...*variant) []string {
	e.t.Helper()
	var files []string
	for _, v := range vs {
		files = append(files, v.DEB)
	}
	e.r.writeFile("/etc/apt/apt.conf.d/00e2e-local-repository", `Dir::Etc::SourceList "/srv/e2e/sources.list";
Dir::Etc::SourceParts "/srv/e2e/sources.list.d";
Acquire::Languages "none";
APT::Install-Recommends "false";
`, 0o644)
	e.r.writeFile("/srv/e2e/sources.list", "deb [trusted=yes] file:/srv/e2e/debs ./\n", 0o644)
	e.mustRoot(`mkdir -p /srv/e2e/debs /srv/e2e/sources.list.d && cp "$@" /srv/e2e/debs/ &&
cd /srv/e2e/debs && dpkg-scanpackages --multiversion . >Packages 2>/dev/null`, files...)
	apt := []string{"apt-get", "-y", "-q"}
	e.mustOperator(append(apt, "update")...)
	return apt
}

// mustRoot runs a shell script inside the root, failing the test on error.
func (e *env) mustRoot(script string, args ...string) {
	e.t.Helper()
	res := e.r.run(time.Minute, append([]string{"sh", "-c", script, "sh"}, args...)...)
	if res.code != 0 {
		e.t.Fatalf("%s: exit %d\n%s", script, res.code, res.out)
	}
}

// initialise is the state before an upgrade once the package is installed:
// secrets.env written, the schema initialised by the operator, rows seeded,
// the events cleared.
func (e *env) initialise(v *variant) {
	e.t.Helper()
	e.writeSecrets(e.dsn())
	e.mustOperator("openwatch", "migrate")
	if got := e.schemaVersions(); len(got) == 0 || got[len(got)-1] != v.Head {
		e.t.Fatalf("after the operator's openwatch migrate, schema_migrations = %v, want head %s", got, v.Head)
	}
	e.seed()
	e.r.resetEvents()
}

// misspellSetting adds an unknown key to upgrade.conf and returns what the
// file held before.
func (e *env) misspellSetting() string {
	e.t.Helper()
	conf := e.r.readFile(upgradeConfPath)
	e.r.writeFile(upgradeConfPath, conf+"AUTO_BACKUPS=yes\n", 0o640)
	return conf
}

// head is the newest applied migration.
func (e *env) head() string {
	e.t.Helper()
	vs := e.schemaVersions()
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// refusedUntouched asserts an upgrade refused by the gate: the client failed
// naming the cause and the command to run again, and the old version is
// installed, the service still running (never stopped), the schema as it was.
func (e *env) refusedUntouched(res result, old *variant, wantVersion, rerun string) {
	e.t.Helper()
	if res.code == 0 {
		e.t.Errorf("%s exited 0; the gate should have refused the upgrade", res.cmd)
	}
	for _, want := range []string{"UPGRADE REFUSED", "AUTO_BACKUPS", "run again: " + rerun} {
		if !strings.Contains(res.out, want) {
			e.t.Errorf("%s: output lacks %q", res.cmd, want)
		}
	}
	if got := e.installedVersion(); got != wantVersion {
		e.t.Errorf("installed version %q after the refused upgrade, want %q", got, wantVersion)
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the refused upgrade", applianceUnit)
	}
	for _, c := range systemctlCalls(e.r.events()) {
		if c.has(applianceUnit) && (c.Verb == "stop" || c.Verb == "restart") {
			e.t.Errorf("the refused upgrade touched the service: %s", c.Raw)
		}
	}
	if got := e.head(); got != old.Head {
		e.t.Errorf("schema at %s after the refused upgrade, want %s", got, old.Head)
	}
}
