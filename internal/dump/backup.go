package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/fsync"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/progress"
)

// BackupOptions configure Backup.
type BackupOptions struct {
	DSN            *dsn.DSN
	Dir            string
	PackageVersion string
	Compression    string    // pg_dump --compress value
	Progress       io.Writer // progress lines; nil for none
	ProgressLabel  string    // names the step in them; "" is "backup"
	// LockTimeout bounds the wait for another backup into the same
	// directory; 0 means DefaultBackupLockTimeout.
	LockTimeout time.Duration
	// Taken is the time the file is named for; zero means when the dump
	// starts. A clone's export is named for when the clone was taken.
	Taken time.Time
}

// Backup writes a restore point into o.Dir and returns its path. On any
// failure no file that looks like a restore point is left behind.
//
// It holds an exclusive lock on o.Dir throughout, waiting at most
// o.LockTimeout for another backup (then an error wrapping ErrBackupBusy).
// Under the lock it removes partial files left by killed runs, then refuses
// with a *SpaceError, before pg_dump runs, a restore point that EstimateNeed's
// rule says will not fit.
func Backup(ctx context.Context, o BackupOptions) (string, error) {
	// Connect first: nothing is created for a database that cannot be reached.
	schema, dbSize, err := inspect(ctx, o.DSN)
	if err != nil {
		return "", err
	}
	if err := PrepareDir(o.Dir); err != nil {
		return "", err
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultBackupLockTimeout
	}
	lock, err := lockDir(ctx, o.Dir, o.LockTimeout, o.Progress)
	if err != nil {
		return "", err
	}
	defer lock.unlock()
	if lock.held() {
		if err := removeStalePartials(o.Dir, o.Progress); err != nil {
			return "", err
		}
	}
	space, err := estimate(o.Dir, dbSize)
	if err == nil {
		err = space.Check()
	}
	if err != nil {
		return "", err
	}
	started := time.Now()
	if !o.Taken.IsZero() {
		started = o.Taken
	}
	partial, err := writePartial(ctx, o)
	if err != nil {
		return "", err
	}
	defer os.Remove(partial) // no-op once renamed
	if _, err := Verify(ctx, o.DSN, partial); err != nil {
		return "", err
	}
	final, err := place(partial, o.Dir, o.PackageVersion, schema, started)
	if err != nil {
		return "", fmt.Errorf("move the restore point into place: %w", err)
	}
	if err := fsync.Dir(o.Dir); err != nil {
		return "", fmt.Errorf("sync %s: %w", o.Dir, err)
	}
	return final, nil
}

// place gives the verified partial file its restore point name, named for
// when the dump started; if a restore point of that second exists (two
// backups within a second), it takes the next free second instead.
func place(partial, dir, pkgVersion, schema string, t time.Time) (string, error) {
	for attempt := 0; ; attempt++ {
		final := filepath.Join(dir, FileName(pkgVersion, schema, t))
		err := renameNoReplace(partial, final)
		if !errors.Is(err, fs.ErrExist) || attempt == 2 {
			return final, err
		}
		time.Sleep(time.Until(t.Truncate(time.Second).Add(time.Second)))
		t = time.Now()
	}
}

// inspect returns the newest applied migration and the database size.
func inspect(ctx context.Context, d *dsn.DSN) (string, int64, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return "", 0, err
	}
	defer conn.Close(context.Background())
	applied, err := migrate.Applied(ctx, conn)
	if err != nil {
		return "", 0, d.Redactor.Error(err)
	}
	size, err := databaseSize(ctx, conn)
	if err != nil {
		return "", 0, d.Redactor.Error(err)
	}
	schema := ""
	if len(applied) > 0 {
		schema = applied[len(applied)-1]
	}
	return schema, size, nil
}

func databaseSize(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var size int64
	if err := conn.QueryRow(ctx, "select pg_database_size(current_database())").Scan(&size); err != nil {
		return 0, fmt.Errorf("read the database size: %w", err)
	}
	return size, nil
}

// writePartial runs pg_dump into a new .openwatch-*.partial file, fsynced and
// closed, and returns its path; on failure the file is removed.
func writePartial(ctx context.Context, o BackupOptions) (_ string, err error) {
	f, err := os.CreateTemp(o.Dir, PartialPattern)
	if err != nil {
		return "", fmt.Errorf("create a file in %s: %w", o.Dir, err)
	}
	path := f.Name()
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	cmd, stderr, err := command(ctx, o.DSN, "pg_dump", "--format=custom", "--compress="+o.Compression, "--no-password", "--file="+path)
	if err != nil {
		return "", err
	}
	label := o.ProgressLabel
	if label == "" {
		label = "backup"
	}
	stop := watchSize(o.Progress, label, path, previousSize(o.Dir))
	runErr := runChild(cmd)
	stop(runErr == nil)
	if runErr != nil {
		return "", childError(o.DSN, "pg_dump", runErr, stderr)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", path, err)
	}
	return path, f.Close()
}

// previousSize is the size of the newest restore point in dir: the estimate
// for the progress bar (0, no bar, when there is none).
func previousSize(dir string) int64 {
	_, size := newestRestorePoint(dir)
	return size
}

// watchSize reports the growing size of path until stop is called; estimate
// is the expected final size, the previous restore point's (0 if unknown).
func watchSize(w io.Writer, label, path string, estimate int64) (stop func(ok bool)) {
	step := progress.Step{Label: label, Total: estimate, TotalIsEstimate: true, Basis: "the previous restore point's size"}
	if estimate == 0 {
		step.Basis = "no earlier restore point in this directory"
	}
	return progress.Watch(progress.Start(w, step), func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			return 0
		}
		return fi.Size()
	})
}
