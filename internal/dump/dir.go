// Package dump takes and restores restore points: pg_dump custom-format
// archives written under a temporary name, verified, renamed into place, and
// restored in one transaction. Connection parameters reach pg_dump, pg_restore
// and psql only through PG* environment variables.
package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FileName is the restore point name of docs/INTERFACES.md:
// openwatch_<package-version>_schema-<version>_<UTC yyyymmddThhmmssZ>.dump.
func FileName(pkgVersion, schemaVersion string, t time.Time) string {
	if schemaVersion == "" {
		schemaVersion = "none"
	}
	return fmt.Sprintf("openwatch_%s_schema-%s_%s.dump",
		unsafeChars.ReplaceAllString(pkgVersion, "_"), schemaVersion, t.UTC().Format("20060102T150405Z"))
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9.+~-]`)

// PartialPattern is the os.CreateTemp pattern of files being written.
const PartialPattern = ".openwatch-*.partial"

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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// freeBytes is the space available to us in dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
