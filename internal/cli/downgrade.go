package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/version"
)

// ExitNoWayDown: migrate --to refused to go down, before changing anything:
// a migration on the way has an empty down section, or none is stored for a
// migration this binary does not ship. The message names the restore point
// that is the only way back.
const ExitNoWayDown = 21

// toHelp is the --to part of migrate --help.
const toHelp = `  --to VERSION     move the schema to VERSION: up with this binary's
                   migrations, or down with the down sections stored in the
                   database when each migration was applied (so also those
                   of a newer release this binary does not ship), each in its
                   own transaction, after a restore point. Refused before
                   anything changes when a migration on the way down has an
                   empty down section (exit 21): the restore point is then the
                   only way back, and it loses the rows written since.
                   With --preflight: only check, changing nothing, whether
                   it can (going up: the preflight of the migrations up to
                   VERSION; going down: every one has a way down)
`

// migrateTo is migrate --to VERSION.
func (a *app) migrateTo(ctx context.Context, cfg config.Config, d *dsn.DSN, f migrateFlags) int {
	again := "openwatch migrate --to " + f.to
	conn, code := a.connectToChange(ctx, cfg, d, again)
	// Everything below reads, until a.down or a.apply.
	if conn == nil {
		return code
	}
	s, err := migrate.ReadState(ctx, conn, a.migrations)
	conn.Close(context.Background())
	if err != nil {
		a.errorf("%v", d.Redactor.Error(err))
		return ExitError
	}
	known, err := migrate.Known(a.migrations)
	if err != nil {
		a.errorf("%v", err)
		return ExitError
	}
	if f.to == s.Current {
		fmt.Fprintf(a.Stdout, "nothing to do: the schema is at %s\n", f.to)
		return ExitOK
	}
	if !contains(s.Applied, f.to) {
		for _, m := range known {
			if m.Version == f.to {
				// Up: the forward path, with this binary's migrations up to
				// f.to only.
				a.migrations = migrate.UpTo(a.migrations, known, m)
				if f.preflight {
					return a.preflight(ctx, cfg, d, f)
				}
				return a.apply(ctx, cfg, d, f)
			}
		}
	}
	if f.preflight {
		return a.downPreflight(ctx, cfg, d, f, again)
	}
	return a.down(ctx, cfg, d, f, again)
}

