package e2e

import (
	"context"
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
		{"lintian reports no errors for the .deb", []string{"lintian", "--no-tag-display-limit", "--display-info", v.HostDEB},
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
		})
	}
}
