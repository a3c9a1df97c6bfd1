// Package dump takes and restores restore points: pg_dump custom-format
// archives written under a temporary name, verified, renamed into place, and
// restored in one transaction. Connection parameters reach pg_dump, pg_restore
// and psql only through PG* environment variables.
package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PrepareDir creates dir 0700 if it is missing and refuses a directory that
// others could write to or that someone else owns.
func PrepareDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("backup directory %q must be an absolute path", dir)
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("create backup directory: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create backup directory: %w", err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	return checkDir(dir, fi)
}

// CheckDir refuses an existing backup directory that is not a directory,
// that others could write to, or that someone else owns; it creates nothing
// (the preflight's check). A symlink to a directory is followed.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	return checkDir(dir, fi)
}

func checkDir(dir string, fi os.FileInfo) error {
	if !fi.IsDir() {
		return fmt.Errorf("backup directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("backup directory %s is group- or world-writable (mode %04o); fix it with: chmod 0700 %s", dir, fi.Mode().Perm(), dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("backup directory %s is owned by uid %d, not by the user running openwatch (uid %d); fix it with: chown %d %s",
			dir, st.Uid, os.Geteuid(), os.Geteuid(), dir)
	}
	return nil
}

// renameNoReplace renames atomically without ever replacing an existing
// restore point. renameio's temporary names (".<target><random>") do not
// follow the ".openwatch-*.partial" contract, so the rename is done here, as
// renameio would, with RENAME_NOREPLACE where the file system supports it.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, statErr := os.Lstat(to); statErr == nil {
			return fmt.Errorf("%s: %w", to, fs.ErrExist)
		}
		return os.Rename(from, to)
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s: %w", to, fs.ErrExist)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// freeBytes is the space available to us in dir, or, while dir does not
// exist yet, in the nearest directory above it that does.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	for {
		err := syscall.Statfs(dir, &st)
		if errors.Is(err, syscall.ENOENT) && filepath.Dir(dir) != dir {
			dir = filepath.Dir(dir)
			continue
		}
		if err != nil {
			return 0, err
		}
		return int64(st.Bavail) * int64(st.Bsize), nil
	}
}

// DefaultBackupLockTimeout is how long Backup waits for another backup
// writing into the same directory.
const DefaultBackupLockTimeout = 5 * time.Minute

// ErrBackupBusy means another openwatch backup held the backup directory's
// lock for longer than the lock timeout.
var ErrBackupBusy = errors.New("another openwatch backup is writing to the backup directory")

// dirLock is an exclusive flock on the backup directory itself (no lock file
// that could be mistaken for anything). Every writer of partial files holds
// it, and the kernel drops it when the holder dies, even by kill -9.
type dirLock struct{ f *os.File }

// lockDir takes the lock, saying once on progress that it waits, and gives
// up after timeout or when ctx ends. On a file system without flock for
// directories (some network file systems) it returns an unheld lock after
// saying so: the backup goes on, but leaves partial files alone.
func lockDir(ctx context.Context, dir string, timeout time.Duration, progress io.Writer) (*dirLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	deadline := time.Now().Add(timeout)
	for said := false; ; {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &dirLock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			if progress != nil {
				fmt.Fprintf(progress, "cannot lock %s (%v): partial files of interrupted runs are left in place\n", dir, err)
			}
			return &dirLock{}, nil
		}
		if !said && progress != nil {
			fmt.Fprintf(progress, "waiting up to %s for another openwatch backup to finish writing to %s…\n", timeout, dir)
			said = true
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w %s (waited %s)", ErrBackupBusy, dir, timeout)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock on %s: %w", dir, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// held reports a lock actually taken.
func (l *dirLock) held() bool { return l.f != nil }

func (l *dirLock) unlock() {
	if l.f != nil {
		l.f.Close()
	}
}

// tryLockDir takes the lock only if it is free at once.
func tryLockDir(dir string) (*dirLock, bool) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, false
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return &dirLock{f: f}, true
}

// stalePartials lists the regular .openwatch-*.partial files in dir. Called
// with the directory locked, they are what killed runs left behind: every
// writer of such a file holds the lock while it exists.
func stalePartials(dir string) []string {
	matches, _ := filepath.Glob(filepath.Join(dir, PartialPattern))
	var files []string
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() {
			files = append(files, m)
		}
	}
	return files
}

// removeStalePartials removes them (the directory must be locked), saying so
// on progress.
func removeStalePartials(dir string, progress io.Writer) error {
	for _, p := range stalePartials(dir) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove a partial restore point left by an interrupted run: %w", err)
		}
		if progress != nil {
			fmt.Fprintf(progress, "removed a partial restore point left by an interrupted run: %s\n", filepath.Base(p))
		}
	}
	return nil
}

// allocated is the space a file takes on disk, which removing it frees.
func allocated(path string) int64 {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}
