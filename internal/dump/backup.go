package dump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

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
	// DeferCompression writes the restore point uncompressed (pg_dump
	// --compress=0), the fastest complete archive, when Compression can be
	// applied later (DeferrableLevel) and the directory has room for the
	// uncompressed file and its compressed copy: an upgrade takes it while
	// the service is stopped, and CompressPending compresses it once the
	// service runs. Otherwise, or when the uncompressed dump runs out of
	// room, the file is compressed as it is written, as without it.
	DeferCompression bool
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
	compression := o.Compression
	if o.DeferCompression {
		if _, ok := DeferrableLevel(o.Compression); ok {
			if space.FitsUncompressed() {
				compression = "0"
			} else if o.Progress != nil {
				fmt.Fprintf(o.Progress, "%s: compressed while it is written: %s has no room for it uncompressed (about %s) and its compressed copy\n",
					label(o), o.Dir, progress.Bytes(uncompressedNeed(dbSize)))
			}
		}
	}
	var t timings
	partial, err := writePartial(ctx, o, compression, &t)
	if err != nil && compression != o.Compression && errors.Is(err, errNoSpace) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "%s: %s ran out of room for the uncompressed file; writing it compressed instead\n", label(o), o.Dir)
		}
		compression = o.Compression
		partial, err = writePartial(ctx, o, compression, &t)
	}
	if err != nil {
		return "", err
	}
	defer os.Remove(partial) // no-op once renamed
	verifyStart := time.Now()
	if _, err := Verify(ctx, o.DSN, partial); err != nil {
		return "", err
	}
	t.verify = time.Since(verifyStart)
	final, err := place(partial, o.Dir, o.PackageVersion, schema, started)
	if err != nil {
		return "", fmt.Errorf("move the restore point into place: %w", err)
	}
	if err := fsync.Dir(o.Dir); err != nil {
		return "", fmt.Errorf("sync %s: %w", o.Dir, err)
	}
	if o.Progress != nil {
		deferred := ""
		if compression != o.Compression {
			deferred = "; uncompressed, to be compressed once the service runs (openwatch backup --export)"
		}
		fmt.Fprintf(o.Progress, "%s: %s in %s (pg_dump --compress=%s %s, sync %s, verify %s)%s\n", label(o), final,
			round(time.Since(t.begin)), compression, round(t.dump), round(t.sync), round(t.verify), deferred)
	}
	return final, nil
}

// timings are the parts of a backup, for its last line.
type timings struct {
	begin              time.Time
	dump, sync, verify time.Duration
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func label(o BackupOptions) string {
	if o.ProgressLabel == "" {
		return "backup"
	}
	return o.ProgressLabel
}

// uncompressedNeed is the room an uncompressed restore point is given
// before it is written: the database's size (an uncompressed archive holds
// the rows as text, without indexes or free space) and 64 MiB.
func uncompressedNeed(dbSize int64) int64 { return dbSize + marginBytes }

// errNoSpace marks a pg_dump that ran out of room.
var errNoSpace = errors.New("no space left on device")

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
// closed, and returns its path; on failure the file is removed. While
// pg_dump writes, the file's dirty pages are handed to the disk every
// flushInterval, so that the fsync at the end waits only for the last ones.
func writePartial(ctx context.Context, o BackupOptions, compression string, t *timings) (_ string, err error) {
	if t.begin.IsZero() {
		t.begin = time.Now()
	}
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
	cmd, stderr, err := command(ctx, o.DSN, "pg_dump", "--format=custom", "--compress="+compression, "--no-password", "--file="+path)
	if err != nil {
		return "", err
	}
	estimate, basis := previousSize(o.Dir), "the previous restore point's size"
	switch {
	case compression == "0" && compression != o.Compression:
		// Uncompressed, to be compressed later: the previous restore
		// point, compressed, says nothing about this size.
		estimate, basis = 0, "uncompressed: no estimate"
	case estimate == 0:
		basis = "no earlier restore point in this directory"
	}
	stop := watchSize(o.Progress, label(o), path, estimate, basis)
	stopFlush := flushWhileWriting(f)
	dumpStart := time.Now()
	runErr := runChild(cmd)
	t.dump = time.Since(dumpStart)
	stopFlush()
	stop(runErr == nil)
	if runErr != nil {
		err := childError(o.DSN, "pg_dump", runErr, stderr)
		if strings.Contains(stderr.String(), "No space left on device") {
			err = fmt.Errorf("%w (%w)", err, errNoSpace)
		}
		return "", err
	}
	syncStart := time.Now()
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", path, err)
	}
	t.sync = time.Since(syncStart)
	return path, f.Close()
}

// flushInterval is how often flushWhileWriting starts the write-back.
const flushInterval = 200 * time.Millisecond

// flushWhileWriting starts the write-back of f's dirty pages every
// flushInterval (sync_file_range SYNC_FILE_RANGE_WRITE: it does not wait
// for the disk, nor make anything durable; the fsync at the end does),
// until stop is called.
func flushWhileWriting(f *os.File) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(flushInterval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// previousSize is the size of the newest restore point in dir: the estimate
// for the progress bar (0, no bar, when there is none).
func previousSize(dir string) int64 {
	_, size := newestRestorePoint(dir)
	return size
}

// watchSize reports the growing size of path until stop is called; estimate
// is the expected final size, the previous restore point's (0 if unknown).
func watchSize(w io.Writer, label, path string, estimate int64, basis string) (stop func(ok bool)) {
	step := progress.Step{Label: label, Total: estimate, TotalIsEstimate: true, Basis: basis}
	return progress.Watch(progress.Start(w, step), func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			return 0
		}
		return fi.Size()
	})
}
