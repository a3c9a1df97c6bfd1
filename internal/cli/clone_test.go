package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/pgtest"
)

// cloneNameRE finds a clone's name in output (clone.IsName checks it whole).
var cloneNameRE = regexp.MustCompile(regexp.QuoteMeta(clone.Prefix) + `[0-9]+_[0-9]{8}t[0-9]{6}z`)

// With CREATEDB and nothing else connected, the restore point is a clone:
// listed, swapped back in seconds, and exported to the usual file.
func TestACloneRestorePointIsTakenListedSwappedBackAndExported(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	if err := pgtest.Shared(t).Exec(context.Background(), "postgres", "alter role "+quoteIdent(e.db.User)+" createdb"); err != nil {
		t.Fatal(err)
	}

	r := e.mustRun(0, "migrate")
	name := cloneNameRE.FindString(r.stdout)
	if name == "" || !strings.Contains(r.stdout, "a clone of the database") {
		t.Fatalf("no clone restore point: %s", r)
	}
	if len(e.dumps()) != 0 {
		t.Errorf("a file was written during the migration as well: %v", e.dumps())
	}
	var s statusJSON
	if err := json.Unmarshal([]byte(e.mustRun(0, "migrate", "--status", "--json").stdout), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.RestorePoints) != 1 || s.RestorePoints[0].Name != name || s.RestorePoints[0].Kind != "clone" || s.RestorePoints[0].SchemaVersion != "20260101000002" {
		t.Fatalf("restore_points = %+v, want the clone", s.RestorePoints)
	}

	// Swap it back: the schema and rows as before the migration.
	r = e.mustRun(0, "restore", "--yes", name)
	if !strings.Contains(r.stderr, "restore: started; no time estimate (a swap by renaming: no data is copied)\n") || !strings.Contains(r.stderr, "restore: done in ") {
		t.Errorf("the swap shows no start and end lines: %s", r)
	}
	if !strings.Contains(r.stdout, "DROP DATABASE") {
		t.Errorf("the restore does not name the command that drops the kept database: %s", r)
	}
	if got := e.applied(); got != "20260101000001,20260101000002" {
		t.Fatalf("after the swap applied = %q", got)
	}
	if e.query("select hostname from hosts") != "a" {
		t.Fatal("the rows are not the clone's")
	}

	// Migrate again, then export: one verified file, and the clone is gone.
	r = e.mustRun(0, "migrate")
	name = cloneNameRE.FindString(r.stdout)
	r = e.mustRun(0, "backup", "--export")
	if !strings.Contains(r.stderr, "export: started") || !strings.Contains(r.stderr, "export: done in ") {
		t.Errorf("the export shows no start and end lines: %s", r)
	}
	if files := e.dumps(); len(files) != 1 || strings.TrimSpace(r.stdout) != files[0] || !strings.Contains(files[0], "_schema-20260101000002_") {
		t.Fatalf("export: %s\nfiles %v", r, e.dumps())
	}
	if strings.Contains(e.mustRun(0, "migrate", "--status").stdout, name) {
		t.Errorf("the clone %s is still listed after its export", name)
	}
	e.mustRun(0, "backup", "--export") // nothing left to do
}

// Without CREATEDB the restore point is a file, and the output says why.
func TestWithoutCreatedbTheRestorePointIsAFileAndTheOutputSaysWhy(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	r := e.mustRun(0, "migrate")
	if !strings.Contains(r.stdout, "restore point: a file, not a clone: ") || !strings.Contains(r.stdout, "CREATEDB") || len(e.dumps()) != 1 {
		t.Fatalf("want a file and the reason: %s", r)
	}
	e.writeConf("BACKUP_DIR=" + e.backups + "\nRESTORE_POINT=clone\nDATABASE_WAIT_TIMEOUT=0\n")
	e.downgradeOneStep()
	r = e.run("migrate")
	if r.code != ExitBackupFailed || !strings.Contains(r.stderr, "RESTORE_POINT=clone") || !strings.Contains(r.stderr, "Nothing was applied") {
		t.Fatalf("RESTORE_POINT=clone without CREATEDB: %s", r)
	}
}
