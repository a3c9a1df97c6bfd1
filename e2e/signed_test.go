package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goreleaser/nfpm/v2"

	"github.com/openwatch/openwatch/gen"
	"github.com/openwatch/openwatch/internal/gpgtest"
	"github.com/openwatch/openwatch/internal/pkgbuild"
	"github.com/openwatch/openwatch/internal/repo"
)

// The way operators install: from a vendor's signed repositories, with the
// signature checks on (dnf gpgcheck=1 and repo_gpgcheck=1 with the key from
// gpgkey=; apt with signed-by=), built by make packages SIGNING_KEY= and
// make repo's code from a key generated for this run.

// signedRepoDir is where a root finds the repository tree (a copy, so that
// a case may tamper with it).
const signedRepoDir = "/srv/openwatch-repo"

type signedSet struct {
	key gpgtest.Key
	// repo is the host path of the signed repositories of the old and new
	// signed packages; unsignedRPMs a signed dnf repository whose RPMs are
	// not signed. Both under pkgDir, so /e2e-pkgs/… inside a root.
	repo, unsignedRPMs string
}

var (
	signedOnce sync.Once
	signed     *signedSet
	signedErr  error
)

// signedRepos builds, once, signed packages of the old and new variants, a
// signed stand-in for the system RPMs, and the signed repositories.
func signedRepos(t *testing.T) *signedSet {
	t.Helper()
	vs := variants(t)
	signedOnce.Do(func() {
		start := time.Now()
		signed, signedErr = buildSigned(vs)
		fmt.Fprintf(os.Stderr, "e2e: built the signed packages and repositories in %v\n", time.Since(start).Round(time.Second))
	})
	if signedErr != nil {
		t.Fatalf("building the signed repositories: %v", signedErr)
	}
	return signed
}

func buildSigned(vs map[string]*variant) (*signedSet, error) {
	dir := filepath.Join(pkgDir, "signed")
	k, err := gpgtest.Generate(dir)
	if err != nil {
		return nil, err
	}
	s := &signedSet{key: k, repo: filepath.Join(dir, "repo"), unsignedRPMs: filepath.Join(dir, "repo-unsigned-rpms")}
	targets, err := hostRPMTargets()
	if err != nil {
		return nil, err
	}
	system, err := signedSystemRPM(dir, k)
	if err != nil {
		return nil, err
	}
	rpms, debs := []string{system}, []string{}
	for _, name := range []string{"old", "new"} {
		v := vs[name]
		res, err := pkgbuild.Build(pkgbuild.Options{
			Config: filepath.Join(srcRoot, "nfpm.yaml"), Version: v.Version, Release: v.Release,
			Binary: v.Binary, OutDir: filepath.Join(dir, name), RPMTargets: targets,
			SigningKey: k.SecretFile, Passphrase: k.Passphrase,
		})
		if err != nil {
			return nil, err
		}
		rpms, debs = append(rpms, res.RPM), append(debs, res.DEB)
	}
	if _, err := repo.Build(repo.Options{OutDir: s.repo, SigningKey: k.SecretFile, Passphrase: k.Passphrase,
		RPMRepos: []repo.RPMRepo{{Name: "e2e", RPMs: rpms}}, DEBs: debs}); err != nil {
		return nil, err
	}
	// The same, but with the unsigned RPMs every other test installs.
	if _, err := repo.Build(repo.Options{OutDir: s.unsignedRPMs, SigningKey: k.SecretFile, Passphrase: k.Passphrase,
		RPMRepos: []repo.RPMRepo{{Name: "e2e", RPMs: []string{system, vs["old"].HostRPM}}}}); err != nil {
		return nil, err
	}
	return s, nil
}

