package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/pgtest"
)

// pruneEnv is an installation without any database: no secrets file, no
// OPENWATCH_DATABASE_DSN. backup --prune prunes the files all the same and
// exits 12, saying that the clones were not checked.
type pruneEnv struct {
	t    *testing.T
	root string
	conf string
}

func newPruneEnv(t *testing.T) *pruneEnv {
	root := t.TempDir()
	return &pruneEnv{t: t, root: root, conf: filepath.Join(root, "upgrade.conf")}
}

func (p *pruneEnv) writeConf(s string) {
	p.t.Helper()
	if err := os.WriteFile(p.conf, []byte(s), 0o640); err != nil {
		p.t.Fatal(err)
	}
}

// restorePoint writes a regular file named like a restore point taken age
// ago and returns its base name.
func (p *pruneEnv) restorePoint(dir string, age time.Duration) string {
	p.t.Helper()
	n := "openwatch_1.0.0-1_schema-20260101000003_" + time.Now().UTC().Add(-age).Format("20060102T150405Z") + ".dump"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, n), []byte("dump"), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return n
}

func (p *pruneEnv) prune(args ...string) result {
	p.t.Helper()
	return p.backup(append([]string{"--prune"}, args...)...)
}

// backup runs openwatch backup with args, without a database.
func (p *pruneEnv) backup(args ...string) result {
	p.t.Helper()
	cmd := exec.Command(binary, append([]string{"--config", p.conf, "--secrets", filepath.Join(p.root, "no-secrets.env"), "backup"}, args...)...)
	cmd.Env = []string{"PATH=/nonexistent"} // no pg_dump, no psql, no DSN
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		p.t.Fatal(err)
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errOut.String()}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func sortedNames(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

const day = 24 * time.Hour

func TestPruneReadsUpgradeConfAsDataAndNeedsNoDatabase(t *testing.T) {
	p := newPruneEnv(t)
	// A hostile directory name: a shell sourcing the config would create pwned.
	dir := filepath.Join(p.root, "it's $(touch pwned) `touch pwned` \"x\"")
	p.writeConf("# comment\n; comment\nAUTO_BACKUP=yes\nBACKUP_DIR=" + envQuote(dir) + "\nBACKUP_RETENTION_DAYS='5'\n")
	old := p.restorePoint(dir, 6*day)
	older := p.restorePoint(dir, 7*day)
	recent := p.restorePoint(dir, 4*day)
	newest := p.restorePoint(dir, day)

	r := p.prune()
	if r.code != ExitUnreachable {
		t.Fatalf("backup --prune: %s", r)
	}
	if want := "openwatch: warning: clone restore points were not checked: no database is configured (OPENWATCH_DATABASE_DSN is not set in the environment or in " +
		filepath.Join(p.root, "no-secrets.env") + "); the files were pruned. Once it is, run: openwatch backup --prune\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	if got, want := dirNames(t, dir), sortedNames(recent, newest); !slices.Equal(got, want) {
		t.Errorf("left %q, want %q\n%s", got, want, r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "removed "+filepath.Join(dir, old)+" ") ||
		!strings.HasPrefix(lines[1], "removed "+filepath.Join(dir, older)+" ") ||
		lines[2] != "2 restore point(s) older than 5 days removed from "+dir+"; 2 kept (the newest is always kept)" {
		t.Errorf("output:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(p.root, "pwned")); err == nil {
		t.Error("the config was executed")
	}
}

// The shell cleanup computed the retention with $(( )), which reads a
// leading 0 as octal: 010 pruned after 8 days, and 08 or 09 failed every run.
// The binary reads decimal.
func TestPruneReadsARetentionWithALeadingZeroAsDecimal(t *testing.T) {
	for _, tc := range []struct {
		retention string
		keep      time.Duration // kept: just inside the retention
		remove    time.Duration // removed: just outside
	}{
		{"010", 9*day + 12*time.Hour, 10*day + 12*time.Hour},
		{"08", 7*day + 12*time.Hour, 8*day + 12*time.Hour},
		{"09", 8*day + 12*time.Hour, 9*day + 12*time.Hour},
	} {
		t.Run(tc.retention, func(t *testing.T) {
			p := newPruneEnv(t)
			dir := filepath.Join(p.root, "backups")
			p.writeConf("BACKUP_DIR=" + dir + "\nBACKUP_RETENTION_DAYS=" + tc.retention + "\n")
			newest := p.restorePoint(dir, time.Hour)
			kept := p.restorePoint(dir, tc.keep)
			p.restorePoint(dir, tc.remove)
			r := p.prune()
			if r.code != ExitUnreachable {
				t.Fatalf("%s", r)
			}
			if got, want := dirNames(t, dir), sortedNames(newest, kept); !slices.Equal(got, want) {
				t.Errorf("BACKUP_RETENTION_DAYS=%s left %q, want %q\n%s", tc.retention, got, want, r)
			}
		})
	}
}

func TestPruneRefusesAnInvalidConfigWithExitNineteenAndRemovesNothing(t *testing.T) {
	for _, conf := range []string{
		"BACKUP_RETENTION_DAYS=1; rm -rf /\n",
		"BACKUP_RETENTION_DAYS=-3\n",
		"BACKUP_RETENTON_DAYS=3\n", // a typo must not turn the retention back to the default
	} {
		p := newPruneEnv(t)
		dir := filepath.Join(p.root, "backups")
		p.writeConf("BACKUP_DIR=" + dir + "\n" + conf)
		want := sortedNames(p.restorePoint(dir, day), p.restorePoint(dir, 400*day))
		r := p.prune()
		if r.code != ExitConfig || !strings.Contains(r.stderr, "openwatch backup --prune") {
			t.Errorf("%q: want exit %d naming the command to rerun, got %s", conf, ExitConfig, r)
		}
		if got := dirNames(t, dir); !slices.Equal(got, want) {
			t.Errorf("%q: left %q, want %q", conf, got, want)
		}
	}
	p := newPruneEnv(t) // --config names a file that is not there
	if r := p.prune(); r.code != ExitConfig {
		t.Errorf("missing --config file: %s", r)
	}
}

// An operator who moved the restore points to a bigger disk and left a
// symlink at BACKUP_DIR keeps the retention: the binary follows BACKUP_DIR
// for pruning as for writing and listing, and leaves the symlink.
func TestPruneFollowsASymlinkedBackupDirButNoSymlinkInsideIt(t *testing.T) {
	p := newPruneEnv(t)
	target := filepath.Join(p.root, "bigdisk", "restore-points")
	link := filepath.Join(p.root, "backups")
	old := p.restorePoint(target, 90*day)
	newest := p.restorePoint(target, day)
	precious := filepath.Join(p.root, "precious")
	if err := os.WriteFile(precious, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	inside := "openwatch_0.9.0-1_schema-1_20200101T000000Z.dump"
	if err := os.Symlink(precious, filepath.Join(target, inside)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	p.writeConf("BACKUP_DIR=" + link + "\nBACKUP_RETENTION_DAYS=30\n")
	r := p.prune()
	if r.code != ExitUnreachable || !strings.Contains(r.stdout, "removed "+filepath.Join(link, old)) {
		t.Fatalf("%s", r)
	}
	if got, want := dirNames(t, target), sortedNames(newest, inside); !slices.Equal(got, want) {
		t.Errorf("left %q, want %q", got, want)
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep" {
		t.Errorf("the target of a symlink inside was touched: %q, %v", b, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("BACKUP_DIR symlink: %v, %v", fi, err)
	}

	// --dir overrides BACKUP_DIR; the retention still comes from upgrade.conf.
	other := filepath.Join(p.root, "other")
	keep := []string{p.restorePoint(other, day), p.restorePoint(other, 29*day)}
	p.restorePoint(other, 31*day)
	if r := p.prune("--dir", other); r.code != ExitUnreachable {
		t.Fatalf("%s", r)
	}
	if got := dirNames(t, other); !slices.Equal(got, sortedNames(keep...)) {
		t.Errorf("--dir: left %q, want %q", got, keep)
	}
}

func TestPruneFailsWhenBackupDirIsASymlinkToNothing(t *testing.T) {
	p := newPruneEnv(t)
	link := filepath.Join(p.root, "backups")
	if err := os.Symlink(filepath.Join(p.root, "unmounted"), link); err != nil {
		t.Fatal(err)
	}
	p.writeConf("BACKUP_DIR=" + link + "\n")
	if r := p.prune(); r.code != ExitError || !strings.Contains(r.stderr, link) || !strings.Contains(r.stderr, "openwatch backup --prune") {
		t.Errorf("want exit %d naming %s and the command to rerun, got %s", ExitError, link, r)
	}
	p.writeConf("BACKUP_DIR=" + filepath.Join(p.root, "absent") + "\n")
	if r := p.prune(); r.code != ExitUnreachable || strings.Contains(r.stdout, "removed /") {
		t.Errorf("a missing BACKUP_DIR has nothing to prune: %s", r)
	}
	p.writeConf("")
	if r := p.prune("--list"); r.code != ExitUsage {
		t.Errorf("--list --prune: %s", r)
	}
}

// takeClone takes a clone restore point of e's database as if taken at
// created, with schema version head; it is dropped at the end of the test
// if still there.
func (e *env) takeClone(created time.Time) clone.Point {
	e.t.Helper()
	d, err := dsn.Parse(e.db.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := clone.Create(context.Background(), d, "", clone.Meta{PackageVersion: pkgVersion, SchemaVersion: head, Created: created})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		pgtest.Shared(e.t).Exec(context.Background(), "postgres", "drop database if exists "+quoteIdent(p.Name)+" with (force)")
	})
	return p
}

// allowClones gives e's role CREATEDB (it owns its database).
func (e *env) allowClones() {
	e.t.Helper()
	if err := e.db.Server.Exec(context.Background(), "postgres", "alter role "+quoteIdent(e.db.User)+" createdb"); err != nil {
		e.t.Fatal(err)
	}
}

// clones lists the clones of e's database on the server, oldest first.
func (e *env) clones() string {
	return e.query("select coalesce(string_agg(datname, ',' order by datname), '') from pg_database where datname like 'openwatch\\_rp\\_%' and shobj_description(oid, 'pg_database') like '%\"source\":\"" + e.db.Name + "\"%'")
}

// exportedFile writes a file named as p's export would be.
func (e *env) exportedFile(p clone.Point) string {
	e.t.Helper()
	path := filepath.Join(e.backups, dump.FileName(p.PackageVersion, p.SchemaVersion, p.Created))
	if err := os.MkdirAll(e.backups, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("dump"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// A clone goes once its file exists, and not before, however many newer
// clones there are: without a file it is the only copy of the database as
// it was.
func TestPruneDropsACloneOnlyOnceItsFileExists(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.allowClones()
	now := time.Now().UTC().Truncate(time.Second)
	exportedOld := e.takeClone(now.Add(-3 * time.Hour))
	older := e.takeClone(now.Add(-2 * time.Hour))
	newest := e.takeClone(now.Add(-time.Hour))
	file := e.exportedFile(exportedOld)

	r := e.mustRun(0, "backup", "--prune")
	for _, want := range []string{
		fmt.Sprintf("dropped the clone restore point %s (taken %s): its file %s exists\n", exportedOld.Name, exportedOld.Created.Format(time.RFC3339), file),
		fmt.Sprintf("kept the clone restore point %s (taken %s, ", older.Name, older.Created.Format(time.RFC3339)),
		fmt.Sprintf("kept the clone restore point %s (taken %s, ", newest.Name, newest.Created.Format(time.RFC3339)),
		"it has no file yet; write it with: openwatch backup --export\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q\n%s", want, r)
		}
	}
	if got, want := e.clones(), strings.Join(slices.Sorted(slices.Values([]string{older.Name, newest.Name})), ","); got != want {
		t.Fatalf("clones left: %q, want %s", got, want)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the exported file within the retention is gone: %v", err)
	}

	// Once the other clones' files exist, they go too.
	file = e.exportedFile(newest)
	e.exportedFile(older)
	r = e.mustRun(0, "backup", "--prune")
	if want := fmt.Sprintf("dropped the clone restore point %s (taken %s): its file %s exists\n", newest.Name, newest.Created.Format(time.RFC3339), file); !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q\n%s", want, r)
	}
	if got := e.clones(); got != "" {
		t.Fatalf("clones left: %q", got)
	}
}

func TestPruneWithoutTheDatabasePrunesTheFilesAndSaysTheClonesWereNotChecked(t *testing.T) {
	p := newPruneEnv(t)
	dir := filepath.Join(p.root, "backups")
	p.writeConf("BACKUP_DIR=" + dir + "\nBACKUP_RETENTION_DAYS=5\nDATABASE_WAIT_TIMEOUT=0\n")
	newest := p.restorePoint(dir, day)
	p.restorePoint(dir, 6*day)
	secrets := filepath.Join(p.root, "secrets.env")
	if err := os.WriteFile(secrets, []byte("OPENWATCH_DATABASE_DSN='host=127.0.0.1 port=1 dbname=x user=y password=sekr1t sslmode=disable'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--config", p.conf, "--secrets", secrets, "backup", "--prune")
	cmd.Env = []string{"PATH=/nonexistent"}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Run()
	r := result{cmd.ProcessState.ExitCode(), out.String(), errOut.String()}
	if r.code != ExitUnreachable {
		t.Fatalf("want exit %d, got %s", ExitUnreachable, r)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{newest}) {
		t.Errorf("left %q, want only %s\n%s", got, newest, r)
	}
	if !strings.HasPrefix(r.stderr, "openwatch: warning: clone restore points were not checked: cannot connect to ") ||
		!strings.HasSuffix(r.stderr, "; the files were pruned. Once PostgreSQL is reachable, run: openwatch backup --prune\n") ||
		strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "sekr1t") {
		t.Errorf("want one line saying the clones were not checked and why:\n%s", r)
	}
}

// Taking a clone, migrate drops the older clones whose files exist, before
// the migration needs the room, and keeps those without one.
func TestMigrateTakingACloneDropsTheOlderExportedClones(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.allowClones()
	exported := e.takeClone(time.Now().UTC().Truncate(time.Second).Add(-2 * time.Hour))
	file := e.exportedFile(exported)
	older := e.takeClone(time.Now().UTC().Truncate(time.Second).Add(-time.Hour))
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	// The previous clone's timing gives the new one a time estimate.
	journal := filepath.Join(t.TempDir(), "upgrade.state")
	timing := filepath.Join(filepath.Dir(journal), clone.TimingFile)
	if err := clone.WriteTiming(timing, clone.Timing{Bytes: 1 << 20, Duration: time.Second, Method: clone.CopyPlain}); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun(0, "migrate", "--journal", journal)
	if !strings.Contains(r.stderr, "clone: started, ") || !strings.Contains(r.stderr, "; estimated time: about ") ||
		!strings.Contains(r.stderr, "(estimated from the previous clone: 1.0 MiB in 1s)") || !strings.Contains(r.stderr, "clone: done in ") {
		t.Errorf("no clone progress with an estimate: %s", r)
	}
	if tm, ok := clone.ReadTiming(timing); !ok || tm.Bytes == 1<<20 || tm.Method != clone.CopyPlain {
		t.Errorf("the clone's timing was not recorded: %+v, %v", tm, ok)
	}
	name := cloneNameRE.FindString(r.stdout)
	if name == "" || name == older.Name {
		t.Fatalf("no new clone: %s", r)
	}
	if want := fmt.Sprintf("dropped the clone restore point %s (taken %s): its file %s exists\n", exported.Name, exported.Created.Format(time.RFC3339), file); !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q\n%s", want, r)
	}
	if got, want := e.clones(), strings.Join(slices.Sorted(slices.Values([]string{older.Name, name})), ","); got != want {
		t.Fatalf("clones left: %q, want the one without a file and the new one: %s", got, want)
	}
	t.Cleanup(func() {
		pgtest.Shared(t).Exec(context.Background(), "postgres", "drop database if exists "+quoteIdent(name)+" with (force)")
	})
}

// CREATE DATABASE and the COMMENT that records a clone cannot share a
// transaction: a migrate killed between them leaves a full copy of the
// database without a record, which is no restore point and which nothing
// listed. The cleanup drops it, and only it: a database with a clone's name
// owned by another role stays.
func TestPruneDropsTheIncompleteCloneAnInterruptedMigrateLeft(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	srv := pgtest.Shared(t)
	ctx := context.Background()
	incomplete := clone.Prefix + "20260101000003_20000101t000000z"
	foreign := clone.Prefix + "20260101000003_20000101t000001z"
	for _, sql := range []string{
		"create database " + incomplete + " owner " + quoteIdent(e.db.User) + " template " + quoteIdent(e.db.Name),
		"create database " + foreign,
	} {
		if err := srv.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		srv.Exec(ctx, "postgres", "drop database if exists "+incomplete)
		srv.Exec(ctx, "postgres", "drop database if exists "+foreign)
	})
	r := e.mustRun(0, "backup", "--prune")
	if want := "dropped " + incomplete + ": a clone an interrupted openwatch migrate left without its restore point record"; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q\n%s", want, r)
	}
	got := e.query("select coalesce(string_agg(datname, ',' order by datname), '') from pg_database where datname in ('" + incomplete + "', '" + foreign + "')")
	if got != foreign {
		t.Errorf("databases left: %q, want only the one another role owns, %s", got, foreign)
	}
}
