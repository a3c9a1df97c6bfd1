package gen

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// The cleanup unit prunes restore points as root: its sandbox must keep
// `systemd-analyze security` at "OK" or better, now that it reaches
// PostgreSQL (no PrivateNetwork=, AF_INET/AF_INET6 allowed).
func TestTheCleanupUnitsExposureIsOKOrBetter(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	src := filepath.Join("..", "dist", "systemd", "openwatch-backup-cleanup.service")
	body, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "openwatch-backup-cleanup.service")
	if err := os.WriteFile(unit, body, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	switch string(m[2]) {
	case "OK", "SAFE", "PERFECT":
		t.Logf("exposure %s %s", m[1], m[2])
	default:
		t.Errorf("exposure %s %s, want OK or better:\n%s", m[1], m[2], out)
	}
}
