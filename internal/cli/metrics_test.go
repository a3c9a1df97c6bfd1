package cli

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/metrics"
)

// promtoolCheck runs `promtool check metrics` on the file.
func promtoolCheck(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics %s: %v\n%s", file, err, out)
	}
}

// The daily cleanup (backup --prune) writes METRICS_DIR/openwatch.prom from
// the journal, the real database's schema state and the restore points; a
// later outcome in the journal changes it; promtool accepts it; it holds
// nothing of the DSN.
func TestPruneWritesTheUpgradeStateForMonitoring(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "upgrade.state")
	metricsDir := filepath.Join(dir, "node-exporter")
	if err := os.Mkdir(metricsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.mustRun(0, "migrate")
	e.mustRun(0, "backup")
	e.downgradeOneStep() // one migration pending
	updated := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	writeJournal := func(body string) {
		t.Helper()
		if err := os.WriteFile(journal, []byte(body+"UPDATED="+updated.Format(time.RFC3339)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeJournal("OUTCOME=migration-failed\nPHASE=migrate\nSERVICE_BEFORE=running\nSTOPPED_AT=12345\nSERVICE_STOPPED=yes\n" +
		"RECOVERY='dpkg --configure -a'\nMESSAGE='the migration 20260101000003 failed and was rolled back'\n")
	conf := "BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\nMETRICS_DIR=" + metricsDir + "\n"
	e.writeConf(conf)

	r := e.mustRun(0, "--journal", journal, "backup", "--prune")
	prom := filepath.Join(metricsDir, metrics.FileName)
	b, err := os.ReadFile(prom)
	if err != nil {
		t.Fatalf("backup --prune with METRICS_DIR set wrote no %s: %v\n%s", metrics.FileName, err, r)
	}
	got := string(b)
	for _, want := range []string{
		`openwatch_upgrade_last_info{outcome="migration-failed",phase="migrate"} 1`,
		"openwatch_upgrade_last_timestamp_seconds " + strconv.FormatInt(updated.Unix(), 10),
		"openwatch_upgrade_failed 1\n", "openwatch_service_left_stopped 1\n",
		"openwatch_database_reachable 1\n", "openwatch_migrations_pending 1\n",
		`openwatch_schema_info{version="20260101000002"} 1`,
		`openwatch_build_info{version="` + pkgVersion + `",schema_head="` + head + `"} 1`,
		`openwatch_restore_points{kind="file"} 1`, `openwatch_restore_point_newest_size_bytes{kind="file"} `,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%s lacks %q:\n%s", metrics.FileName, want, got)
		}
	}
	for _, secret := range []string{e.db.Password, url.QueryEscape(e.db.Password), e.db.Name, "127.0.0.1", "postgres://", "rolled back"} {
		if secret != "" && strings.Contains(got, secret) {
			t.Errorf("%s holds %q:\n%s", metrics.FileName, secret, got)
		}
	}
	promtoolCheck(t, prom)
	if fi, err := os.Stat(prom); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("%s: %v %v, want mode 0644 (node_exporter reads it)", prom, fi.Mode(), err)
	}

	// The recovery succeeded: the next write says so.
	writeJournal("OUTCOME=succeeded\nPHASE=finished\nSERVICE_BEFORE=running\nSTOPPED_AT=12345\nRECOVERY='dpkg --configure -a'\n")
	e.mustRun(0, "migrate")
	e.mustRun(0, "--journal", journal, "backup", "--prune")
	b, _ = os.ReadFile(prom)
	for _, want := range []string{`outcome="succeeded",phase="finished"`, "openwatch_upgrade_failed 0\n",
		"openwatch_service_left_stopped 0\n", "openwatch_migrations_pending 0\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("after the recovery, %s lacks %q:\n%s", metrics.FileName, want, b)
		}
	}
	promtoolCheck(t, prom)

	// The database unreachable: still written, saying so.
	e.writeSecrets("postgres://nobody@127.0.0.1:1/none?sslmode=disable")
	e.run("--journal", journal, "backup", "--prune")
	b, _ = os.ReadFile(prom)
	if !strings.Contains(string(b), "openwatch_database_reachable 0\n") || strings.Contains(string(b), "openwatch_migrations_pending") {
		t.Errorf("with the database unreachable:\n%s", b)
	}
	promtoolCheck(t, prom)
}

// A METRICS_DIR another account may write is refused with a warning naming
// the setting and the fix; the prune itself succeeds.
func TestAnUntrustedMetricsDirIsAWarningNotAFailure(t *testing.T) {
	e := newEnv(t)
	metricsDir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(metricsDir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(metricsDir, 0o777)
	e.writeConf("BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\nMETRICS_DIR=" + metricsDir + "\n")
	r := e.mustRun(0, "--journal", filepath.Join(t.TempDir(), "none"), "backup", "--prune")
	if !strings.Contains(r.stderr, "openwatch: warning: the upgrade state for monitoring was not written: METRICS_DIR "+metricsDir) ||
		!strings.Contains(r.stderr, "chmod go-w "+metricsDir) {
		t.Errorf("want a warning naming METRICS_DIR and the fix:\n%s", r)
	}
	if ents, _ := os.ReadDir(metricsDir); len(ents) != 0 {
		t.Errorf("wrote into %s: %v", metricsDir, ents)
	}
}
