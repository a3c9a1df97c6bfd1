// Package gpgtest makes a throwaway OpenPGP signing key for tests with the
// real gpg, in a GNUPGHOME of its own, as a packager would make a release
// key: nothing is committed, every run gets a new key.
package gpgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Key is a generated signing key.
type Key struct {
	home        string // its GNUPGHOME, removed once the key is exported
	SecretFile  string // the secret key, armored, encrypted with Passphrase
	PublicFile  string // the public key, armored
	Fingerprint string
	Passphrase  string
}

// Generate makes an RSA 3072 signing key (what rpm on EL 8 verifies as well
// as EL 10) protected by a passphrase, and exports it into dir. Nothing is
// left running: its gpg-agent is ended and its GNUPGHOME removed.
func Generate(dir string) (Key, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Key{}, err
	}
	// A short GNUPGHOME of its own: gpg-agent's socket path must fit in
	// 108 bytes, which a test's temporary directory may not.
	home, err := os.MkdirTemp("", "gnupg-")
	if err != nil {
		return Key{}, err
	}
	k := Key{home: home, Passphrase: "test passphrase $ \" '"}
	defer k.stop()
	// The passphrase goes on stdin (--passphrase-fd 0), never on argv.
	if _, err = k.gpg(k.Passphrase, "--pinentry-mode", "loopback", "--passphrase-fd", "0",
		"--quick-gen-key", "openwatch test release <release@openwatch.invalid>", "rsa3072", "sign", "never"); err != nil {
		return k, err
	}
	out, err := k.gpg("", "--with-colons", "--list-secret-keys")
	if err != nil {
		return k, err
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Split(l, ":"); f[0] == "fpr" && len(f) > 9 {
			k.Fingerprint = f[9]
			break
		}
	}
	if k.Fingerprint == "" {
		return k, fmt.Errorf("gpg listed no fingerprint:\n%s", out)
	}
	sec, err := k.gpg(k.Passphrase, "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--armor", "--export-secret-keys", k.Fingerprint)
	if err != nil {
		return k, err
	}
	pub, err := k.gpg("", "--armor", "--export", k.Fingerprint)
	if err != nil {
		return k, err
	}
	k.SecretFile = filepath.Join(dir, "signing-key.asc")
	k.PublicFile = filepath.Join(dir, "public-key.asc")
	if err := os.WriteFile(k.SecretFile, []byte(sec), 0o600); err != nil {
		return k, err
	}
	return k, os.WriteFile(k.PublicFile, []byte(pub), 0o644)
}

// stop ends the key's gpg-agent and removes its GNUPGHOME.
func (k Key) stop() {
	cmd := exec.Command("gpgconf", "--kill", "all")
	cmd.Env = append(os.Environ(), "GNUPGHOME="+k.home)
	_ = cmd.Run()
	os.RemoveAll(k.home)
}

func (k Key) gpg(stdin string, args ...string) (string, error) {
	cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--quiet"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+k.home)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}
