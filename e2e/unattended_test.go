package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Inside the machine: a local archive unattended-upgrades may upgrade from
// (origin "e2e"), its mail (a sendmail that keeps each message), and an
// unrelated package that gets a new version later.
const (
	uuRepo      = "/srv/e2e-repo"
	uuMailDir   = "/root/e2e-mail"
	uuUnrelated = "e2e-unrelated"
)

const uuConf = `// e2e: unattended-upgrades takes only the local archive, mails root.
#clear Unattended-Upgrade::Origins-Pattern;
#clear Unattended-Upgrade::Allowed-Origins;
Unattended-Upgrade::Origins-Pattern { "origin=e2e"; };
Unattended-Upgrade::Mail "root";
Unattended-Upgrade::MailReport "only-on-error";
Unattended-Upgrade::OnlyOnACPower "false";
Unattended-Upgrade::Skip-Updates-On-Metered-Connections "false";
`

// sendmail keeps every message unattended-upgrades sends.
const uuSendmail = `#!/bin/sh
mkdir -p ` + uuMailDir + `
cat >"` + uuMailDir + `/$(date +%s%N).eml"
`

// TestUnattendedUpgrades: the real unattended-upgrades upgrades the running
// appliance to a release whose migration fails. Its run fails and mails the
// failure, naming openwatch's failure and the one command, in plain lines;
// the unit is failed, the login message and the journal at priority err name
// it. A later run with nothing new takes nothing and changes nothing: the
// failure stays visible. A later run with an unrelated upgrade configures
// openwatch again: it takes no second restore point (the service stayed
// stopped), says it is the same failure and that openwatch, not the other
// package, failed; it is still visible. After the fix, the one command
// recovers and clears it.
func TestUnattendedUpgrades(t *testing.T) {
	t.Parallel()
	s := newSysCase(t)
	nw, failing := s.vs["new"], s.vs["failing"]
	s.install(nw, true)
	s.m.writeFile("/etc/apt/apt.conf.d/99e2e-unattended", uuConf, 0o644)
	s.m.writeFile("/usr/sbin/sendmail", uuSendmail, 0o755)
	s.m.writeFile("/etc/apt/sources.list.d/e2e.list", "deb [trusted=yes] file:"+uuRepo+" ./\n", 0o644)
	s.unrelatedDeb("1.0")
	s.mustPM("dpkg", "-i", uuRepo+"/"+uuUnrelated+"_1.0_all.deb")
	s.mustPM("cp", failing.DEB, uuRepo+"/")
	s.publishRepo()

	s.sql(appDB, "SET ROLE "+appDB+"; CREATE TABLE "+blockTable+" (why text)")
	since := now()
	res := s.unattended()
	if res.code == 0 {
		t.Errorf("unattended-upgrade exited 0 although openwatch failed to configure")
	}
	if got := s.dpkgStatus(); got != failing.FullVersion()+" iF" {
		t.Fatalf("dpkg status %q, want %q (half-configured)", got, failing.FullVersion()+" iF")
	}
	rps := s.restorePoints()
	if len(rps) != 1 {
		t.Fatalf("restore points after the failed unattended upgrade: %v, want one", rps)
	}
	retry := strings.Join(dpkgConfigureAll, " ")
	mails := s.mails()
	if len(mails) != 1 {
		t.Fatalf("unattended-upgrades sent %d mails for the failed run, want 1", len(mails))
	}
	for _, want := range []string{"FAILURE", "MIGRATION FAILED", "After fixing the cause, run: " + retry} {
		if !strings.Contains(mails[0], want) {
			t.Errorf("the failure mail does not say %q:\n%s", want, mails[0])
		}
	}
	if strings.ContainsAny(mails[0], "\x1b\r") || strings.Contains(mails[0], "[==") {
		t.Errorf("the failure mail holds escape codes or a progress bar:\n%q", mails[0])
	}
	s.assertFailureVisible(since, retry, "a migration failed and was rolled back", true)

	// Nothing new: unattended-upgrades has nothing to do; the failure stays
	// where the operator and monitoring look.
	res = s.unattended()
	t.Logf("unattended-upgrade with nothing new: exit %d", res.code)
	if got := s.restorePoints(); !slices.Equal(got, rps) {
		t.Errorf("a run with nothing new changed the restore points: %v, want %v", got, rps)
	}
	s.assertFailureVisible(since, retry, "a migration failed and was rolled back", true)

	// An unrelated upgrade: apt configures openwatch again.
	s.unrelatedDeb("1.1")
	s.publishRepo()
	res = s.unattended()
	if got := strings.TrimSpace(s.m.run(30*time.Second, "dpkg-query", "-W", "-f", "${Version}", uuUnrelated).out); got != "1.1" {
		t.Errorf("%s is at %q after the run, want 1.1 (the unrelated upgrade)", uuUnrelated, got)
	}
	if got := s.restorePoints(); !slices.Equal(got, rps) {
		t.Errorf("the run with an unrelated upgrade took another restore point: %v, want only %v", got, rps)
	}
	dpkgLog := s.m.run(time.Minute, "cat", "/var/log/unattended-upgrades/unattended-upgrades-dpkg.log").out
	for _, want := range []string{"taken by the earlier attempt of this upgrade; no new one is taken", "this is the same failure as the earlier attempt's",
		"openwatch failed to configure (a migration failed and was rolled back); the packages upgraded with it are not the cause."} {
		if !strings.Contains(dpkgLog, want) {
			t.Errorf("unattended-upgrades' dpkg log does not say %q:\n%s", want, dpkgLog)
		}
	}
	if mails := s.mails(); len(mails) != 2 {
		t.Errorf("unattended-upgrades sent %d mails in all, want 2 (the failed run and the one with the unrelated upgrade)", len(mails))
	} else {
		last := mails[1]
		if !strings.Contains(last, "this is the same failure") || !strings.Contains(last, "After fixing the cause, run: "+retry) {
			t.Errorf("the mail of the run with an unrelated upgrade does not name openwatch's same failure and %q:\n%s", retry, last)
		}
	}
	s.assertFailureVisible(since, retry, "a migration failed and was rolled back", true)

	s.sql(appDB, "DROP TABLE "+blockTable)
	rows := s.maxID()
	s.mustPM(dpkgConfigureAll...)
	s.assertRunningOnNewSchema(since, rows, append(slices.Clone(repoMigrations), failing.Head))
	s.assertFailureCleared()
}

