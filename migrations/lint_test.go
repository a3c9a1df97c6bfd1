package migrations

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeLint runs this repository's `make lint` over the migrations in dir.
func makeLint(t *testing.T, dir string) (string, error) {
	t.Helper()
	out, err := exec.Command("make", "-C", "..", "--no-print-directory", "lint", "MIGRATIONS="+dir).CombinedOutput()
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

// testdata/realistic is what a real project's migrations look like (goose's
// "-- +goose Up/Down" turned into dbmate's markers): tables, plain indexes,
// foreign keys, a rename, a backfill with SET NOT NULL, down sections that
// drop what their up sections created, and one data purge without a way
// down that says why. Every finding the lint had on them protected only a
// running application, or was a down section doing its job.
func TestMakeLintPassesARealProjectsMigrations(t *testing.T) {
	dir, _ := filepath.Abs(filepath.Join("testdata", "realistic"))
	if out, err := makeLint(t, dir); err != nil {
		t.Fatalf("make lint: %v\n%s", err, out)
	}
}

func TestMakeLintLintsADownSectionAsADownSection(t *testing.T) {
	dir := lintDir(t, map[string]string{
		"20260101000001_t.sql": "-- migrate:up\nCREATE TABLE t (n bigint);\n\n-- migrate:down\nDROP TABLE t;\n",
		"20260201000000_drop.sql": "-- migrate:up\nALTER TABLE t DROP COLUMN n;\n\n" +
			"-- migrate:down\nALTER TABLE t ADD COLUMN n bigint;\n",
		"20260301000000_add.sql": "-- migrate:up\nALTER TABLE t ADD COLUMN m bigint;\n\n" +
			"-- migrate:down\nALTER TABLE t DROP COLUMN m;\nALTER TABLE t ADD COLUMN k text NOT NULL;\n",
	})
	out, err := makeLint(t, dir)
	if err == nil {
		t.Fatalf("make lint passed a DROP COLUMN in an up section:\n%s", out)
	}
	for _, want := range []string{
		filepath.Join(dir, "20260201000000_drop.sql") + ":2:", "ban-drop-column", // the up section's
		filepath.Join(dir, "20260301000000_add.sql") + ":6:", "adding-required-field", // a down section is still linted
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "20260101000001_t.sql:") || strings.Contains(out, "20260301000000_add.sql:5:") {
		t.Errorf("a down section's DROP TABLE / DROP COLUMN was flagged:\n%s", out)
	}
}

func TestMakeLintDoesNotAskForWhatOnlyARunningApplicationNeeds(t *testing.T) {
	dir := lintDir(t, map[string]string{
		"20260101000001_t.sql": "-- migrate:up\nCREATE TABLE t (n bigint, u bigint);\nCREATE TABLE u (id bigint PRIMARY KEY);\n\n-- migrate:down\nDROP TABLE u;\nDROP TABLE t;\n",
		"20260201000000_x.sql": "-- migrate:up\nCREATE INDEX t_n_idx ON t (n);\nALTER TABLE t ADD CONSTRAINT t_u_fkey FOREIGN KEY (u) REFERENCES u (id);\n" +
			"ALTER TABLE t ADD CONSTRAINT t_n_key UNIQUE (n);\nALTER TABLE t ALTER COLUMN n SET NOT NULL;\nALTER TABLE t RENAME COLUMN u TO u_id;\n\n" +
			"-- migrate:down\nALTER TABLE t RENAME COLUMN u_id TO u;\nALTER TABLE t ALTER COLUMN n DROP NOT NULL;\nALTER TABLE t DROP CONSTRAINT t_n_key;\n" +
			"ALTER TABLE t DROP CONSTRAINT t_u_fkey;\nDROP INDEX t_n_idx;\n",
	})
	if out, err := makeLint(t, dir); err != nil {
		t.Fatalf("make lint: %v\n%s", err, out)
	}
}

func TestMakeLintKeepsWhatMakesDowntime(t *testing.T) {
	dir := lintDir(t, map[string]string{
		"20260101000001_t.sql": "-- migrate:up\nCREATE TABLE t (n bigint);\n\n-- migrate:down\nDROP TABLE t;\n",
		"20260201000000_x.sql": "-- migrate:up\nALTER TABLE t ADD COLUMN at timestamptz NOT NULL DEFAULT clock_timestamp();\n\n" +
			"-- migrate:down\nALTER TABLE t DROP COLUMN at;\n",
	})
	out, err := makeLint(t, dir)
	if err == nil || !strings.Contains(out, "20260201000000_x.sql:2:") || !strings.Contains(out, "adding-field-with-default") {
		t.Fatalf("make lint: %v, want a table rewrite flagged:\n%s", err, out)
	}
}

func TestMakeLintRefusesAMigrationWithoutAWayDownUnlessItSaysWhy(t *testing.T) {
	const t1 = "-- migrate:up\nCREATE TABLE t (n bigint);\n\n-- migrate:down\nDROP TABLE t;\n"
	dir := lintDir(t, map[string]string{
		"20260101000001_t.sql":     t1,
		"20260201000000_purge.sql": "-- migrate:up\nDELETE FROM t WHERE n < 0;\n\n-- migrate:down\n-- cannot be undone\n",
		"20260301000000_none.sql":  "-- migrate:up\nDELETE FROM t WHERE n > 9;\n",
		"20260401000000_bare.sql":  "-- migrate:up\nDELETE FROM t WHERE n = 5;\n\n-- migrate:down\n-- no-way-down\n",
	})
	out, err := makeLint(t, dir)
	for _, want := range []string{"20260201000000_purge.sql:4: the down section has no statement: no way down", "20260301000000_none.sql: no -- migrate:down section",
		"20260401000000_bare.sql:4: the down section has no statement", "-- no-way-down -- REASON"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if err == nil || t.Failed() {
		t.Fatalf("make lint: %v\n%s", err, out)
	}
	dir = lintDir(t, map[string]string{
		"20260101000001_t.sql": t1,
		"20260201000000_purge.sql": "-- migrate:up\nDELETE FROM t WHERE n < 0;\n\n-- migrate:down\n" +
			"-- no-way-down -- the deleted rows are gone; only a restore point from before brings them back\n",
	})
	if out, err := makeLint(t, dir); err != nil {
		t.Fatalf("make lint refused a migration that says why it has no way down: %v\n%s", err, out)
	}
}
