package dump

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/dsn"
)

// sqlOf is the SQL pg_restore makes of an archive: what a restore runs.
func sqlOf(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("pg_restore", "--file=-", "--", file).Output()
	if err != nil {
		t.Fatalf("pg_restore --file=- %s: %v", file, err)
	}
	// Without the random key of \restrict and \unrestrict.
	out = regexp.MustCompile(`(?m)^\\(un)?restrict [A-Za-z0-9]+$`).ReplaceAll(out, nil)
	return fmt.Sprintf("%x", sha256.Sum256(out))
}

func deferredBackup(t *testing.T, d *dsn.DSN, dir string, progress *bytes.Buffer) string {
	t.Helper()
	path, err := Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1.2.0-1", Compression: "1",
		DeferCompression: true, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func mustCompressed(t *testing.T, file string, want bool) {
	t.Helper()
	got, err := ArchiveCompressed(file)
	if err != nil || got != want {
		t.Fatalf("ArchiveCompressed(%s) = %v, %v; want %v", file, got, err, want)
	}
}

func TestADeferredRestorePointIsWrittenUncompressedThenCompressedInPlace(t *testing.T) {
	db, d := setup(t)
	addLargeObjects(t, db)
	execSQL(t, db, `create table empty_table (id int)`) // a data block with no rows
	want := state(t, db)
	dir := filepath.Join(t.TempDir(), "backups")
	var progress bytes.Buffer
	path := deferredBackup(t, d, dir, &progress)

	// While the service is stopped: an uncompressed, verified file under
	// its name, private, nothing else in the directory.
	mustCompressed(t, path, false)
	if !strings.Contains(progress.String(), "pg_dump --compress=0") || !strings.Contains(progress.String(), "openwatch backup --export") {
		t.Errorf("progress does not say the file is uncompressed and what compresses it:\n%s", progress.String())
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	pending, err := Pending(dir, "1")
	if err != nil || len(pending) != 1 || pending[0].Name != path {
		t.Fatalf("Pending = %v, %v; want %s", pending, err, path)
	}
	if p, _ := Pending(dir, "0"); len(p) != 0 {
		t.Errorf("with BACKUP_COMPRESSION=0 nothing is pending, got %v", p)
	}
	uncompressedSQL, uncompressedSize := sqlOf(t, path), fi.Size()

	// What today's way writes, for the size.
	direct := backup(t, d, filepath.Join(t.TempDir(), "direct"))
	directInfo, _ := os.Stat(direct)

	progress.Reset()
	done, err := CompressPending(context.Background(), CompressOptions{Dir: dir, Compression: "1", Progress: &progress})
	if err != nil || len(done) != 1 || done[0] != path {
		t.Fatalf("CompressPending = %v, %v\n%s", done, err, progress.String())
	}
	mustCompressed(t, path, true)
	after, _ := os.Stat(path)
	if after.Mode().Perm() != 0o600 || !after.ModTime().Equal(fi.ModTime()) {
		t.Errorf("compressed file: mode %v, mtime %v; want 0600 and the original's %v", after.Mode().Perm(), after.ModTime(), fi.ModTime())
	}
	if sqlOf(t, path) != uncompressedSQL {
		t.Fatal("the compressed file does not restore to the same SQL")
	}
	if after.Size() >= uncompressedSize {
		t.Errorf("compressed %d bytes, uncompressed %d", after.Size(), uncompressedSize)
	}
	if after.Size() > directInfo.Size() {
		t.Errorf("compressed here %d bytes, larger than pg_dump -Z1's %d", after.Size(), directInfo.Size())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v, want only the restore point", entries)
	}
	if p, _ := Pending(dir, "1"); len(p) != 0 {
		t.Errorf("still pending after compression: %v", p)
	}
	// Idempotent.
	if done, err := CompressPending(context.Background(), CompressOptions{Dir: dir, Compression: "1"}); err != nil || len(done) != 0 {
		t.Errorf("second CompressPending = %v, %v", done, err)
	}

	// Both forms restore.
	changeEverything(t, db)
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path}); err != nil {
		t.Fatal(err)
	}
	if got := state(t, db); got != want {
		t.Fatalf("restored from the compressed file:\n%s\nwant\n%s", got, want)
	}
}

func TestAnUncompressedRestorePointRestores(t *testing.T) {
	db, d := setup(t)
	addLargeObjects(t, db)
	want := state(t, db)
	path := deferredBackup(t, d, filepath.Join(t.TempDir(), "backups"), &bytes.Buffer{})
	mustCompressed(t, path, false)
	changeEverything(t, db)
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path}); err != nil {
		t.Fatal(err)
	}
	if got := state(t, db); got != want {
		t.Fatalf("restored from the uncompressed file:\n%s\nwant\n%s", got, want)
	}
}

func TestWithoutRoomForTheUncompressedFileTheBackupCompressesAsItWrites(t *testing.T) {
	db, d := setup(t)
	// Room for the compressed file (estimated at the database's size, there
	// being no earlier restore point) but not for the uncompressed one too.
	execSQL(t, db, `create table filler as select g, repeat('openwatch ', 40) as t from generate_series(1, 60000) g`)
	var size int64
	fmt.Sscan(query(t, db, `select pg_database_size(current_database())`), &size)
	dir := mountTmpfs(t, fmt.Sprintf("size=%d,mode=0700", size+32<<20))
	var progress bytes.Buffer
	path := deferredBackup(t, d, dir, &progress)
	mustCompressed(t, path, true)
	if !strings.Contains(progress.String(), "no room for it uncompressed") {
		t.Errorf("progress does not say why it compressed now:\n%s", progress.String())
	}
}

