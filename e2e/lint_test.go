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
`
	cmd := exec.CommandContext(ctx, "sh", "-c", extract, "sh", v.HostDEB, v.HostRPM)
	cmd.Dir = dir
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
	out, err := exec.CommandContext(ctx, "shellcheck", args...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck -s sh on the shipped scripts: %v\n%s", err, strings.ReplaceAll(string(out), dir+"/", ""))
	}
}
