package repo

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	_ "github.com/goreleaser/nfpm/v2/rpm"

	"github.com/openwatch/openwatch/internal/gpgtest"
)

// pkg builds a small package with nfpm (the same library make packages
// uses), built at mtime.
func pkg(t *testing.T, dir, format, release string, mtime time.Time) string {
	t.Helper()
	info := nfpm.WithDefaults(&nfpm.Info{
		Name: "openwatch", Arch: "amd64", Platform: "linux", Version: "1.1.0", Release: release,
		Maintainer: "test <test@openwatch.invalid>", Description: "repository test package", MTime: mtime,
	})
	p, err := nfpm.Get(format)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, p.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Package(info, f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// tree maps every file under root (relative) to its bytes and mode.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			m[rel+"/"] = fi.Mode().String() + " " + fi.ModTime().UTC().String()
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = fi.Mode().String() + " " + fi.ModTime().UTC().String() + "\n" + string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func verify(t *testing.T, pubKey, sig, data string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"--keyring", filepath.Join(dir, "k.gpg"), sig}
	if data != "" {
		args = append(args, data)
	}
	cmd := exec.Command("sh", append([]string{"-c", `gpg --dearmor <"$1" >"$2/k.gpg" && shift 2 && gpgv "$@"`, "sh", pubKey, dir}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Good signature") {
		t.Errorf("gpgv %s: %v\n%s", filepath.Base(sig), err, out)
	}
}

func TestBuild(t *testing.T) {
	k, err := gpgtest.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := t.TempDir()
	built := time.Now().Add(-time.Hour).Truncate(time.Second)
	el8 := pkg(t, in, "rpm", "1.el8", built)
	el9 := pkg(t, in, "rpm", "1.el9", built)
	deb := pkg(t, in, "deb", "1", built)
	opts := func(out string) Options {
		return Options{OutDir: out, SigningKey: k.SecretFile, Passphrase: k.Passphrase,
			RPMRepos: []RPMRepo{{"el8", []string{el8}}, {"el9", []string{el9}}}, DEBs: []string{deb}}
	}
	out := filepath.Join(t.TempDir(), "repo")
	res, err := Build(opts(out))
	if err != nil {
		t.Fatal(err)
	}
	if res.Fingerprint != k.Fingerprint {
		t.Errorf("signed with %s, want %s", res.Fingerprint, k.Fingerprint)
	}
	// The key is newer than the packages: the signatures are made at the
	// key's creation, which gpgv accepts.
	if res.Epoch.Before(built) {
		t.Errorf("epoch %s before the packages' build time %s", res.Epoch, built)
	}
	for _, f := range []string{"openwatch.asc", "rpm/el8/" + filepath.Base(el8), "rpm/el9/" + filepath.Base(el9),
		"rpm/el9/repodata/repomd.xml", "rpm/el9/repodata/repomd.xml.asc",
		"deb/pool/main/o/openwatch/" + filepath.Base(deb), "deb/dists/stable/Release", "deb/dists/stable/Release.gpg",
		"deb/dists/stable/InRelease", "deb/dists/stable/main/binary-amd64/Packages", "deb/dists/stable/main/binary-amd64/Packages.gz"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	if got, _ := filepath.Glob(filepath.Join(out, "rpm/el8/*.rpm")); len(got) != 1 {
		t.Errorf("el8 holds %v, want only its own RPM", got)
	}
	pub := filepath.Join(out, "openwatch.asc")
	verify(t, pub, filepath.Join(out, "rpm/el9/repodata/repomd.xml.asc"), filepath.Join(out, "rpm/el9/repodata/repomd.xml"))
	verify(t, pub, filepath.Join(out, "deb/dists/stable/Release.gpg"), filepath.Join(out, "deb/dists/stable/Release"))
	verify(t, pub, filepath.Join(out, "deb/dists/stable/InRelease"), "")
	rel, _ := os.ReadFile(filepath.Join(out, "deb/dists/stable/Release"))
	for _, want := range []string{"Origin: openwatch\n", "Suite: stable\n", "Codename: stable\n", "Components: main\n",
		"Architectures: amd64\n", "main/binary-amd64/Packages.gz\n", "Date: " + res.Epoch.Format(time.RFC1123Z)[:5]} {
		if !strings.Contains(string(rel), want) {
			t.Errorf("Release lacks %q:\n%s", want, rel)
		}
	}
	pk, _ := os.ReadFile(filepath.Join(out, "deb/dists/stable/main/binary-amd64/Packages"))
	if !strings.Contains(string(pk), "Filename: pool/main/o/openwatch/"+filepath.Base(deb)+"\n") {
		t.Errorf("Packages:\n%s", pk)
	}

	// Built again, elsewhere and later, from the same packages: the same bytes.
	time.Sleep(1100 * time.Millisecond)
	again := filepath.Join(t.TempDir(), "repo")
	if _, err := Build(opts(again)); err != nil {
		t.Fatal(err)
	}
	a, b := tree(t, out), tree(t, again)
	for name, v := range a {
		if b[name] != v {
			t.Errorf("%s differs between two builds from the same packages", name)
		}
	}
	if len(a) != len(b) {
		t.Errorf("two builds hold %d and %d files", len(a), len(b))
	}

	// Rebuilding in place replaces the tree.
	if _, err := Build(opts(out)); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".repo-*")); len(left) != 0 {
		t.Errorf("left %v", left)
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	deb := pkg(t, dir, "deb", "1", time.Now())
	if _, err := Build(Options{OutDir: filepath.Join(dir, "repo"), DEBs: []string{deb}}); !errors.Is(err, ErrNoKey) {
		t.Errorf("without a key: %v, want ErrNoKey", err)
	}
	k, err := gpgtest.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(Options{OutDir: filepath.Join(dir, "repo"), DEBs: []string{deb}, SigningKey: k.SecretFile, Passphrase: "wrong"})
	if !errors.Is(err, ErrKey) {
		t.Errorf("with a wrong passphrase: %v, want ErrKey", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "repo")); !os.IsNotExist(err) {
		t.Errorf("a failed build left the repository: %v", err)
	}
	if _, err := Build(Options{OutDir: filepath.Join(dir, "repo"), DEBs: []string{k.PublicFile}, SigningKey: k.PublicFile}); !errors.Is(err, ErrKey) {
		t.Errorf("with a public key as the signing key: %v, want ErrKey", err)
	}
}
