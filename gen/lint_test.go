package gen

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeLint runs `make lint` of this repository over the migrations in dir.
func makeLint(t *testing.T, dir string) (string, error) {
	t.Helper()
	args := []string{"-C", "..", "--no-print-directory", "lint"}
	if dir != "" {
		args = append(args, "MIGRATIONS="+dir)
	}
	out, err := exec.Command("make", args...).CombinedOutput()
	return string(out), err
}

func lintDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const createT = "-- migrate:up\nCREATE TABLE t (n bigint);\n\n-- migrate:down\n-- squawk-ignore ban-drop-table -- drops what up created\nDROP TABLE t;\n"

func TestMakeLintPassesTheShippedMigrations(t *testing.T) {
	if out, err := makeLint(t, ""); err != nil {
		t.Fatalf("make lint: %v\n%s", err, out)
	}
}

// A table rewrite is downtime even with the service stopped: a volatile
// default rewrites every row. The finding names that file alone.
func TestMakeLintFailsOnATableRewriteNamingTheFile(t *testing.T) {
	dir := lintDir(t, map[string]string{
		"20260101000001_t.sql":       createT,
		"20260301000000_rewrite.sql": "-- migrate:up\nALTER TABLE t ADD COLUMN at timestamptz NOT NULL DEFAULT clock_timestamp();\n\n-- migrate:down\nALTER TABLE t DROP COLUMN at;\n",
	})
	out, err := makeLint(t, dir)
	if err == nil {
		t.Fatalf("make lint passed a table rewrite:\n%s", out)
	}
	want := filepath.Join(dir, "20260301000000_rewrite.sql") + ":"
	if !strings.Contains(out, want) || !strings.Contains(out, "adding-field-with-default") || strings.Contains(out, "20260101000001_t.sql:") {
		t.Fatalf("output does not name only the rewriting file (%q):\n%s", want, out)
	}
}

func TestMakeLintAcceptsAConcurrentIndexOutsideATransaction(t *testing.T) {
	dir := lintDir(t, map[string]string{
		"20260101000001_t.sql": createT,
		"20260301000000_index.sql": "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_n_idx ON t (n);\n\n" +
			"-- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS t_n_idx;\n",
	})
	if out, err := makeLint(t, dir); err != nil {
		t.Fatalf("make lint: %v\n%s", err, out)
	}
}

func TestMakeLintRefusesAWaiverWithoutAReason(t *testing.T) {
	dir := lintDir(t, map[string]string{
		"20260101000001_t.sql": strings.Replace(createT, " -- drops what up created", "", 1),
	})
	out, err := makeLint(t, dir)
	if err == nil || !strings.Contains(out, "20260101000001_t.sql:5:-- squawk-ignore ban-drop-table") || !strings.Contains(out, "give no reason") {
		t.Fatalf("make lint: %v\n%s", err, out)
	}
}
