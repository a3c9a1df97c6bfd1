package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/progress"
)

// pruneRestorePoints is `openwatch backup --prune`, which the daily cleanup
// unit runs. Retention covers clones and files:
//
//   - clones (on the database server): a clone is kept until its exported
//     file exists (clone.Retain); a line for each clone dropped, and one for
//     each kept without a file;
//   - files in dir (default BACKUP_DIR): those older than
//     BACKUP_RETENTION_DAYS go, the newest always stays; a line for each
//     file removed, then a summary.
//
// Clones go first: whether a clone's file exists is read before the files
// are pruned. Files need upgrade.conf only; clones need the database. When
// it is unreachable or not configured, the files are pruned all the same and
// one line says that the clones were not checked and why.
func (a *app) pruneRestorePoints(ctx context.Context, dir string, list bool) int {
	if list {
		return a.usageError("backup: --list and --prune do not go together")
	}
	cfg, dir, ok := a.backupDirConf(dir, "nothing was pruned", "openwatch backup --prune")
	if !ok {
		return ExitConfig
	}
	// The daily run also keeps METRICS_DIR's file fresh (its age is what a
	// staleness alert watches) and its restore points current.
	defer a.writeMetrics(ctx)
	cloneCode, notChecked, next := a.pruneClones(ctx, cfg, dir)
	res, err := dump.Prune(dir, cfg.RetentionDays, time.Now(), func(rp dump.RestorePoint) {
		fmt.Fprintf(a.Stdout, "removed %s (taken %s)\n", rp.Name, rp.Created.Format(time.RFC3339))
	})
	if err != nil {
		a.errorf("pruning restore points: %v\n%d removed before the error. Fix the cause, then run: openwatch backup --prune", err, len(res.Removed))
		return ExitError
	}
	fmt.Fprintf(a.Stdout, "%d restore point(s) older than %d days removed from %s; %d kept (the newest is always kept)\n",
		len(res.Removed), cfg.RetentionDays, dir, res.Kept)
	// A compression an upgrade left undone (its background step killed,
	// or never run) is finished here, daily, after the old files went.
	if code := a.compressPending(ctx, cfg, dir, "openwatch backup --prune"); code != ExitOK {
		return code
	}
	if notChecked != "" {
		// One line, after the files' summary, so that it is the last word.
		fmt.Fprintf(a.Stderr, "openwatch: warning: clone restore points were not checked: %s; the files were pruned. %s, run: openwatch backup --prune\n", notChecked, next)
	}
	return cloneCode
}

// pruneClones applies the retention of clones. It returns the exit code of
// this part and, when the clones could not be checked, why and what to do
// before running it again.
//
// The database unreachable or not configured gives ExitUnreachable (12), as
// for every other command, and the cleanup unit lists 12 in
// SuccessExitStatus=: the daily timer does not turn failed every day on a
// machine whose database is down or not set up yet (the files, which need no
// database, were pruned), while the exit code stays true for anyone else
// running the command, and the journal shows the warning line on every run.
// Clones take no new room while the server is down. A DSN that is set but
// invalid is a configuration error (ExitConfig) like everywhere else: it
// breaks upgrades too, and the unit fails until it is fixed.
func (a *app) pruneClones(ctx context.Context, cfg config.Config, dir string) (code int, notChecked, next string) {
	d, code, notChecked, next := a.optionalDatabase(ctx, cfg, "checked", "openwatch backup --prune", cfg.DatabaseWait)
	if d == nil {
		return code, notChecked, next
	}
	dropErrs, err := a.retainClones(ctx, dir, d, "", true)
	a.sayKeptByRestores(ctx, d)
	if err != nil || len(dropErrs) > 0 {
		return ExitError, "", ""
	}
	return ExitOK, "", ""
}

