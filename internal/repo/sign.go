package repo

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// signer is gpg with the release key imported into a GNUPGHOME of its own,
// so the packager's keyring is neither read nor changed.
type signer struct {
	home, fpr, passphrase string
	created, at           time.Time
}

func newSigner(keyFile, passphrase string) (*signer, error) {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	// Short: gpg-agent's socket path must fit in 108 bytes.
	home, err := os.MkdirTemp("", "openwatch-repo-gnupg-")
	if err != nil {
		return nil, err
	}
	g := &signer{home: home, passphrase: passphrase}
	if _, err := g.gpgIn(key, "--import"); err != nil {
		g.close()
		return nil, fmt.Errorf("%w %s: %w", ErrKey, keyFile, err)
	}
	out, err := g.gpg("", "--with-colons", "--fixed-list-mode", "--list-secret-keys")
	if err != nil {
		g.close()
		return nil, err
	}
	var n int
	var created int64
	inSec := false
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Split(l, ":")
		switch {
		case f[0] == "sec" && len(f) > 11:
			inSec = strings.Contains(f[11], "s") || strings.Contains(f[11], "S")
			if inSec {
				n++
				created, _ = strconv.ParseInt(f[5], 10, 64)
			}
		case f[0] == "fpr" && inSec && len(f) > 9:
			g.fpr, inSec = f[9], false
		}
	}
	if n != 1 || g.fpr == "" {
		g.close()
		return nil, fmt.Errorf("%w %s: it holds %d secret keys that can sign; want exactly one", ErrKey, keyFile, n)
	}
	g.created = time.Unix(created, 0)
	return g, nil
}

// sign signs in into out at g.at; extra are gpg's mode options.
func (g *signer) sign(in, out string, mode ...string) error {
	args := []string{"--pinentry-mode", "loopback", "--passphrase-fd", "0", "--yes",
		"--faked-system-time", strconv.FormatInt(g.at.Unix(), 10) + "!", "--ignore-time-conflict",
		"--local-user", g.fpr, "--digest-algo", "SHA512", "--output", out}
	args = append(append(args, mode...), in)
	if _, err := g.gpg(g.passphrase, args...); err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	return nil
}

func (g *signer) gpg(stdin string, args ...string) ([]byte, error) {
	return g.gpgIn([]byte(stdin), args...)
}

// gpgIn runs gpg with stdin: the passphrase goes there (--passphrase-fd 0),
// never on argv.
func (g *signer) gpgIn(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--quiet", "--no-auto-check-trustdb"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("gpg %s: %v: %s", args[len(args)-1], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (g *signer) close() {
	cmd := exec.Command("gpgconf", "--kill", "all")
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	_ = cmd.Run()
	os.RemoveAll(g.home)
}
