package pkgbuild

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openwatch/openwatch/internal/gpgtest"
)

// signingKey is a key made by the real gpg for this test only.
func signingKey(t *testing.T) gpgtest.Key {
	t.Helper()
	k, err := gpgtest.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rpmK runs rpm -K (--checksig) on file against an rpm database holding the
// imported public key (empty: none), and returns its output and exit code.
func rpmK(t *testing.T, pubKey, file string) (string, int) {
	t.Helper()
	db := t.TempDir()
	env := hostEnv(t)
	if pubKey != "" {
		cmd := exec.Command("rpm", "--dbpath", db, "--import", pubKey)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("rpm --import: %v\n%s", err, out)
		}
	}
	cmd := exec.Command("rpm", "--dbpath", db, "-Kv", file)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// debSignatureCheck verifies the .deb's debsign signature (_gpgorigin over
// debian-binary, control and data, as debsig-verify reads it) with gpgv
// against a keyring holding only the public key.
func debSignatureCheck(t *testing.T, pubKey, deb string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring.gpg")
	cmd := exec.Command("sh", "-c", `gpg --dearmor <"$1" >"$2" &&
ar p "$3" _gpgorigin >"$4/sig" &&
ar p "$3" debian-binary control.tar.gz data.tar.gz | gpgv --keyring "$2" "$4/sig" -`, "sh", pubKey, keyring, deb, dir)
	cmd.Env = hostEnv(t, "GNUPGHOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// make packages SIGNING_KEY=FILE: every RPM carries header and payload
// signatures that rpm -K verifies with the public key imported (and not
// without it), and the .deb a debsign signature gpgv verifies.
func TestSigned(t *testing.T) {
	bin := filepath.Join(filepath.Dir(filepath.Dir(packages(t).RPM)), "openwatch")
	k := signingKey(t)
	res, err := Build(Options{
		Config: filepath.Join(repoRoot, "nfpm.yaml"), Version: "1.1.0", Release: "2",
		Binary: bin, OutDir: t.TempDir(), SigningKey: k.SecretFile, Passphrase: k.Passphrase,
	})
	if err != nil {
		t.Fatal(err)
	}
	keyID := strings.ToLower(k.Fingerprint[len(k.Fingerprint)-16:])
	for _, rpm := range res.RPMs {
		out, code := rpmK(t, k.PublicFile, rpm)
		if code != 0 || !strings.Contains(out, "Header V4 RSA/SHA256 Signature, key ID "+keyID[8:]+": OK") ||
			!strings.Contains(out, "V4 RSA/SHA256 Signature, key ID "+keyID[8:]+": OK") {
			t.Errorf("%s: rpm -K with the key imported: exit %d, want header and payload signatures OK by %s\n%s", filepath.Base(rpm), code, keyID, out)
		}
		if strings.Count(out, "Signature, key ID") < 2 {
			t.Errorf("%s: want a header and a header+payload signature:\n%s", filepath.Base(rpm), out)
		}
		if out, code := rpmK(t, "", rpm); code == 0 || !strings.Contains(out, "NOKEY") {
			t.Errorf("%s: rpm -K without the key: exit %d, want NOKEY and a failure\n%s", filepath.Base(rpm), code, out)
		}
	}
	if out, err := debSignatureCheck(t, k.PublicFile, res.DEB); err != nil || !strings.Contains(out, "Good signature") {
		t.Errorf("%s: the debsign signature does not verify: %v\n%s", filepath.Base(res.DEB), err, out)
	}

	// A changed byte in the signed payload fails rpm -K.
	b, err := os.ReadFile(res.RPM)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-100] ^= 0xff
	tampered := filepath.Join(t.TempDir(), filepath.Base(res.RPM))
	if err := os.WriteFile(tampered, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := rpmK(t, k.PublicFile, tampered); code == 0 {
		t.Errorf("rpm -K accepted an RPM with a changed payload byte:\n%s", out)
	}
}

// Without a key the packages carry no signature; a key that cannot be
// unlocked fails the build naming it, and writes no package.
func TestUnsignedAndBadKey(t *testing.T) {
	res := packages(t)
	if out, _ := rpmK(t, "", res.RPM); strings.Contains(out, "Signature") {
		t.Errorf("an RPM built without a key is signed:\n%s", out)
	}
	cmd := exec.Command("ar", "t", res.DEB)
	if out, err := cmd.Output(); err != nil || strings.Contains(string(out), "_gpg") {
		t.Errorf("a .deb built without a key: ar t = %v %s", err, out)
	}

	bin := filepath.Join(filepath.Dir(filepath.Dir(res.RPM)), "openwatch")
	k := signingKey(t)
	for name, pass := range map[string]string{"no passphrase": "", "a wrong passphrase": "wrong"} {
		out := t.TempDir()
		_, err := Build(Options{
			Config: filepath.Join(repoRoot, "nfpm.yaml"), Version: "1.1.0", Release: "2",
			Binary: bin, OutDir: out, SigningKey: k.SecretFile, Passphrase: pass,
		})
		if !errors.Is(err, ErrSigning) || !strings.Contains(err.Error(), k.SecretFile) {
			t.Errorf("%s: Build returned %v, want ErrSigning naming %s", name, err, k.SecretFile)
		}
		if left, _ := filepath.Glob(filepath.Join(out, "*")); len(left) != 0 {
			t.Errorf("%s: a failed signed build left %v", name, left)
		}
	}
}
