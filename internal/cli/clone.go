package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/progress"
	"github.com/openwatch/openwatch/internal/version"
)

// cloneRestorePoint takes the restore point as a clone of the database when
// one is due (migrations pending, the schema holds data, a restore point is
// wanted) and RESTORE_POINT allows it and it is safe; it closes conn, which
// CREATE DATABASE needs gone. It returns the clone's name, or "" when the
// restore point is to be a file (taken later, under the migration lock).
func (a *app) cloneRestorePoint(ctx context.Context, cfg config.Config, d *dsn.DSN, conn *pgx.Conn, f migrateFlags) (string, error) {
	defer conn.Close(context.Background())
	mode, err := clone.ParseMode(cfg.RestorePoint)
	if err != nil || mode == clone.ModeFile || f.backupDir != "" || f.noBackup {
		return "", nil
	}
	s, err := migrate.ReadState(ctx, conn, a.migrations)
	if err != nil || s.Newer() || len(s.Pending) == 0 {
		return "", nil // migrate.Run reports these
	}
	hasData, err := migrate.HasUserObjects(ctx, conn)
	if err != nil || a.backupPolicy(cfg, f, hasData) != "" {
		return "", nil
	}
	dec, err := clone.Eligible(ctx, conn, clone.Options{Mode: mode})
	if err != nil {
		if mode == clone.ModeClone {
			return "", err
		}
		fmt.Fprintf(a.Stdout, "restore point: a file, not a clone (cannot tell whether a clone is safe: %v)\n", d.Redactor.Error(err))
		return "", nil
	}
	if dec.Method != clone.MethodClone {
		if mode == clone.ModeClone {
			return "", fmt.Errorf("RESTORE_POINT=clone in %s, but a clone cannot be taken: %s", a.configPath, dec.Reason)
		}
		fmt.Fprintf(a.Stdout, "restore point: a file, not a clone: %s\n", dec.Reason)
		return "", nil
	}
	size := dec.Space.DBSize
	if !dec.SpaceChecked {
		conn.QueryRow(ctx, "select pg_database_size(current_database())").Scan(&size)
	}
	method := clone.CopyPlain
	var serverVersion int
	if conn.QueryRow(ctx, "select current_setting('server_version_num')::int").Scan(&serverVersion) == nil && clone.FileCloneAvailable(serverVersion) {
		// Blocks are shared where the file system can: as measured last
		// time, else expected.
		method = clone.CopyClone
		if t, ok := clone.ReadTiming(a.timingPath()); ok && t.Method != "" {
			method = t.Method
		}
	}
	conn.Close(context.Background())
	fmt.Fprintf(a.Stderr, "cloning the database (%s) as the restore point…\n", progress.Bytes(size))
	started := time.Now()
	stop := progress.Watch(progress.Start(a.Stderr, a.cloneStep(size, method)), nil)
	p, err := clone.Create(ctx, d, "", clone.Meta{PackageVersion: version.Version, SchemaVersion: s.Current, Created: started.UTC()})
	stop(err == nil)
	if err != nil {
		if mode == clone.ModeClone {
			return "", err
		}
		fmt.Fprintf(a.Stdout, "restore point: a file, the clone failed: %v\n", d.Redactor.Error(err))
		return "", nil
	}
	took := time.Since(started)
	if p.CopyFallback != "" {
		fmt.Fprintf(a.Stdout, "clone: PostgreSQL 18's file cloning was not used: %s\n", d.Redactor.String(p.CopyFallback))
	}
	if size > 0 {
		// Best effort: without it the next clone has no time estimate.
		clone.WriteTiming(a.timingPath(), clone.Timing{Bytes: size, Duration: took, Method: p.CopyMethod})
	}
	why := ""
	if dec.Reason != "" {
		why = " (" + dec.Reason + ")"
	}
	fmt.Fprintf(a.Stdout, "restore point: %s, a clone of the database taken in %s (%s)%s\n",
		p.Name, took.Round(10*time.Millisecond), cloneCost(p), why)
	// Older clones whose files exist go now, before the migration, which
	// needs the room (a table rewrite, WAL). One without a file stays: after
	// a failed migration it is the only copy of the database from before the
	// upgrade, which this retry's clone no longer holds.
	a.retainClones(ctx, cfg.BackupDir, d, p.Name, false)
	return p.Name, nil
}

// cloneCost says what a clone cost on the server's file system, as
// measured: shared blocks or a copy, and the bytes written.
func cloneCost(p clone.Point) string {
	switch {
	case p.Written < 0 && p.CopyMethod == clone.CopyClone:
		return "file_copy_method = clone; whether the file system shared the blocks could not be measured: " + p.WrittenUnknown
	case p.Written < 0:
		return "a copy; what it wrote could not be measured: " + p.WrittenUnknown
	case p.CopyMethod == clone.CopyClone:
		return fmt.Sprintf("the file system shared the blocks: %s written for the database's %s", progress.Bytes(p.Written), progress.Bytes(p.Size))
	default:
		return fmt.Sprintf("a copy: %s written", progress.Bytes(p.Written))
	}
}

