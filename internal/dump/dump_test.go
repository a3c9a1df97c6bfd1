package dump

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/pgtest"
	"github.com/openwatch/openwatch/migrations"
)

// TestMain puts the real PostgreSQL client programs first on PATH, so the
// tests do not depend on what /usr/bin holds at the moment.
func TestMain(m *testing.M) {
	if bin, err := pgtest.BinDir(); err == nil {
		os.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	}
	os.Exit(pgtest.Main(m))
}

// setup returns a migrated database with some rows and its parsed DSN.
func setup(t *testing.T) (*pgtest.Database, *dsn.DSN) {
	t.Helper()
	db := pgtest.Shared(t).NewDatabase(t)
	d, err := dsn.Parse(db.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Run(context.Background(), migrate.Options{DSN: d, FS: migrations.FS, Out: &bytes.Buffer{}, LockTimeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	execSQL(t, db, `insert into hosts (hostname, address) select 'host-' || g, ('10.0.' || (g / 250) || '.' || (g % 250))::inet from generate_series(1, 300) g;
		insert into scan_results (host_id, status, findings) select id, 'warning', jsonb_build_object('cve', 'CVE-2024-' || id, 'ports', jsonb_build_array(22, 443)) from hosts;
		insert into host_profiles (host_id, protocol, port, username) select id, 'ssh', 22, 'scanner' from hosts where id % 3 = 0;`)
	return db, d
}

func execSQL(t *testing.T, db *pgtest.Database, sql string) { t.Helper(); db.MustExec(t, sql) }

func query(t *testing.T, db *pgtest.Database, sql string) string {
	t.Helper()
	return db.QueryString(t, sql)
}

// fingerprint covers every row of every table and the list of tables.
func fingerprint(t *testing.T, db *pgtest.Database) string {
	return query(t, db, `select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'public'`) + " " +
		query(t, db, `select md5(string_agg(x, '|')) from (
			select (select coalesce(string_agg(h::text, ',' order by id), '') from hosts h) x
			union all select (select coalesce(string_agg(s::text, ',' order by id), '') from scan_results s)
			union all select (select coalesce(string_agg(p::text, ',' order by host_id), '') from host_profiles p)
			union all select (select string_agg(version, ',' order by version) from schema_migrations)) t`)
}

func backup(t *testing.T, d *dsn.DSN, dir string) string {
	t.Helper()
	path, err := Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1.2.0-1", Compression: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestABackupRestoreRoundTripGivesBackIdenticalData(t *testing.T) {
	db, d := setup(t)
	want := fingerprint(t, db)
	path := backup(t, d, filepath.Join(t.TempDir(), "backups"))

	// What a later release would do: a new table, changed and deleted rows.
	execSQL(t, db, `create table later_feature (id int); insert into schema_migrations values ('20991231000000');
		update hosts set hostname = hostname || '-renamed'; delete from scan_results where id % 2 = 0;`)
	if fingerprint(t, db) == want {
		t.Fatal("the changes did not change the fingerprint; the test proves nothing")
	}
	var progressOut bytes.Buffer
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path, Progress: &progressOut}); err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, db); got != want {
		t.Fatalf("after restore:\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(progressOut.String(), "restore: done in ") {
		t.Errorf("no progress line: %q", progressOut.String())
	}
	execSQL(t, db, "insert into hosts (hostname, address) values ('after-restore', '10.9.9.9')")
}

func TestABackupIsNamedPrivateAndLeavesNoPartialFile(t *testing.T) {
	_, d := setup(t)
	dir := filepath.Join(t.TempDir(), "backups")
	path := backup(t, d, dir)
	known, _ := migrate.Known(migrations.FS)
	pattern := `^openwatch_1\.2\.0-1_schema-` + known[len(known)-1].Version + `_\d{8}T\d{6}Z\.dump$`
	if !regexp.MustCompile(pattern).MatchString(filepath.Base(path)) {
		t.Errorf("name %s does not match %s", filepath.Base(path), pattern)
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("file mode %v, dir mode %v; want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the restore point", len(entries))
	}
}

func TestFileNameReplacesUnsafeVersionCharacters(t *testing.T) {
	got := FileName("1.0.0~rc1+git/x y", "", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)))
	if want := "openwatch_1.0.0~rc1+git_x_y_schema-none_20260102T020405Z.dump"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// installShims puts pg_dump, pg_restore and psql shims first on PATH that
