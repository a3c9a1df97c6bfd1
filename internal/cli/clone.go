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
	conn.Close(context.Background())
	if dec.SpaceChecked {
		fmt.Fprintf(a.Stderr, "cloning the database (%s) as the restore point…\n", progress.Bytes(dec.Space.DBSize))
	} else {
		fmt.Fprintln(a.Stderr, "cloning the database as the restore point…")
	}
	started := time.Now()
	p, err := clone.Create(ctx, d, "", clone.Meta{PackageVersion: version.Version, SchemaVersion: s.Current, Created: started.UTC()})
	if err != nil {
		if mode == clone.ModeClone {
			return "", err
		}
		fmt.Fprintf(a.Stdout, "restore point: a file, the clone failed: %v\n", d.Redactor.Error(err))
		return "", nil
	}
	why := ""
	if dec.Reason != "" {
		why = " (" + dec.Reason + ")"
	}
	fmt.Fprintf(a.Stdout, "restore point: %s, a clone of the database taken in %s%s\n",
		p.Name, time.Since(started).Round(10*time.Millisecond), why)
	return p.Name, nil
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
				Compression: cfg.BackupCompression, Progress: a.Stderr, LockTimeout: cfg.MigrateLockTimeout, Taken: p.Created})
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

// restorePoints lists files in dir and the clones on the server, newest first.
func (a *app) restorePoints(ctx context.Context, cfg config.Config, d *dsn.DSN) []dump.RestorePoint {
	rps, err := dump.List(cfg.BackupDir)
	if err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot list restore points in %s: %v\n", cfg.BackupDir, err)
	}
	if conn, err := d.Connect(ctx); err == nil {
		points, err := clone.List(ctx, conn)
		conn.Close(context.Background())
		if err != nil {
			fmt.Fprintf(a.Stderr, "openwatch: warning: cannot list clone restore points: %v\n", d.Redactor.Error(err))
		}
		for _, p := range points {
			if p.Source == d.Config.Database {
				rps = append(rps, dump.RestorePoint{Name: p.Name, Kind: p.Kind, Created: p.Created,
					PackageVersion: p.PackageVersion, SchemaVersion: p.SchemaVersion, Size: p.Size})
			}
		}
	}
	sort.SliceStable(rps, func(i, j int) bool { return rps[i].Created.After(rps[j].Created) })
	return rps
}

// restoreClone swaps clone name in for the service's database.
func (a *app) restoreClone(ctx context.Context, cfg config.Config, d *dsn.DSN, name string, yes bool) int {
	if !yes {
		if code, ok := a.confirm(d, name, dump.Archive{Database: d.Config.Database, Created: "the time in its name"}); !ok {
			return code
		}
	}
	fmt.Fprintf(a.Stderr, "restoring the clone %s into %s…\n", name, d.Describe())
	res, err := clone.Restore(ctx, d, name)
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
		a.afterRestore(ctx, conn, name)
		conn.Close(context.Background())
	}
	return ExitOK
}
