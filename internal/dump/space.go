package dump

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/progress"
)

// The estimate's margin over the newest restore point: the data grows between
// two upgrades, and the file system needs some room of its own.
const (
	marginPercent = 20
	marginBytes   = 64 << 20
)

// SpaceEstimate says how much room a new restore point needs and has.
//
// Need is the newest earlier restore point's size plus 20% and 64 MiB, but
// never more than the database's size: pg_dump's custom format holds no
// indexes and no free space and is compressed, so it is smaller than
// pg_database_size, typically about a fifth at BACKUP_COMPRESSION=1. With
// no earlier restore point, Need is the database's size. The growth since the
// earlier restore point is unknown (nothing records the database's size at
// the time); a dump that outgrows the estimate fails with "No space left on
// device" and leaves no file.
type SpaceEstimate struct {
	Dir          string
	Need         int64  // bytes
	Free         int64  // available to openwatch, counting stale partial files a backup removes first
	DBSize       int64  // pg_database_size
	Previous     string // the restore point Need scales from; "" when Need is the database's size
	PreviousSize int64
}

// EstimateNeed connects to the database and estimates the space a backup into
// dir needs and has, without changing anything; dir need not exist yet. Call
// Check on the result to refuse before anything is stopped; Backup does the
// same after taking the directory's lock.
func EstimateNeed(ctx context.Context, d *dsn.DSN, dir string) (SpaceEstimate, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return SpaceEstimate{}, err
	}
	defer conn.Close(context.Background())
	size, err := databaseSize(ctx, conn)
	if err != nil {
		return SpaceEstimate{}, d.Redactor.Error(err)
	}
	e, err := estimate(dir, size)
	if err != nil {
		return e, err
	}
	// Partial files left by killed runs are freed by the backup before it
	// dumps, but only if no backup is writing one right now.
	if l, ok := tryLockDir(dir); ok {
		for _, p := range stalePartials(dir) {
			e.Free += allocated(p)
		}
		l.unlock()
	}
	return e, nil
}

// estimate computes Need and Free for a restore point of a database of
// dbSize bytes in dir, ignoring partial files.
func estimate(dir string, dbSize int64) (SpaceEstimate, error) {
	e := SpaceEstimate{Dir: dir, DBSize: dbSize, Need: dbSize}
	e.Previous, e.PreviousSize = newestRestorePoint(dir)
	if e.Previous != "" {
		if scaled := e.PreviousSize + e.PreviousSize*marginPercent/100 + marginBytes; scaled < e.Need {
			e.Need = scaled
		}
	}
	free, err := freeBytes(dir)
	if err != nil {
		return e, fmt.Errorf("check free space in %s: %w", dir, err)
	}
	e.Free = free
	return e, nil
}

// NeedUncompressed is the room an upgrade's restore point needs to be
// written uncompressed and compressed after the start
// (BackupOptions.DeferCompression): the uncompressed file (the database's
// size and 64 MiB) and its compressed copy (Need) side by side.
func (e SpaceEstimate) NeedUncompressed() int64 { return e.Need + uncompressedNeed(e.DBSize) }

// FitsUncompressed reports whether there is that room; without it, the
// file is compressed as it is written, which needs only Need.
func (e SpaceEstimate) FitsUncompressed() bool { return e.Free >= e.NeedUncompressed() }

// Check returns a *SpaceError when the restore point will not fit.
func (e SpaceEstimate) Check() error {
	if e.Free < e.Need {
		return &SpaceError{Estimate: e}
	}
	return nil
}

// SpaceError refuses a backup that would not fit, before pg_dump runs.
type SpaceError struct{ Estimate SpaceEstimate }

func (e *SpaceError) Error() string {
	s := e.Estimate
	basis := "the database's size, as there is no earlier restore point to estimate from"
	if s.Previous != "" && s.Need < s.DBSize {
		basis = fmt.Sprintf("the newest restore point, %s, is %s; plus %d%% and %s for growth; the database is %s",
			filepath.Base(s.Previous), progress.Bytes(s.PreviousSize), marginPercent, progress.Bytes(marginBytes), progress.Bytes(s.DBSize))
	} else if s.Previous != "" {
		basis = "the database's size, less than the newest restore point plus a margin"
	}
	return fmt.Sprintf("not enough free space in %s: %s free, the restore point needs about %s (%s); free some space (old restore points: %s) or set BACKUP_DIR in %s to a larger file system",
		s.Dir, progress.Bytes(s.Free), progress.Bytes(s.Need), basis, filepath.Join(s.Dir, FileGlob), defaults.ConfigPath)
}

// newestRestorePoint returns the newest restore point in dir (as List
// orders them) and its size ("", 0 when there is none).
func newestRestorePoint(dir string) (string, int64) {
	rps, _ := List(dir)
	if len(rps) == 0 {
		return "", 0
	}
	return rps[0].Name, rps[0].Size
}