func TestDeferrableLevels(t *testing.T) {
	for _, c := range []struct {
		in    string
		level int
		ok    bool
	}{{"1", 1, true}, {"9", 9, true}, {"0", 0, false}, {"gzip", 6, true}, {"gzip:3", 3, true}, {"gzip:level=4", 4, true},
		{"lz4", 0, false}, {"zstd:3", 0, false}, {"none", 0, false}, {"10", 0, false}} {
		if level, ok := DeferrableLevel(c.in); level != c.level || ok != c.ok {
			t.Errorf("DeferrableLevel(%q) = %d, %v; want %d, %v", c.in, level, ok, c.level, c.ok)
		}
	}
}

// TestKillNineDuringTheCompressionLeavesAUsableRestorePoint kills the real
// binary's `backup --export` with SIGKILL while it writes the compressed
// copy, and again while it verifies it: each time the restore point's name
// holds a complete archive that restores to the same SQL, anything else is
// a partial file, and the next run removes it and finishes the compression.
func TestKillNineDuringTheCompressionLeavesAUsableRestorePoint(t *testing.T) {
	db, d := setup(t)
	// Enough data that writing and verifying the copy take a while.
	execSQL(t, db, `create table filler as select g, md5(g::text) || repeat(md5((g * 7)::text), 4) as t from generate_series(1, 400000) g`)
	bin := filepath.Join(t.TempDir(), "openwatch")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/openwatch").CombinedOutput(); err != nil {
		t.Fatalf("build openwatch: %v\n%s", err, out)
	}
	conf := filepath.Join(t.TempDir(), "upgrade.conf") // defaults: BACKUP_COMPRESSION=1
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "backups")
	path := deferredBackup(t, d, dir, &bytes.Buffer{})
	mustCompressed(t, path, false)
	original := sqlOf(t, path)

	export := func() *exec.Cmd {
		cmd := exec.Command(bin, "--config", conf, "--secrets", "/nonexistent/secrets.env", "backup", "--export", "--dir", dir)
		cmd.Env = append(os.Environ(), "OPENWATCH_DATABASE_DSN="+db.URL())
		return cmd
	}
	check := func(when string) {
		t.Helper()
		rps, err := List(dir)
		if err != nil || len(rps) != 1 || rps[0].Name != path {
			t.Fatalf("%s: restore points %v, %v; want only %s", when, rps, err, path)
		}
		if got := sqlOf(t, path); got != original {
			t.Fatalf("%s: %s no longer restores to the same SQL", when, path)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != filepath.Base(path) && !strings.HasSuffix(e.Name(), ".partial") {
				t.Fatalf("%s: %s left in the directory", when, e.Name())
			}
		}
	}
	for _, kill := range []struct {
		when string
		now  func(pid int) bool
	}{
		{"while it writes the compressed copy", func(int) bool {
			m, _ := filepath.Glob(filepath.Join(dir, PartialPattern))
			return len(m) > 0
		}},
		{"while it verifies the compressed copy", func(pid int) bool { return childPid(pid, "pg_restore") > 0 }},
	} {
		cmd := export()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for !kill.now(cmd.Process.Pid) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if compressed, _ := ArchiveCompressed(path); compressed {
			t.Fatalf("killed %s, but the compression had finished already: the test needs more data", kill.when)
		}
		check("killed " + kill.when)
	}

	var stderr bytes.Buffer
	cmd := export()
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != path {
		t.Fatalf("backup --export after the kills: %v, stdout %q\n%s", err, out, stderr.String())
	}
	if !strings.Contains(stderr.String(), "removed a partial restore point left by an interrupted run") {
		t.Errorf("the rerun did not say it removed the partial file:\n%s", stderr.String())
	}
	mustCompressed(t, path, true)
	check("after the rerun")
	if m, _ := filepath.Glob(filepath.Join(dir, PartialPattern)); len(m) != 0 {
		t.Errorf("partial files left: %v", m)
	}
}

// childPid is the pid of a child of parent named name, or 0.
func childPid(parent int, name string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		var pid, ppid int
		var comm, st string
		if _, err := fmt.Sscanf(string(stat), "%d %s %s %d", &pid, &comm, &st, &ppid); err == nil && ppid == parent && comm == "("+name+")" {
			return pid
		}
	}
	return 0
}

// TestAnUncompressedDumpThatRunsOutOfRoomIsTakenCompressed: values the
// server stores compressed (TOAST) take little room in the database and
// all of it in an uncompressed dump, so the room rule lets the dump start
// uncompressed and the disk fills; the backup says so and takes the file
// compressed, as before.
func TestAnUncompressedDumpThatRunsOutOfRoomIsTakenCompressed(t *testing.T) {
	db, d := setup(t)
	execSQL(t, db, `create table toasted as select g, repeat('openwatch ', 100000) as t from generate_series(1, 150) g`) // 150 MB as text
	var size int64
	fmt.Sscan(query(t, db, `select pg_database_size(current_database())`), &size)
	if size > 40<<20 {
		t.Fatalf("the database takes %d bytes: the server did not compress the values", size)
	}
	dir := mountTmpfs(t, fmt.Sprintf("size=%d,mode=0700", 2*size+96<<20)) // room by the rule, not for 150 MB
	var progress bytes.Buffer
	path := deferredBackup(t, d, dir, &progress)
	mustCompressed(t, path, true)
	if !strings.Contains(progress.String(), "ran out of room for the uncompressed file; writing it compressed instead") {
		t.Errorf("progress does not say why it compressed after all:\n%s", progress.String())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v, want only the restore point", entries)
	}
}