// signedSystemRPM is systemRPM's stand-in for the system packages, signed:
// with gpgcheck=1 dnf checks every package it installs.
func signedSystemRPM(dir string, k gpgtest.Key) (string, error) {
	info := nfpm.WithDefaults(&nfpm.Info{
		Name: "e2e-system", Arch: "noarch", Platform: "linux", Version: "1", Release: "1",
		Maintainer: "e2e", Description: "stands in for the system packages dnf cannot see here",
		Overridables: nfpm.Overridables{Provides: append([]string{}, gen.Default().RPMRequires...),
			RPM: nfpm.RPM{Signature: nfpm.RPMSignature{PackageSignature: nfpm.PackageSignature{KeyFile: k.SecretFile, KeyPassphrase: k.Passphrase}}}},
	})
	p, err := nfpm.Get("rpm")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, p.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := p.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// inRoot is the host path hostPath (under pkgDir) as a root sees it.
func inRoot(hostPath string) string {
	return "/e2e-pkgs/" + strings.TrimPrefix(hostPath, pkgDir+"/")
}

// signedDNF copies the repository tree into the root and returns the dnf
// command line that uses it alone, with every signature check on, as the
// .repo file of docs/UPGRADING.md says.
func (e *env) signedDNF(tree string) []string {
	e.t.Helper()
	e.mustRoot(`rm -rf "$2" && cp -a "$1" "$2"`, inRoot(tree), signedRepoDir)
	// repo_gpgcheck makes dnf (librepo's gpgme) start a gpg-agent for the
	// repository's keyring, which outlives dnf: end it with the root.
	e.t.Cleanup(func() {
		e.r.run(time.Minute, "sh", "-c", `for d in /var/cache/e2e-dnf/*/pubring; do [ -d "$d" ] && gpgconf --homedir "$d" --kill gpg-agent; done; true`)
	})
	e.r.writeFile("/srv/e2e/dnf.conf", `[main]
gpgcheck=1
repo_gpgcheck=1
localpkg_gpgcheck=1
reposdir=/srv/e2e/none
cachedir=/var/cache/e2e-dnf
install_weak_deps=0

[openwatch]
name=openwatch
baseurl=file://`+signedRepoDir+`/rpm/e2e
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=file://`+signedRepoDir+`/openwatch.asc
metadata_expire=0
`, 0o644)
	return []string{"dnf", "-y", "-c", "/srv/e2e/dnf.conf", "--releasever=e2e"}
}

// signedApt copies the repository tree into the root, installs the key in
// /etc/apt/keyrings and the sources line of docs/UPGRADING.md, and returns
// the apt-get command line.
func (e *env) signedApt(tree string) []string {
	e.t.Helper()
	e.mustRoot(`rm -rf "$2" && cp -a "$1" "$2" && install -d -m 0755 /etc/apt/keyrings &&
install -m 0644 "$2/openwatch.asc" /etc/apt/keyrings/openwatch.asc && mkdir -p /srv/e2e/sources.list.d`, inRoot(tree), signedRepoDir)
	e.r.writeFile("/etc/apt/apt.conf.d/00e2e-local-repository", `Dir::Etc::SourceList "/srv/e2e/sources.list";
Dir::Etc::SourceParts "/srv/e2e/sources.list.d";
Acquire::Languages "none";
APT::Install-Recommends "false";
`, 0o644)
	e.r.writeFile("/srv/e2e/sources.list", "deb [signed-by=/etc/apt/keyrings/openwatch.asc] file:"+signedRepoDir+"/deb stable main\n", 0o644)
	return []string{"apt-get", "-y", "-q"}
}

func TestSignedRepositories(t *testing.T) {
	t.Run("dnf with gpgcheck and repo_gpgcheck installs and upgrades from the signed repository", func(t *testing.T) {
		t.Parallel()
		s := signedRepos(t)
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		dnf := e.signedDNF(s.repo)
		res := e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		if fpr := s.key.Fingerprint; !strings.Contains(strings.ReplaceAll(res.out, " ", ""), fpr[len(fpr)-16:]) && !strings.Contains(res.out, "Importing GPG key") {
			t.Errorf("dnf did not import the key from gpgkey=:\n%s", res.out)
		}
		e.initialise(old)
		res = e.pm(append(dnf, "upgrade", "openwatch")...)
		if res.code != 0 {
			t.Fatalf("dnf upgrade from the signed repository: exit %d\n%s", res.code, res.out)
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

	t.Run("dnf refuses an altered repomd.xml, and an unsigned package in a signed repository", func(t *testing.T) {
		t.Parallel()
		s := signedRepos(t)
		e := newEnv(t, formatNamed(t, "rpm"), "dash")
		old := e.vs["old"]
		dnf := e.signedDNF(s.repo)
		// One byte of the index changed after it was signed.
		e.mustRoot(`sed -i 's|<revision>|<revision>1|' "$1/rpm/e2e/repodata/repomd.xml"`, signedRepoDir)
		res := e.operator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		if res.code == 0 || !strings.Contains(strings.ToLower(res.out), "signature") {
			t.Errorf("dnf with an altered repomd.xml: exit %d, want a refusal naming the signature\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); strings.Contains(got, old.FullVersion()) {
			t.Errorf("installed %q from an altered repository", got)
		}

		dnf = e.signedDNF(s.unsignedRPMs)
		res = e.operator(append(dnf, "install", "e2e-system", "openwatch-"+old.FullVersion())...)
		if res.code == 0 || !strings.Contains(res.out, "is not signed") {
			t.Errorf("dnf with an unsigned package: exit %d, want it refused as not signed\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); strings.Contains(got, old.FullVersion()) {
			t.Errorf("installed %q, an unsigned package", got)
		}
	})

	t.Run("apt with signed-by installs and upgrades from the signed repository", func(t *testing.T) {
		t.Parallel()
		s := signedRepos(t)
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old, next := e.vs["old"], e.vs["new"]
		apt := e.signedApt(s.repo)
		res := e.mustOperator(append(apt, "update")...)
		if strings.Contains(res.out, "W:") || strings.Contains(res.out, "NO_PUBKEY") {
			t.Errorf("apt-get update warned about the signed repository:\n%s", res.out)
		}
		e.mustOperator(append(apt, "install", "openwatch="+old.FullVersion())...)
		e.initialise(old)
		res = e.pm(append(apt, "upgrade")...)
		if res.code != 0 {
			t.Fatalf("apt-get upgrade from the signed repository: exit %d\n%s", res.code, res.out)
		}
		if got := e.installedVersion(); got != next.FullVersion()+" ii" {
			t.Errorf("installed %q, want %s ii", got, next.FullVersion())
		}
		if got := e.head(); got != next.Head {
			t.Errorf("schema at %s, want %s", got, next.Head)
		}
	})

	t.Run("apt refuses an altered InRelease, and a Packages index that does not match it", func(t *testing.T) {
		t.Parallel()
		s := signedRepos(t)
		e := newEnv(t, formatNamed(t, "deb"), "dash")
		old := e.vs["old"]
		apt := e.signedApt(s.repo)
		e.mustRoot(`cd "$1/deb/dists/stable" && sed -i 's|^Origin: openwatch$|Origin: openwatcx|' InRelease && rm Release Release.gpg`, signedRepoDir)
		res := e.operator(append(apt, "update")...)
		if res.code == 0 || !strings.Contains(res.out, "signatures were invalid") {
			t.Errorf("apt-get update with an altered InRelease: exit %d, want the invalid signature refused\n%s", res.code, res.out)
		}
		if res := e.operator(append(apt, "install", "openwatch="+old.FullVersion())...); res.code == 0 {
			t.Errorf("apt-get installed from a repository whose InRelease was altered:\n%s", res.out)
		}

		apt = e.signedApt(s.repo)
		e.mustRoot(`cd "$1/deb/dists/stable/main/binary-amd64" && sed -i 's|^Maintainer: .*|Maintainer: someone else|' Packages && gzip -9nc Packages >Packages.gz`, signedRepoDir)
		res = e.operator(append(apt, "update")...)
		if res.code == 0 || !strings.Contains(res.out, "Hash Sum mismatch") && !strings.Contains(res.out, "unexpected size") {
			t.Errorf("apt-get update with an altered Packages: exit %d, want a mismatch against the signed Release\n%s", res.code, res.out)
		}
		if res := e.operator(append(apt, "install", "openwatch="+old.FullVersion())...); res.code == 0 {
			t.Errorf("apt-get installed from an altered Packages index:\n%s", res.out)
		}
	})
}