// downPreflight is migrate --to VERSION --preflight going down: whether
// every migration above VERSION has a way down, and where the restore point
// goes; it changes nothing.
func (a *app) downPreflight(ctx context.Context, cfg config.Config, d *dsn.DSN, f migrateFlags, again string) int {
	s, plan, err := migrate.PlanDown(ctx, migrate.Options{DSN: d, FS: a.migrations, Out: a.Stdout}, f.to)
	if err != nil {
		return a.downResult(ctx, cfg, d, migrate.DownResult{Before: s}, err, "", "", f.to, again)
	}
	fmt.Fprintf(a.Stdout, "preflight: %d migration(s) to roll back, newest first: %s\n", len(plan), names(plan))
	dir := cfg.BackupDir
	if f.backupDir != "" {
		dir = f.backupDir
	}
	if a.backupPolicy(cfg, f, true) == "" {
		if problem := checkBackupDir(dir); problem != "" {
			a.errorf("preflight: %s\nNothing was changed. Fix it, then run: %s", problem, a.next(again+" --preflight"))
			return ExitBackupFailed
		}
	}
	fmt.Fprintf(a.Stdout, "preflight: ready; migrate --to %s keeps the rows in the tables that remain (the down sections are not rehearsed)\n", f.to)
	return ExitOK
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// down takes the schema down to f.to with the stored down sections.
func (a *app) down(ctx context.Context, cfg config.Config, d *dsn.DSN, f migrateFlags, again string) int {
	var restorePoint, noBackupReason string
	res, err := migrate.Down(ctx, migrate.Options{
		DSN: d, FS: a.migrations, Out: a.Stdout, LockTimeout: cfg.MigrateLockTimeout, LockWait: cfg.MigrationLockWait,
		BeforeApply: func(ctx context.Context, s migrate.State, hasData bool) error {
			noBackupReason = a.backupPolicy(cfg, f, hasData)
			if noBackupReason != "" {
				fmt.Fprintf(a.Stdout, "no restore point: %s\n", noBackupReason)
				return nil
			}
			dir := cfg.BackupDir
			if f.backupDir != "" {
				dir = f.backupDir
			}
			path, err := dump.Backup(ctx, dump.BackupOptions{DSN: d, Dir: dir, PackageVersion: version.Version,
				Compression: cfg.BackupCompression, Progress: a.Stderr})
			if err != nil {
				return err
			}
			restorePoint = path
			fmt.Fprintf(a.Stdout, "restore point: %s\n", path)
			return nil
		},
	}, f.to)
	code := a.downResult(ctx, cfg, d, res, err, restorePoint, noBackupReason, f.to, again)
	changed := schemaChanged(err)
	if err == nil && len(res.RolledBack) > 0 {
		changed = "yes"
	} else if err == nil {
		changed = "no"
	}
	a.recordAttempt(context.WithoutCancel(ctx), d, f.attempt, restorePoint, changed, code)
	return code
}

func (a *app) downResult(ctx context.Context, cfg config.Config, d *dsn.DSN, res migrate.DownResult, err error,
	restorePoint, noBackupReason, target, again string) int {
	var noWay *migrate.NoWayDownError
	var noDown *migrate.NoDownError
	var mismatch *migrate.DownMismatchError
	var unknown *migrate.UnknownTargetError
	var failed *migrate.DownFailedError
	var interrupted *migrate.InterruptedError
	var backup *migrate.BackupError
	var sum *migrate.ChecksumError
	switch {
	case err == nil:
		fmt.Fprintf(a.Stdout, "rolled back %d migration(s): %s; schema now at %s. The rows in the tables that remain are kept.\n",
			len(res.RolledBack), names(res.RolledBack), target)
		return ExitOK
	case errors.As(err, &noWay):
		a.errorf("%v", noWay)
		a.onlyRestorePoint(ctx, cfg, d, res.Before, target)
		return ExitNoWayDown
	case errors.As(err, &noDown):
		a.errorf("%v", noDown)
		a.onlyRestorePoint(ctx, cfg, d, res.Before, target)
		return ExitNoWayDown
	case errors.As(err, &mismatch):
		a.errorf("%v", mismatch)
		a.onlyRestorePoint(ctx, cfg, d, res.Before, target)
		return ExitNoWayDown
	case errors.As(err, &unknown):
		a.errorf("%v\nNothing was changed. Name an applied version or one of this binary's migrations (openwatch migrate --status lists them).", unknown)
		return ExitUsage
	case errors.As(err, &sum):
		a.errorf("%v", sum)
		return ExitChecksum
	case errors.As(err, &backup) && ctx.Err() != nil:
		a.errorf("interrupted while taking the restore point; nothing was rolled back and no restore point was left.\nTo go down, run: %s", a.next(again))
		return ExitInterrupted
	case errors.As(err, &backup):
		a.errorf("%v\nNothing was rolled back. Fix the cause, then run: %s", backup, a.next(again))
		return ExitBackupFailed
	case errors.As(err, &interrupted):
		a.errorf("interrupted (%v) before rolling back %s; rolled back completely in this run: %s; the schema is at %s.",
			interrupted.Err, orNone(names(interrupted.NotApplied)), orNone(names(interrupted.Applied)), schemaBelow(res.Before, interrupted.Applied))
		a.restoreHint(restorePoint, noBackupReason)
		fmt.Fprintf(a.Stderr, "To roll back the rest, run: %s\n", a.next(again))
		return ExitInterrupted
	case errors.As(err, &failed):
		a.errorf("%v", failed)
		fmt.Fprintf(a.Stderr, "rolled back in this run: %s\n", orNone(names(failed.RolledBack)))
		if failed.NonTransactional {
			fmt.Fprintf(a.Stderr, "failed (NOT undone: its down section runs outside a transaction): %s\n", failed.Failed.Name)
		} else {
			fmt.Fprintf(a.Stderr, "failed (its down section was rolled back; it stays applied): %s\n", failed.Failed.Name)
		}
		fmt.Fprintf(a.Stderr, "not rolled back: %s\nthe schema is at %s.\n", orNone(names(failed.NotRolledBack)), schemaBelow(res.Before, failed.RolledBack))
		if restorePoint != "" {
			fmt.Fprintf(a.Stderr, "restore point: %s\nTo put the database back as it was before this run:\n  openwatch restore --yes %s\n", restorePoint, restorePoint)
		} else {
			fmt.Fprintf(a.Stderr, "no restore point was taken (%s).\n", orNone(noBackupReason))
		}
		fmt.Fprintf(a.Stderr, "Or fix the cause, then run: %s\n", a.next(again))
		if failed.NonTransactional {
			return ExitFailedPartly
		}
		return ExitFailed
	case errors.Is(err, migrate.ErrLockTimeout):
		a.errorf("%v\nNothing was rolled back. Wait for it to finish, then run: %s", err, a.next(again))
		return ExitLockTimeout
	}
	var unreachable *dsn.UnreachableError
	if errors.As(err, &unreachable) {
		return a.unreachable(err, cfg)
	}
	a.errorf("%v", d.Redactor.Error(err))
	return ExitError
}

// schemaBelow is the schema version once the newest of the applied versions
// in before were rolled back.
func schemaBelow(before migrate.State, rolledBack []migrate.Migration) string {
	n := len(before.Applied) - len(rolledBack)
	if n <= 0 {
		return "none"
	}
	return before.Applied[n-1]
}

// onlyRestorePoint names the way back that remains when the schema cannot go
// down: a restore point taken with the target schema, and what it costs.
func (a *app) onlyRestorePoint(ctx context.Context, cfg config.Config, d *dsn.DSN, s migrate.State, target string) {
	var match []string
	for _, rp := range a.restorePoints(ctx, cfg, d) {
		if rp.SchemaVersion == target {
			match = append(match, rp.Name)
		}
	}
	if len(match) == 0 {
		fmt.Fprintf(a.Stderr, "No restore point with schema %s is in %s or on the database server: the schema cannot go back to %s."+
			" Keep this version (the schema stays at %s).\n", target, cfg.BackupDir, target, orNone(s.Current))
		return
	}
	fmt.Fprintf(a.Stderr, "The only way back is the restore point taken with schema %s (newest first: %s):\n  openwatch restore --yes %s\n"+
		"It replaces the whole database: every row written since that restore point was taken would be lost.\n"+
		"Or keep this version (the schema stays at %s).\n", target, strings.Join(match, ", "), match[0], orNone(s.Current))
}
