package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What the packages ship, not only what the generator wrote, is POSIX sh
// that shellcheck finds nothing in.
func TestShippedScriptsAreShellcheckClean(t *testing.T) {
	v := variants(t)["new"]
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	extract := `set -e
mkdir deb-control deb-data rpm-scripts
dpkg-deb -e "$1" deb-control
dpkg-deb -x "$1" deb-data
rpm -qp --nosignature --qf '%{PREIN}' "$2" >rpm-scripts/pre
rpm -qp --nosignature --qf '%{POSTIN}' "$2" >rpm-scripts/post
rpm -qp --nosignature --qf '%{PREUN}' "$2" >rpm-scripts/preun
rpm -qp --nosignature --qf '%{POSTUN}' "$2" >rpm-scripts/postun
rpm -qp --nosignature --qf '%{POSTTRANS}' "$2" >rpm-scripts/posttrans
`
	cmd := exec.CommandContext(ctx, "sh", "-c", extract, "sh", v.HostDEB, v.HostRPM)
	cmd.Dir = dir
	cmd.Env = hostToolEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extracting the scripts: %v\n%s", err, out)
	}
	var scripts []string
	for _, pattern := range []string{"deb-control/*inst", "deb-control/*rm", "deb-data/usr/lib/openwatch/*.sh", "rpm-scripts/*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		scripts = append(scripts, m...)
	}
	for _, sc := range scripts {
		if b, _ := os.ReadFile(sc); len(strings.TrimSpace(string(b))) == 0 || strings.TrimSpace(string(b)) == "(none)" {
			t.Errorf("%s is empty in the package", strings.TrimPrefix(sc, dir+"/"))
		}
	}
	if len(scripts) < 10 {
		t.Fatalf("found only %d scripts in the packages: %v", len(scripts), scripts)
	}
	args := append([]string{"-s", "sh", "-f", "gcc"}, scripts...)
	sc := exec.CommandContext(ctx, "shellcheck", args...)
	sc.Env = hostToolEnv(t)
	out, err := sc.CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck -s sh on the shipped scripts: %v\n%s", err, strings.ReplaceAll(string(out), dir+"/", ""))
	}
}

// hostToolEnv is the environment for rpm, dpkg-deb and shellcheck run on
// this machine, with what they write for themselves (Debian's rpm creates
// ~/.rpmdb) moved into t's temporary directory.
func hostToolEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{"HOME=" + home, "TMPDIR=" + t.TempDir(),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"), "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"), "XDG_STATE_HOME=" + filepath.Join(home, ".local", "state")}
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "HOME", "TMPDIR", "TMP", "TEMP", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR":
		default:
			env = append(env, kv)
		}
	}
	return env
}
