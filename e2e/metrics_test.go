package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// metricsDir is METRICS_DIR inside the root: root's, 0755, as Debian's
// /var/lib/prometheus/node-exporter is.
const metricsDir = "/srv/node-exporter"

// TestMetricsFile (issue 20): with METRICS_DIR set in upgrade.conf, the
// upgrade, a failed upgrade and its recovery each leave openwatch.prom in
// that directory, which `promtool check metrics` accepts and which says
// what happened: the outcome, whether it failed, whether it left the
// service stopped, the pending migrations. A symbolic link planted at
// METRICS_DIR/openwatch.prom is replaced, never written through.
func TestMetricsFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, formatNamed(t, "deb"), "dash")
	old, nw, failing := e.vs["old"], e.vs["new"], e.vs["failing"]
	e.installAndInitialise(old)

	e.mustRoot("install -d -o root -g root -m 0755 " + metricsDir)
	const victim = "/etc/e2e-metrics-victim"
	e.r.writeFile(victim, "not openwatch's\n", 0o644)
	if err := os.Symlink(victim, e.r.path(metricsDir+"/openwatch.prom")); err != nil {
		t.Fatal(err)
	}
	conf := e.r.readFile(upgradeConfPath)
	e.r.writeFile(upgradeConfPath, conf+"\n# e2e: the upgrade's state for node_exporter\nMETRICS_DIR="+metricsDir+"\n", 0o640)

	// The upgrade.
	if res := e.pm(e.f.upgrade(e.f.pkg(nw))...); res.code != 0 {
		t.Fatalf("upgrade to %s: exit %d\n%s", nw.FullVersion(), res.code, res.out)
	}
	if got := e.r.readFile(victim); got != "not openwatch's\n" {
		t.Errorf("the upgrade wrote through the link planted at %s/openwatch.prom: %s now holds %q", metricsDir, victim, got)
	}
	m := e.metrics("after the upgrade")
	m.want(`openwatch_upgrade_last_info{outcome="succeeded",phase="finished"}`, "1")
	m.want("openwatch_upgrade_failed", "0")
	m.want("openwatch_service_left_stopped", "0")
	m.want("openwatch_migrations_pending", "0")
	m.want("openwatch_database_reachable", "1")
	m.want(`openwatch_schema_info{version="`+nw.Head+`"}`, "1")
	m.want(`openwatch_build_info{version="`+nw.FullVersion()+`",schema_head="`+nw.Head+`"}`, "1")
	m.want(`openwatch_restore_points{kind="file"}`, "1")

	// A failed upgrade: the migration fails after the service was stopped.
	e.exec("CREATE TABLE e2e_block_migration (why text)")
	res := e.pm(e.f.upgrade(e.f.pkg(failing))...)
	if !e.f.reportsFailure(res) {
		t.Fatalf("%s (exit %d) does not report the failed post-install script\n%s", res.cmd, res.code, res.out)
	}
	if e.r.active(applianceUnit) {
		t.Errorf("%s is running after the failed upgrade", applianceUnit)
	}
	m = e.metrics("after the failed upgrade")
	m.want(`openwatch_upgrade_last_info{outcome="migration-failed",phase="migrate"}`, "1")
	m.want("openwatch_upgrade_failed", "1")
	m.want("openwatch_service_left_stopped", "1")
	m.want("openwatch_migrations_pending", "1")
	m.want(`openwatch_build_info{version="`+failing.FullVersion()+`",schema_head="`+failing.Head+`"}`, "1")

	// The recovery.
	e.exec("DROP TABLE e2e_block_migration")
	if res := e.pm(e.f.recover...); res.code != 0 {
		t.Fatalf("recovery %s: exit %d\n%s", res.cmd, res.code, res.out)
	}
	e.wantRecovered(failing)
	m = e.metrics("after the recovery")
	m.want(`openwatch_upgrade_last_info{outcome="succeeded",phase="finished"}`, "1")
	m.want("openwatch_upgrade_failed", "0")
	m.want("openwatch_service_left_stopped", "0")
	m.want("openwatch_migrations_pending", "0")
	m.want(`openwatch_schema_info{version="`+failing.Head+`"}`, "1")
	if got := e.r.readFile(victim); got != "not openwatch's\n" {
		t.Errorf("%s changed: %q", victim, got)
	}
}

// metricsFile is one openwatch.prom as read at a moment.
type metricsFile struct {
	t       *testing.T
	when    string
	content string
}

// metrics reads METRICS_DIR/openwatch.prom: a regular file (not the link
// planted there), readable by node_exporter's account, without the
// database's password or address, and accepted by `promtool check
// metrics`, run here on its content.
func (e *env) metrics(when string) metricsFile {
	e.t.Helper()
	p := metricsDir + "/openwatch.prom"
	fi, err := os.Lstat(e.r.path(p))
	if err != nil {
		e.t.Fatalf("%s: no %s: %v", when, p, err)
	}
	if !fi.Mode().IsRegular() {
		e.t.Fatalf("%s: %s is %v, not a regular file", when, p, fi.Mode())
	}
	if m := fi.Mode().Perm(); m != 0o644 {
		e.t.Errorf("%s: %s mode %o, want 644", when, p, m)
	}
	if left := e.r.glob(metricsDir + "/.*.tmp"); len(left) != 0 {
		e.t.Errorf("%s: temporary files left in %s: %v", when, metricsDir, left)
	}
	content := e.r.readFile(p)
	pw := e.db.Password
	for _, secret := range []string{pw[len(pw)-8:], e.db.User, e.db.Name, e.db.Server.Host} {
		if strings.Contains(content, secret) {
			e.t.Errorf("%s: %s names the database or its password (%q)", when, p, secret)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(content)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() != 0 {
		e.t.Errorf("%s: promtool check metrics on %s: %v\n%s\n--- the file:\n%s", when, p, err, out.String(), content)
	}
	return metricsFile{t: e.t, when: when, content: content}
}

// want asserts the file has the sample series (name with its labels, as
// written) with value.
func (m metricsFile) want(series, value string) {
	m.t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	got := re.FindAllStringSubmatch(m.content, -1)
	if len(got) != 1 || got[0][1] != value {
		m.t.Errorf("%s: openwatch.prom has %v for %s, want one sample %s\n--- the file:\n%s", m.when, got, series, value, m.content)
	}
}
