package dump

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openwatch/openwatch/internal/pgtest"
)

const mib = 1 << 20

// fakeRestorePoint writes a restore point of size bytes (content irrelevant).
func fakeRestorePoint(t *testing.T, dir string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, FileName("1", "1", time.Unix(1000, 0)))
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTheEstimateScalesTheNewestRestorePointAndNeverExceedsTheDatabase(t *testing.T) {
	tests := []struct {
		name     string
		previous int64 // 0: none
		dbSize   int64
		want     int64
	}{
		{"without a restore point, the database's size", 0, 1000 * mib, 1000 * mib},
		{"with one, its size plus 20% and 64 MiB", 100 * mib, 1000 * mib, 120*mib + 64*mib},
		{"but never more than the database", 100 * mib, 150 * mib, 150 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.previous > 0 {
				f, _ := os.Create(filepath.Join(dir, FileName("1", "1", time.Now())))
				f.Truncate(tt.previous) // sparse: the size counts, not the blocks
				f.Close()
			}
			e, err := estimate(dir, tt.dbSize)
			if err != nil || e.Need != tt.want {
				t.Fatalf("Need = %d, %v; want %d", e.Need, err, tt.want)
			}
		})
	}
}

func TestARestorePointThatWouldNotFitIsRefusedBeforePgDumpRuns(t *testing.T) {
	// The estimate from the previous restore point: 40 MiB + 20% + 64 MiB
	// does not fit a 100 MiB file system that holds that restore point.
	dir := mountTmpfs(t, "size=100m,mode=0700")
	prev := fakeRestorePoint(t, dir, 40*mib)
	e, err := estimate(dir, 10000*mib)
	if err != nil {
		t.Fatal(err)
	}
	var space *SpaceError
	if err := e.Check(); !errors.As(err, &space) || !strings.Contains(err.Error(), filepath.Base(prev)) {
		t.Fatalf("Check = %v, want a SpaceError naming %s", err, filepath.Base(prev))
	}
	if e.Free > 60*mib || e.Need != 40*mib+8*mib+64*mib {
		t.Fatalf("free %d, need %d", e.Free, e.Need)
	}
	os.Truncate(prev, 10*mib) // 10 + 2 + 64 MiB fits in the 90 MiB now free
	if e, _ = estimate(dir, 10000*mib); e.Check() != nil {
		t.Fatalf("Check = %v for need %d, free %d", e.Check(), e.Need, e.Free)
	}

	// Against a real database, without a restore point: Backup refuses and
	// pg_dump never starts.
	_, d := setup(t)
	logDir := installShims(t)
	tiny := mountTmpfs(t, "size=256k,mode=0700")
	e, err = EstimateNeed(context.Background(), d, tiny)
	if err != nil || !errors.As(e.Check(), &space) || e.Need != e.DBSize || e.Free > 256<<10 {
		t.Fatalf("EstimateNeed = %+v, %v; want the database's size refused", e, err)
	}
	_, err = Backup(context.Background(), BackupOptions{DSN: d, Dir: tiny, PackageVersion: "1", Compression: "1"})
	if !errors.As(err, &space) || !strings.Contains(err.Error(), "not enough free space in "+tiny) {
		t.Fatalf("Backup = %v, want a SpaceError", err)
	}
	if logs, _ := filepath.Glob(filepath.Join(logDir, "*.log")); len(logs) != 0 {
		t.Fatalf("pg_dump ran %d time(s) although the backup could not fit", len(logs))
	}
	assertNoDumps(t, tiny)
}

func TestEstimateNeedLooksAboveADirectoryNotCreatedYet(t *testing.T) {
	_, d := setup(t)
	fsys := mountTmpfs(t, "size=64m,mode=0700")
	e, err := EstimateNeed(context.Background(), d, filepath.Join(fsys, "not", "yet"))
	if err != nil || e.Free < 60*mib || e.Free > 64*mib {
		t.Fatalf("EstimateNeed = %+v, %v; want the tmpfs's free space", e, err)
	}
}