// unattended runs unattended-upgrade as the apt-daily-upgrade service does.
func (s *sysCase) unattended() result {
	s.t.Helper()
	return s.pm("unattended-upgrade")
}

// unrelatedDeb builds the unrelated package at version in the archive.
func (s *sysCase) unrelatedDeb(version string) {
	s.t.Helper()
	dir := "/root/e2e-build-" + version
	s.m.writeFile(dir+"/DEBIAN/control", fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: e2e <e2e@example.invalid>\nDescription: unrelated package for the e2e tests\n", uuUnrelated, version), 0o644)
	s.m.writeFile(dir+"/usr/share/doc/"+uuUnrelated+"/version", version+"\n", 0o644)
	s.mustPM("mkdir", "-p", uuRepo)
	s.mustPM("dpkg-deb", "--build", "--root-owner-group", dir, fmt.Sprintf("%s/%s_%s_all.deb", uuRepo, uuUnrelated, version))
}

// publishRepo writes the archive's index and Release (origin e2e) and
// reads it into apt's lists, this archive only (the machine has no network).
func (s *sysCase) publishRepo() {
	s.t.Helper()
	script := `set -e
cd ` + uuRepo + `
dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null
{
	echo "Origin: e2e"
	echo "Label: e2e"
	echo "Suite: e2e"
	echo "Codename: e2e"
	echo "Date: $(date -u -R)"
	echo "Architectures: amd64 all"
	echo "SHA256:"
	printf ' %s %s Packages\n' "$(sha256sum Packages | cut -d' ' -f1)" "$(wc -c <Packages)"
} >Release
apt-get update -q -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/e2e.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
`
	s.mustPM("sh", "-c", script)
}

// mails are the messages unattended-upgrades sent, oldest first.
func (s *sysCase) mails() []string {
	files, _ := filepath.Glob(s.m.path(uuMailDir + "/*.eml"))
	slices.Sort(files)
	var out []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		out = append(out, string(b))
	}
	return out
}
