package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The stand-ins must behave like the real tools where the scriptlets can
// tell, or the other tests prove nothing.
func TestHarness(t *testing.T) {
	for _, shell := range []string{"dash", "busybox"} {
		t.Run("the disposable root under "+shell+" keeps the host untouched and its systemctl answers from what it was told", func(t *testing.T) {
			r := newRoot(t, shell)
			if _, err := os.Stat("/e2e-pkgs"); err == nil {
				t.Fatal("/e2e-pkgs leaked to the host")
			}
			if !r.exists("/run/systemd/system") {
				t.Fatal("/run/systemd/system missing in the root")
			}
			if !r.active(applianceUnit) || !r.enabled(applianceUnit) {
				t.Fatalf("the appliance unit should start enabled and active")
			}
			script := `set -e
systemctl --quiet is-active openwatch.service
deb-systemd-invoke stop openwatch.service
if systemctl is-active --quiet openwatch; then exit 11; fi
deb-systemd-invoke start openwatch.service
systemctl --quiet is-active -- openwatch.service
systemctl try-restart nosuch.service
if systemctl start nosuch.service 2>/dev/null; then exit 12; fi
systemctl disable openwatch.service
[ "$(systemctl is-enabled openwatch.service)" = disabled ]
systemctl stop openwatch.service
deb-systemd-invoke start openwatch.service 2>/dev/null
if systemctl is-active --quiet openwatch.service; then exit 13; fi
systemctl --system --now enable openwatch.service
systemctl is-active --quiet openwatch.service
`
			if res := r.run(time.Minute, "sh", "-c", script); res.code != 0 {
				t.Fatalf("stub script failed with %d:\n%s\nevents:\n%s", res.code, res.out, r.events())
			}
			calls := systemctlCalls(r.events())
			var verbs []string
			for _, c := range calls {
				verbs = append(verbs, c.Verb)
			}
			if got := strings.Join(verbs, " "); !strings.HasPrefix(got, "is-active stop is-active is-enabled is-active start is-active try-restart start") {
				t.Errorf("recorded verbs: %s", got)
			}
			if res := r.run(time.Minute, "sh", "-c", "pg_dump --version && psql --version && pg_restore --version"); res.code != 0 {
				t.Fatalf("pg shims: %s", res.out)
			}
			if ev := r.events(); !strings.Contains(ev, "pg_dump --version\npg_dump-env ") || !strings.Contains(ev, "psql --version") {
				t.Errorf("pg shims did not record: %s", ev)
			}
		})
	}
}
