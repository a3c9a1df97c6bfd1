package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/openwatch/openwatch/internal/fsync"
)

// PruneResult says what Prune did.
type PruneResult struct {
	Dir     string         // the directory pruned (BACKUP_DIR as given, not its symlink target)
	Removed []RestorePoint // oldest last, as List orders them
	Kept    int            // restore points left in Dir
}

// Prune removes the restore points in dir whose creation time (the UTC
// timestamp in the name) is older than retentionDays days before now. The
// newest restore point is always kept, however old. It follows the same
// symlink policy as Backup and List: dir itself may be a symlink to a
// directory (the restore points moved to a bigger disk), which is followed;
// a symlink inside dir is never followed nor removed, even when it is named
// like a restore point. A missing dir has nothing to prune; a dir that is a
// symlink to nothing is an error, since retention would otherwise be
// silently off. Each file is re-checked to be a regular file just before it
// is unlinked; removed is called after each removal, if not nil.
func Prune(dir string, retentionDays int, now time.Time, removed func(RestorePoint)) (PruneResult, error) {
	res := PruneResult{Dir: dir}
	if retentionDays < 0 {
		return res, fmt.Errorf("retention of %d days: must not be negative", retentionDays)
	}
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if _, err := os.Stat(dir); err != nil {
			target, _ := os.Readlink(dir)
			return res, fmt.Errorf("backup directory %s is a symlink to %s, which cannot be reached: %w", dir, target, err)
		}
	}
	rps, err := List(dir)
	if err != nil {
		return res, fmt.Errorf("list restore points in %s: %w", dir, err)
	}
	cutoff := now.Add(-time.Duration(retentionDays) * 24 * time.Hour)
	var errs []error
	for i, rp := range rps {
		if i == 0 || !rp.Created.Before(cutoff) {
			res.Kept++
			continue
		}
		// List saw a regular file; make sure it still is one, so that a
		// symlink put in its place is never removed.
		fi, err := os.Lstat(rp.Name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed by someone else meanwhile
		}
		if err != nil || !fi.Mode().IsRegular() {
			res.Kept++
			continue
		}
		if err := os.Remove(rp.Name); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				res.Kept++
			}
			continue
		}
		res.Removed = append(res.Removed, rp)
		if removed != nil {
			removed(rp)
		}
	}
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	if len(res.Removed) > 0 {
		if err := fsync.Dir(dir); err != nil {
			return res, fmt.Errorf("fsync %s: %w", dir, err)
		}
	}
	return res, nil
}