// record their argv and environment variable names (one file per process),
// then run the real program.
func installShims(t *testing.T) (logDir string) {
	t.Helper()
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logDir = t.TempDir()
	for _, name := range []string{"pg_dump", "pg_restore", "psql"} {
		script := "#!/bin/sh\n{ printf 'argv:'; for a in \"$0\" \"$@\"; do printf ' %s' \"$a\"; done; printf '\\nenv: '; env | cut -d= -f1 | tr '\\n' ' '; printf '\\n'; } > " + logDir + "/$$.log\nexec " + filepath.Join(bin, name) + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return logDir
}

func TestThePasswordNeverReachesAChildsArgv(t *testing.T) {
	db, d := setup(t)
	logDir := installShims(t)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path}); err != nil {
		t.Fatal(err)
	}
	calls := ""
	logs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		calls += string(b)
	}
	for _, name := range []string{"pg_dump", "pg_restore", "psql"} {
		if !strings.Contains(calls, "/"+name) {
			t.Errorf("%s was not run through the shim:\n%s", name, calls)
		}
	}
	for _, line := range strings.Split(calls, "\n") {
		if strings.HasPrefix(line, "argv:") {
			for _, form := range []string{db.Password, url.QueryEscape(db.Password), url.PathEscape(db.Password), db.Password[8:]} {
				if strings.Contains(line, form) {
					t.Errorf("argv holds the password (%q): %s", form, line)
				}
			}
			for _, leak := range []string{"postgres://", "password=", db.User, db.Name} {
				if strings.Contains(line, leak) {
					t.Errorf("argv holds connection details (%q): %s", leak, line)
				}
			}
		}
		if strings.HasPrefix(line, "env:") && !strings.Contains(line, " PGPASSWORD ") {
			t.Errorf("environment lacks PGPASSWORD: %s", line)
		}
	}
}

func TestAFailedBackupLeavesNoRestorePoint(t *testing.T) {
	_, d := setup(t)
	tests := []struct {
		name    string
		prepare func(t *testing.T) (dir string)
		wantErr string
	}{
		{"pg_dump missing from PATH", func(t *testing.T) string {
			t.Setenv("PATH", t.TempDir())
			return t.TempDir()
		}, "pg_dump not found"},
		{"a group-writable directory", func(t *testing.T) string {
			dir := t.TempDir()
			os.Chmod(dir, 0o770)
			return dir
		}, "group- or world-writable"},
		{"a directory that cannot be created", func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "file")
			os.WriteFile(f, nil, 0o600)
			return filepath.Join(f, "backups")
		}, "not a directory"},
		{"a read-only file system", func(t *testing.T) string {
			return mountTmpfs(t, "ro,mode=0700")
		}, "read-only file system"},
		{"a tmpfs smaller than the database", func(t *testing.T) string {
			return mountTmpfs(t, "size=256k,mode=0700")
		}, "not enough free space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.prepare(t)
			path, err := Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1", Compression: "1"})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Backup = %q, %v; want an error containing %q", path, err, tt.wantErr)
			}
			assertNoDumps(t, dir)
		})
	}
}

func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount tmpfs (tests run as root): %v", err)
	}
	if strings.HasPrefix(opts, "ro") {
		unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, opts)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func assertNoDumps(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}

func TestRestoreRefusesAFileThatDoesNotVerifyAndChangesNothing(t *testing.T) {
	db, d := setup(t)
	want := fingerprint(t, db)
	bad := filepath.Join(t.TempDir(), "bad.dump")
	os.WriteFile(bad, []byte("PGDMP not really"), 0o600)
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: bad}); err == nil || !strings.Contains(err.Error(), "not a usable restore point") {
		t.Fatalf("err = %v", err)
	}
	if fingerprint(t, db) != want {
		t.Fatal("the database changed")
	}
}