// timingPath is where the last clone's timing is kept: next to the journal.
func (a *app) timingPath() string {
	return filepath.Join(filepath.Dir(a.journalPath), clone.TimingFile)
}

// cloneStep describes a clone of size bytes for the progress lines:
// CREATE DATABASE reports no progress, so the time it takes is estimated
// from the previous clone's rate (recorded in timingPath), when there is one.
func (a *app) cloneStep(size int64, method string) progress.Step {
	step := progress.Step{Label: "clone", Timed: true, Size: size, Basis: "no earlier clone was timed"}
	if t, ok := clone.ReadTiming(a.timingPath()); ok {
		if step.Expected = t.Estimate(size, method); step.Expected > 0 {
			step.Basis = fmt.Sprintf("estimated from the previous clone: %s in %s", progress.Bytes(t.Bytes), progress.Duration(t.Duration))
		} else {
			step.Basis = "the previous clone copied its files another way"
		}
	}
	return step
}

// retainClones applies the retention of clones (clone.Retain) to the
// clones of d's database, with the exported files in dir: a line for each
// clone dropped, and, when sayKept, one for each clone kept without a
// file. keep, when not "", is never dropped (the clone just taken). It
// returns the errors of the drops that failed, each already printed.
func (a *app) retainClones(ctx context.Context, dir string, d *dsn.DSN, keep string, sayKept bool) (dropErrs []error, err error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: could not list the older clone restore points to drop them: %v\nDrop them later with: openwatch backup --prune\n", err)
		return nil, err
	}
	points, err := clone.List(ctx, conn)
	if err != nil {
		conn.Close(context.Background())
		err = d.Redactor.Error(err)
		fmt.Fprintf(a.Stderr, "openwatch: warning: could not list the clone restore points: %v\nThen run: openwatch backup --prune\n", err)
		return nil, err
	}
	incomplete, ierr := clone.Incomplete(ctx, conn, d.Config.Database)
	conn.Close(context.Background())
	if ierr != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: %v\n", d.Redactor.Error(ierr))
	}
	for _, name := range incomplete {
		if err := clone.DropIncomplete(ctx, d, name); err != nil {
			err = d.Redactor.Error(err)
			fmt.Fprintf(a.Stderr, "openwatch: warning: could not drop %s, a clone an interrupted openwatch migrate left without its restore point record: %v\nThen run: openwatch backup --prune\n", name, err)
			dropErrs = append(dropErrs, err)
			continue
		}
		fmt.Fprintf(a.Stdout, "dropped %s: a clone an interrupted openwatch migrate left without its restore point record (it never was a restore point)\n", name)
	}
	mine := points[:0]
	for _, p := range points {
		if p.Source == d.Config.Database {
			mine = append(mine, p)
		}
	}
	files, _ := dump.List(dir)
	for _, v := range clone.Retain(mine, func(p clone.Point) string { return exported(files, p) }) {
		p := v.Point
		taken := p.Created.Format(time.RFC3339)
		if !v.Drop || p.Name == keep {
			if sayKept && p.Name != keep {
				fmt.Fprintf(a.Stdout, "kept the clone restore point %s (taken %s, %s on the database server): it has no file yet; write it with: openwatch backup --export\n",
					p.Name, taken, progress.Bytes(p.Size))
			}
			continue
		}
		if err := clone.Drop(ctx, d, p.Name); err != nil {
			err = d.Redactor.Error(err)
			fmt.Fprintf(a.Stderr, "openwatch: warning: could not drop the clone restore point %s: %v\nThen run: openwatch backup --prune\n", p.Name, err)
			dropErrs = append(dropErrs, err)
			continue
		}
		fmt.Fprintf(a.Stdout, "dropped the clone restore point %s (taken %s): its file %s exists\n", p.Name, taken, v.File)
	}
	return dropErrs, nil
}