// sayKeptByRestores prints a line for each database a restore by swap
// renamed aside and that is still there: never dropped here (the operator
// decides when the restore is confirmed good), but not forgotten either,
// since each is a full copy on the database server's disk.
func (a *app) sayKeptByRestores(ctx context.Context, d *dsn.DSN) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return // retainClones already said so
	}
	defer conn.Close(context.Background())
	kept, err := clone.Kept(ctx, conn, d.Config.Database)
	if err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: %v\n", d.Redactor.Error(err))
		return
	}
	for _, k := range kept {
		fmt.Fprintf(a.Stdout, "kept %s (%s on the database server): %s as it was before the restore at %s; drop it once you no longer need it: %s\n",
			k.Name, progress.Bytes(k.Size), d.Config.Database, k.Renamed.Format(time.RFC3339), clone.DropStatement(k.Name))
	}
}

// optionalDatabase reads the DSN and reaches the database for a command
// whose clone part needs it while the rest does not (backup --prune,
// backup --list). d is nil when it cannot: then code is ExitUnreachable
// with why the clones were not <done> and when to run it again (the
// database not configured for this user or at all, or unreachable after
// wait), or ExitConfig for a configuration error, printed here naming
// command.
func (a *app) optionalDatabase(ctx context.Context, cfg config.Config, done, command string, wait time.Duration) (d *dsn.DSN, code int, why, when string) {
	full, err := config.LoadOptions{ConfPath: a.configPath, SecretsPath: a.secretsPath, ConfRequired: a.configGiven}.Load()
	var secretsErr *config.SecretsError
	switch {
	case errors.As(err, &secretsErr):
		return nil, ExitUnreachable, fmt.Sprintf("the database is not configured for this user (%v)", oneLine(err.Error())), "As root"
	case err != nil:
		a.errorf("invalid configuration, no clone restore point was %s: %v\nFix it, then run: %s", done, err, command)
		return nil, ExitConfig, "", ""
	}
	for _, w := range full.Warnings {
		fmt.Fprintln(a.Stderr, "openwatch: warning:", w)
	}
	if full.DSN == "" {
		return nil, ExitUnreachable, fmt.Sprintf("no database is configured (%s is not set in the environment or in %s)", config.DSNVar, full.SecretsPath),
			"Once it is"
	}
	d, err = dsn.Parse(full.DSN)
	if err != nil {
		a.errorf("no clone restore point was %s: %v\nFix it (OPENWATCH_DATABASE_DSN is in %s), then run: %s", done, err, full.DSNSource, command)
		return nil, ExitConfig, "", ""
	}
	clearLibpqEnv()
	conn, err := d.ConnectWait(ctx, wait, func(err error) {
		fmt.Fprintf(a.Stderr, "openwatch: the database is not reachable yet (%v); waiting up to %s for it (DATABASE_WAIT_TIMEOUT in %s)…\n",
			oneLine(err.Error()), wait, a.configPath)
	})
	if err != nil {
		return nil, ExitUnreachable, oneLine(err.Error()), "Once PostgreSQL is reachable"
	}
	conn.Close(context.Background())
	return d, ExitOK, "", ""
}

// backupDirConf reads upgrade.conf without the DSN for a command on the
// restore points in dir (BACKUP_DIR when ""). On a configuration error it
// says so, that nothing was done and which command to run once it is
// fixed, and ok is false (ExitConfig).
func (a *app) backupDirConf(dir, nothingDone, command string) (cfg config.Config, _ string, ok bool) {
	cfg, err := config.LoadOptions{ConfPath: a.configPath, ConfRequired: a.configGiven, NoDSN: true}.Load()
	if err != nil {
		a.errorf("invalid configuration, %s: %v\nFix the file, then run: %s", nothingDone, err, command)
		return cfg, dir, false
	}
	if dir == "" {
		dir = cfg.BackupDir
	}
	return cfg, dir, true
}

// oneLine joins a multi-line message (a driver's one line per attempt).
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(dedupLines(s), "\n", "; ")), " ")
}