func TestATruncatedArchiveIsRolledBackCompletely(t *testing.T) {
	db, d := setup(t)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	execSQL(t, db, "create table later_feature (id int)")
	want := fingerprint(t, db)
	b, _ := os.ReadFile(path)
	cut := filepath.Join(t.TempDir(), "cut.dump")
	os.WriteFile(cut, b[:len(b)*2/3], 0o600) // header and TOC intact, data cut
	err := Restore(context.Background(), RestoreOptions{DSN: d, File: cut})
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v, want a failed restore", err)
	}
	if got := fingerprint(t, db); got != want {
		t.Fatalf("a failed restore changed the database:\n got %s\nwant %s", got, want)
	}
}

func TestASecondBackupInTheSameSecondTakesTheNextName(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	taken := filepath.Join(dir, FileName("1", "7", now))
	os.WriteFile(taken, []byte("first"), 0o600)
	partial := filepath.Join(dir, ".openwatch-2.partial")
	os.WriteFile(partial, []byte("second"), 0o600)
	got, err := place(partial, dir, "1", "7", now)
	if err != nil || got == taken {
		t.Fatalf("place = %s, %v; want a new name", got, err)
	}
	if b, _ := os.ReadFile(taken); string(b) != "first" {
		t.Fatal("the first restore point was overwritten")
	}
	if b, _ := os.ReadFile(got); string(b) != "second" {
		t.Fatal("the second restore point is not at its new name")
	}
}

func TestAnExistingRestorePointIsNeverReplaced(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, ".openwatch-1.partial"), filepath.Join(dir, "openwatch_1_schema-1_20260101T000000Z.dump")
	os.WriteFile(from, []byte("new"), 0o600)
	os.WriteFile(to, []byte("old"), 0o600)
	if err := renameNoReplace(from, to); err == nil {
		t.Fatal("rename replaced an existing restore point")
	}
	if b, _ := os.ReadFile(to); string(b) != "old" {
		t.Fatalf("restore point now holds %q", b)
	}
}

func TestRestoreGivesUpWhenASessionHoldsALockAndChangesNothing(t *testing.T) {
	db, d := setup(t)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	execSQL(t, db, "delete from host_profiles")
	want := fingerprint(t, db)
	holder, _ := db.IdleInTransaction(t, "holder", "lock table hosts in access share mode")
	err := Restore(context.Background(), RestoreOptions{DSN: d, File: path, LockTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("err = %v, want a lock timeout", err)
	}
	if _, err := holder.Exec(context.Background(), "rollback"); err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(t, db); got != want {
		t.Fatal("a restore that gave up changed the database")
	}
}

func TestTheBackupBarEstimatesFromTheNewestRestorePoint(t *testing.T) {
	dir := t.TempDir()
	if previousSize(dir) != 0 {
		t.Fatal("an empty directory gave an estimate")
	}
	old := filepath.Join(dir, FileName("1", "1", time.Unix(0, 0)))
	recent := filepath.Join(dir, FileName("1", "2", time.Unix(100, 0)))
	os.WriteFile(old, make([]byte, 10), 0o600)
	os.WriteFile(recent, make([]byte, 20), 0o600)
	os.WriteFile(filepath.Join(dir, ".openwatch-9.partial"), make([]byte, 99), 0o600)
	os.Chtimes(old, time.Now(), time.Unix(0, 0))
	if got := previousSize(dir); got != 20 {
		t.Fatalf("estimate %d, want the newest restore point's 20 bytes", got)
	}
}

func TestListNamesRestorePointsNewestFirstAndIgnoresEverythingElse(t *testing.T) {
	dir := t.TempDir()
	t1 := time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC)
	older := FileName("1.0.0-1", "20260101000002", t1)
	newer := FileName("1.1.0-1", "20260101000003", t1.Add(time.Hour))
	for _, n := range []string{older, newer, ".openwatch-123.partial", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, older), filepath.Join(dir, FileName("9.9.9-1", "1", t1))); err != nil {
		t.Fatal(err)
	}
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != filepath.Join(dir, newer) || got[1].Name != filepath.Join(dir, older) ||
		got[0].PackageVersion != "1.1.0-1" || got[0].SchemaVersion != "20260101000003" || got[0].Kind != "file" || got[0].Size != 1 {
		t.Fatalf("List = %+v", got)
	}
	if none, err := List(filepath.Join(dir, "absent")); err != nil || len(none) != 0 {
		t.Fatalf("List of a missing dir = %v, %v", none, err)
	}
}
