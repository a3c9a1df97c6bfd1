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

// The ecosystems' own linters find no errors in the packages; warnings are
// logged for the packager to fix or override with a reason.
func TestLint(t *testing.T) {
	v := variants(t)["new"]
	// Overrides: lintian reads the ones the .deb ships; rpmlint takes the
	// packager's filter files from dist/ when there are any.
	rpmlint := []string{"rpmlint"}
	rcs, _ := filepath.Glob(filepath.Join(srcRoot, "dist", "*rpmlintrc"))
	for _, rc := range rcs {
		rpmlint = append(rpmlint, "-r", rc)
	}
	tomls, _ := filepath.Glob(filepath.Join(srcRoot, "dist", "*rpmlint*.toml"))
	for _, c := range tomls {
		rpmlint = append(rpmlint, "-c", c)
	}
	for _, l := range []struct {
		name string
		argv []string
		err  func(line string) bool
		warn func(line string) bool
	}{
		{"lintian reports no errors for the .deb", []string{"lintian", "--tag-display-limit", "0", "--display-info", v.HostDEB},
			hasPrefix("E: "), hasPrefix("W: ")},
		{"rpmlint reports no errors for the .rpm", append(rpmlint, v.HostRPM),
			func(s string) bool { return strings.Contains(s, ": E: ") }, func(s string) bool { return strings.Contains(s, ": W: ") }},
	} {
		t.Run(l.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, l.argv[0], l.argv[1:]...).CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("%s timed out", l.argv[0])
			}
			var errs, warns []string
			for _, line := range lines(string(out)) {
				switch {
				case l.err(line):
					errs = append(errs, line)
				case l.warn(line):
					warns = append(warns, line)
				}
			}
			if len(warns) > 0 {
				t.Logf("%d warnings left for the packager:\n%s", len(warns), strings.Join(warns, "\n"))
			}
			if len(errs) > 0 {
				t.Errorf("%d errors:\n%s", len(errs), strings.Join(errs, "\n"))
			}
			if err != nil && len(errs) == 0 {
				t.Errorf("%s failed: %v\n%s", l.argv[0], err, out)
			}
			if l.argv[0] == "lintian" {
				// What the package overrides, for the reviewer (lintian exits
				// non-zero when it shows overridden errors, so a second run).
				out, _ := exec.CommandContext(ctx, "lintian", "--tag-display-limit", "0", "--show-overrides", v.HostDEB).CombinedOutput()
				var overridden []string
				for _, line := range lines(string(out)) {
					if strings.HasPrefix(line, "O: ") {
						overridden = append(overridden, line)
					}
				}
				t.Logf("%d tags overridden by the package's lintian overrides:\n%s", len(overridden), strings.Join(overridden, "\n"))
			}
		})
	}
}

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