// A partial file left by a killed run fills the file system: the estimate
// counts it as free, and Backup removes it before it dumps.
func TestAStalePartialIsRemovedAndItsSpaceCounted(t *testing.T) {
	db, d := setup(t)
	dbSize, _ := strconv.ParseInt(query(t, db, "select pg_database_size(current_database())::text"), 10, 64)
	dir := mountTmpfs(t, "size="+strconv.FormatInt(dbSize+2*mib, 10)+",mode=0700")
	partial := filepath.Join(dir, ".openwatch-123.partial")
	if err := os.WriteFile(partial, make([]byte, dbSize), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := EstimateNeed(context.Background(), d, dir)
	if err != nil || e.Check() != nil {
		t.Fatalf("EstimateNeed = %+v, %v; Check = %v; want the partial counted as free", e, err, e.Check())
	}
	var progress bytes.Buffer
	path, err := Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1", Compression: "1", Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the partial file is still there: %v", err)
	}
	if _, err := Verify(context.Background(), d, path); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "removed a partial restore point left by an interrupted run: .openwatch-123.partial\n") {
		t.Fatalf("progress does not name the removed file: %q", progress.String())
	}
}

// holdLock takes the backup directory's lock as another backup would.
func holdLock(t *testing.T, dir string) (release func()) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

func TestABackupWaitsForAnotherBackupInTheSameDirectory(t *testing.T) {
	_, d := setup(t)
	// A file system of its own: free space on a shared one moves while other
	// tests write, and the comparison below must be exact.
	dir := mountTmpfs(t, "size=64m,mode=0700")
	partial := filepath.Join(dir, ".openwatch-1.partial")
	os.WriteFile(partial, []byte("being written by the other backup"), 0o600)
	release := holdLock(t, dir)
	if e, err := EstimateNeed(context.Background(), d, dir); err != nil || e.Free != mustFree(t, dir) {
		t.Fatalf("EstimateNeed = %+v, %v; a partial in use must not count as free", e, err)
	}

	progress := &syncBuffer{}
	type result struct {
		path string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		path, err := Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1", Compression: "1", Progress: progress, LockTimeout: time.Hour})
		done <- result{path, err}
	}()
	waitUntil(t, "Backup to say it waits", func() bool {
		return strings.Contains(progress.String(), "waiting up to 1h0m0s for another openwatch backup")
	})
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("the other backup's partial file was touched while it held the lock: %v", err)
	}
	release() // the other backup was killed: its partial is now stale
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(filepath.Base(r.path), "openwatch_") {
		t.Fatalf("after the wait: partial %v, restore point %s", err, r.path)
	}
}

func TestABackupGivesUpWhenTheLockIsHeldTooLong(t *testing.T) {
	_, d := setup(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".openwatch-1.partial"), nil, 0o600)
	holdLock(t, dir)
	var progress bytes.Buffer
	_, err := Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1", Compression: "1", Progress: &progress, LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrBackupBusy) || !strings.Contains(err.Error(), dir+" (waited 100ms)") {
		t.Fatalf("err = %v, want ErrBackupBusy naming %s", err, dir)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() != ".openwatch-1.partial" {
		t.Fatalf("directory holds %v, want only the other backup's partial file", entries)
	}
}

// Another writer fills the file system while pg_dump runs (a pg_dump shim
// does it just before the real one starts): the dump fails and no file stays.
func TestDiskFullDuringTheDumpLeavesNoFile(t *testing.T) {
	_, d := setup(t)
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := mountTmpfs(t, "size=64m,mode=0700")
	shims := t.TempDir()
	script := "#!/bin/sh\nhead -c 100000000 /dev/zero > " + dir + "/.filler 2>/dev/null\nexec " + filepath.Join(bin, "pg_dump") + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(shims, "pg_dump"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", shims+":"+os.Getenv("PATH"))
	_, err = Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1", Compression: "1"})
	if err == nil || !strings.Contains(err.Error(), "No space left on device") {
		t.Fatalf("err = %v, want pg_dump's no-space error", err)
	}
	if err := os.Remove(filepath.Join(dir, ".filler")); err != nil {
		t.Fatalf("the shim did not fill the file system: %v", err)
	}
	assertNoDumps(t, dir)
}

func mustFree(t *testing.T, dir string) int64 {
	t.Helper()
	free, err := freeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	return free
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
