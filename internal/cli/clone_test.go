package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

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

	// The preflight runs while the service does: its session does not
	// count against the clone.
	service := e.db.Conn(t)
	if r := e.mustRun(0, "migrate", "--preflight"); !strings.Contains(r.stdout, "preflight: the restore point will be a clone of the database") {
		t.Errorf("the preflight does not say that the restore point will be a clone: %s", r)
	}
	service.Close(context.Background())
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
	// The database the swap kept aside is not forgotten: the cleanup and
	// the status name it and the command that drops it, and leave it.
	kept := regexp.MustCompile(regexp.QuoteMeta(e.db.Name) + `_before_restore_[0-9]{8}t[0-9]{6}z`).FindString(r.stdout)
	drop := "DROP DATABASE " + quoteIdent(kept) + ";"
	if kept == "" {
		t.Fatalf("the restore does not name the database it kept: %s", r)
	}
	t.Cleanup(func() {
		pgtest.Shared(t).Exec(context.Background(), "postgres", "drop database if exists "+quoteIdent(kept))
	})
	if p := e.mustRun(0, "backup", "--prune"); !strings.Contains(p.stdout, "kept "+kept+" (") || !strings.Contains(p.stdout, drop) {
		t.Errorf("backup --prune does not name the kept database and how to drop it: %s", p)
	}
	if s := e.mustRun(0, "migrate", "--status"); !strings.Contains(s.stdout, "kept by restores: 1") || !strings.Contains(s.stdout, drop) {
		t.Errorf("migrate --status does not list the kept database: %s", s)
	}
	if e.query("select count(*) from pg_database where datname = '"+kept+"'") != "1" {
		t.Errorf("%s was dropped; only the operator drops it", kept)
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
	if r := e.mustRun(0, "migrate", "--preflight"); !strings.Contains(r.stdout, "preflight: the restore point will be a file, not a clone: ") || !strings.Contains(r.stdout, "CREATEDB") {
		t.Errorf("the preflight does not say that the restore point will be a file, and why: %s", r)
	}
	r := e.mustRun(0, "migrate")
	if !strings.Contains(r.stdout, "restore point: a file, not a clone: ") || !strings.Contains(r.stdout, "CREATEDB") || len(e.dumps()) != 1 {
		t.Fatalf("want a file and the reason: %s", r)
	}
	e.writeConf("BACKUP_DIR=" + e.backups + "\nRESTORE_POINT=clone\nDATABASE_WAIT_TIMEOUT=0\n")
	e.downgradeOneStep()
	// The preflight, while the service still runs, already refuses: the
	// upgrade fails before it stops anything.
	r = e.run("migrate", "--preflight")
	if r.code != ExitBackupFailed || !strings.Contains(r.stderr, "RESTORE_POINT=clone") || !strings.Contains(r.stderr, "CREATEDB") || !strings.Contains(r.stderr, "Nothing was changed") {
		t.Fatalf("preflight with RESTORE_POINT=clone without CREATEDB: %s", r)
	}
	r = e.run("migrate")
	if r.code != ExitBackupFailed || !strings.Contains(r.stderr, "RESTORE_POINT=clone") || !strings.Contains(r.stderr, "Nothing was applied") {
		t.Fatalf("RESTORE_POINT=clone without CREATEDB: %s", r)
	}
}

// A migration run that fails after a destructive migration leaves a clone
// of the database from before the upgrade. Its retry takes a clone of the
// database as the failed run left it, and must keep the first one: it is
// the only copy of the dropped column, and the runbook's way back to the
// older package. backup --list and the downgrade refusal name it.
func TestARetryAfterAFailedMigrationKeepsTheCloneFromBeforeTheUpgrade(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	fsys := fstest.MapFS{"001_base.sql": mapFile("create table base (n int, note text); insert into base values (1, 'only in the first clone');")}
	if code, out := e.inProcess(ctx, fsys, "migrate"); code != 0 {
		t.Fatalf("first migrate: %d\n%s", code, out)
	}
	e.allowClones()
	fsys["002_drop.sql"] = mapFile("alter table base drop column note;")
	fsys["003_fails.sql"] = mapFile("select 1/0;")
	code, out := e.inProcess(ctx, fsys, "migrate")
	first := cloneNameRE.FindString(out)
	if code != ExitFailed || first == "" {
		t.Fatalf("want exit %d with a clone restore point: %d\n%s", ExitFailed, code, out)
	}
	if got := e.applied(); got != "001,002" {
		t.Fatalf("applied %q after the failed run", got)
	}

	code, out = e.inProcess(ctx, fsys, "migrate") // the retry
	second := cloneNameRE.FindString(out)
	if code != ExitFailed || second == "" || second == first {
		t.Fatalf("retry: want exit %d with a new clone: %d\n%s", ExitFailed, code, out)
	}
	if got, want := e.clones(), strings.Join(slices.Sorted(slices.Values([]string{first, second})), ","); got != want {
		t.Fatalf("clones after the retry: %q, want both %s", got, want)
	}
	list := e.run("backup", "--list")
	if list.code != 0 || !strings.Contains(list.stdout, first+"  (clone, ") || !strings.Contains(list.stdout, second+"  (clone, ") ||
		strings.Index(list.stdout, second) > strings.Index(list.stdout, first) {
		t.Errorf("backup --list does not show both clones, newest first: %s", list)
	}

	// Back to the older package: its binary refuses the newer schema and
	// names the first clone, which brings the column back.
	delete(fsys, "002_drop.sql")
	delete(fsys, "003_fails.sql")
	if code, out := e.inProcess(ctx, fsys, "migrate", "--check"); code != ExitNewer || !strings.Contains(out, "openwatch restore --yes "+first) {
		t.Errorf("the older binary does not name the clone from before the upgrade (%s): %d\n%s", first, code, out)
	}
	if code, out := e.inProcess(ctx, fsys, "restore", "--yes", first); code != 0 {
		t.Fatalf("restore %s: %d\n%s", first, code, out)
	}
	if got := e.query("select note from base"); got != "only in the first clone" {
		t.Errorf("after restoring the first clone, note = %q", got)
	}
}

// Without a database, backup --list lists the files and says, last, that
// the clones were not listed and why (exit 12).
func TestBackupListWithoutTheDatabaseListsTheFilesAndSaysTheClonesWereNot(t *testing.T) {
	p := newPruneEnv(t)
	dir := filepath.Join(p.root, "backups")
	p.writeConf("BACKUP_DIR=" + dir + "\n")
	name := p.restorePoint(dir, day)
	r := p.backup("--list")
	if r.code != ExitUnreachable {
		t.Fatalf("want exit %d, got %s", ExitUnreachable, r)
	}
	if !strings.Contains(r.stdout, filepath.Join(dir, name)) {
		t.Errorf("the file is not listed: %s", r)
	}
	if want := "were not listed: no database is configured"; !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "run: openwatch backup --list") {
		t.Errorf("stderr lacks %q and the command: %s", want, r)
	}
}