// exportClones writes each clone restore point to the usual verified file in
// dir, then drops the clone: the portable restore point, made while the
// service runs again. Idempotent: a clone whose file exists is only dropped.
func (a *app) exportClones(ctx context.Context, cfg config.Config, d *dsn.DSN, dir string) int {
	conn, code := a.connect(ctx, cfg, d)
	if conn == nil {
		return code
	}
	points, err := clone.List(ctx, conn)
	conn.Close(context.Background())
	if err != nil {
		a.errorf("cannot list the clone restore points: %v", d.Redactor.Error(err))
		return ExitError
	}
	sort.Slice(points, func(i, j int) bool { return points[i].Created.Before(points[j].Created) })
	files, _ := dump.List(dir)
	for _, p := range points {
		if p.Source != d.Config.Database {
			continue
		}
		path := exported(files, p)
		if path == "" {
			fmt.Fprintf(a.Stderr, "exporting the clone restore point %s to %s…\n", p.Name, dir)
			path, err = dump.Backup(ctx, dump.BackupOptions{DSN: d.WithDatabase(p.Name), Dir: dir, PackageVersion: p.PackageVersion,
				Compression: cfg.BackupCompression, Progress: a.Stderr, ProgressLabel: "export", LockTimeout: cfg.MigrateLockTimeout, Taken: p.Created})
			if err != nil {
				a.errorf("could not export the clone restore point %s: %v\nIt is kept. Fix the cause, then run: openwatch backup --export", p.Name, err)
				return ExitBackupFailed
			}
		}
		if err := clone.Drop(ctx, d, p.Name); err != nil {
			a.errorf("exported %s to %s, but could not drop the clone: %v\nRun: openwatch backup --export", p.Name, path, d.Redactor.Error(err))
			return ExitError
		}
		fmt.Fprintln(a.Stdout, path)
	}
	return ExitOK
}

// exported is the file already holding clone p, or "".
func exported(files []dump.RestorePoint, p clone.Point) string {
	want := dump.FileName(p.PackageVersion, p.SchemaVersion, p.Created)
	for _, f := range files {
		if filepath.Base(f.Name) == want {
			return f.Name
		}
	}
	return ""
}

// restorePoints lists the files in BACKUP_DIR and the clones on the
// server, newest first.
func (a *app) restorePoints(ctx context.Context, cfg config.Config, d *dsn.DSN) []dump.RestorePoint {
	rps, err := dump.List(cfg.BackupDir)
	if err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot list restore points in %s: %v\n", cfg.BackupDir, err)
	}
	rps = append(rps, a.clonePoints(ctx, d)...)
	sortNewestFirst(rps)
	return rps
}

// clonePoints lists the clone restore points of d's database, with a
// warning when they cannot be read.
func (a *app) clonePoints(ctx context.Context, d *dsn.DSN) []dump.RestorePoint {
	conn, err := d.Connect(ctx)
	if err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot list clone restore points: %v\n", d.Redactor.Error(err))
		return nil
	}
	points, err := clone.List(ctx, conn)
	conn.Close(context.Background())
	if err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot list clone restore points: %v\n", d.Redactor.Error(err))
	}
	var rps []dump.RestorePoint
	for _, p := range points {
		if p.Source == d.Config.Database {
			rps = append(rps, dump.RestorePoint{Name: p.Name, Kind: p.Kind, Created: p.Created,
				PackageVersion: p.PackageVersion, SchemaVersion: p.SchemaVersion, Size: p.Size})
		}
	}
	return rps
}

func sortNewestFirst(rps []dump.RestorePoint) {
	sort.SliceStable(rps, func(i, j int) bool { return rps[i].Created.After(rps[j].Created) })
}

// restoreClone swaps clone name in for the service's database.
func (a *app) restoreClone(ctx context.Context, cfg config.Config, d *dsn.DSN, name string, yes bool) int {
	if !yes {
		if code, ok := a.confirm(d, name, dump.Archive{Database: d.Config.Database, Created: "the time in its name"},
			"The database as it is now is kept under another name, with the changes made since, until you drop it."); !ok {
			return code
		}
	}
	conn, code := a.connectToChange(ctx, cfg, d, "openwatch restore --yes "+name)
	if conn == nil {
		return code
	}
	conn.Close(context.Background())
	fmt.Fprintf(a.Stderr, "restoring the clone %s into %s…\n", name, d.Describe())
	stop := progress.Watch(progress.Start(a.Stderr, progress.Step{Label: "restore", Timed: true, Basis: "a swap by renaming: no data is copied"}), nil)
	res, err := clone.Restore(ctx, d, name)
	stop(err == nil)
	var busy *clone.BusyError
	switch {
	case errors.As(err, &busy):
		a.errorf("%v\nThen run: openwatch restore --yes %s", err, name)
		return ExitError
	case err != nil:
		a.errorf("restore failed: %v\nThen run: openwatch restore --yes %s", d.Redactor.Error(err), name)
		return ExitError
	}
	fmt.Fprintf(a.Stdout, "the database %s is now the clone %s; the database as it was is kept as %s.\n"+
		"Drop it once you no longer need it: %s\n", res.Database, name, res.Kept, res.DropKept)
	if conn, err := d.Connect(ctx); err == nil {
		a.afterRestore(ctx, conn, name, res.Point.PackageVersion)
		conn.Close(context.Background())
	}
	return ExitOK
}
