package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/migrate/rehearse"
	"github.com/openwatch/openwatch/internal/progress"
)

// rehearse is migrate --rehearse: the pending migrations on a scratch copy
// of the database, while the service runs.
func (a *app) rehearse(ctx context.Context, cfg config.Config, d *dsn.DSN) int {
	conn, code := a.connect(ctx, cfg, d) // waits for a database still starting
	if conn == nil {
		return code
	}
	conn.Close(context.Background())
	rep, err := rehearse.Run(ctx, a.rehearseOptions(cfg, d, true))
	again := a.next("openwatch migrate --rehearse")
	if err != nil {
		return a.rehearsalFailed(ctx, cfg, d, rep, err, "", again)
	}
	if len(rep.Pending) == 0 {
		fmt.Fprintf(a.Stdout, "nothing to rehearse: no migration is pending (schema at this binary's head)\n")
		return ExitOK
	}
	a.warnDropFailed(rep, "")
	fmt.Fprintf(a.Stdout, "rehearsal: all %d pending migration(s) succeeded on a copy of the database in %s; migrating should keep the service stopped about that long, plus stopping it and taking the restore point.\n"+
		"It cost %s in all (the copy: %s in %s on the database server, %s); the live database was only read.\n"+
		"To take a restore point, migrate, and start the service again if it ran, run: %s\n",
		len(rep.Steps), rehearse.Duration(rep.MigrationTime()), progress.Duration(rep.Total), progress.Bytes(rep.CopySize),
		progress.Duration(rep.CopyTook), copyFate(rep), a.next(config.DefaultUpgradeHelper))
	return ExitOK
}

// copyFate says what became of the scratch copy of a rehearsal that ran.
func copyFate(rep rehearse.Report) string {
	if rep.DropErr != nil {
		return "not dropped: see the warning above"
	}
	return "now dropped"
}

// warnDropFailed warns, when the rehearsal's copy could not be dropped,
// naming it and its DROP DATABASE: housekeeping that never fails a
// rehearsal that passed.
func (a *app) warnDropFailed(rep rehearse.Report, prefix string) {
	if rep.DropErr != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: %s%v\n", prefix, rep.DropErr)
	}
}

// dropRehearsalLeftovers drops the scratch copies killed rehearsals left
// (SIGKILL, or a run that could not drop its copy), before anything
// measures the server's free space, and says so; a copy that cannot be
// dropped now is a warning.
func (a *app) dropRehearsalLeftovers(ctx context.Context, d *dsn.DSN, prefix string) {
	dropped, err := rehearse.DropLeftovers(ctx, d)
	for _, n := range dropped {
		fmt.Fprintf(a.Stdout, "%sdropped %s, the scratch database of a rehearsal that was killed or could not drop it\n", prefix, n)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: %scould not drop the scratch databases earlier rehearsals left: %v\n", prefix, err)
	}
}

// printRehearsalLeftovers lists, for migrate --status, the scratch copies
// killed rehearsals left, each with the statement that drops it (the next
// preflight or rehearsal drops them too).
func (a *app) printRehearsalLeftovers(ctx context.Context, d *dsn.DSN) {
	ls, err := rehearse.ListLeftovers(ctx, d)
	if err != nil || len(ls) == 0 {
		return
	}
	fmt.Fprintf(a.Stdout, "rehearsal copies: %d left by rehearsals that were killed or could not drop them (the next preflight drops them)\n", len(ls))
	for _, l := range ls {
		started := "started at an unknown time"
		if !l.Started.IsZero() {
			started = "started " + l.Started.Format(time.RFC3339)
		}
		fmt.Fprintf(a.Stdout, "  %s  (%s, %s)  %s\n", l.Name, started, progress.Bytes(l.Size), l.DropStatement())
	}
}

func (a *app) rehearseOptions(cfg config.Config, d *dsn.DSN, uncheckedSpace bool) rehearse.Options {
	return rehearse.Options{DSN: d, FS: a.migrations, Out: a.Stdout, LockWait: cfg.MigrationLockWait, UncheckedSpace: uncheckedSpace}
}

// rehearsalFailed reports a rehearsal that did not succeed and returns the
// exit code. prefix starts the lines ("preflight: " or ""); again is the
// command to run once the cause is fixed.
func (a *app) rehearsalFailed(ctx context.Context, cfg config.Config, d *dsn.DSN, rep rehearse.Report, err error, prefix, again string) int {
	var wf *rehearse.WouldFailError
	var cannot *rehearse.CannotError
	var intr *rehearse.InterruptedError
	var newer *migrate.NewerSchemaError
	var sum *migrate.ChecksumError
	var unreachable *dsn.UnreachableError
	// "Nothing was changed" only when no scratch copy is left.
	unchanged := "Nothing was changed: the live database is as it was and the scratch copy was dropped"
	switch {
	case rep.DropErr != nil:
		unchanged = "The live database is as it was; " + rep.DropErr.Error()
	case rep.Scratch == "":
		unchanged = "Nothing was changed"
	}
	switch {
	case errors.As(err, &wf):
		f := wf.Failed
		a.errorf("%srehearsal: migration %s would fail on this database: %v", prefix, f.Failed.Name, f.Err)
		if detail := rehearse.Detail(f.Err); detail != "" {
			fmt.Fprintf(a.Stderr, "detail: %s\n", d.Redactor.String(detail))
		}
		fmt.Fprintf(a.Stderr, "rehearsed successfully before it: %s\nnot rehearsed after it: %s\n", orNone(names(f.Applied)), orNone(names(f.NotApplied)))
		if f.NonTransactional {
			fmt.Fprintf(a.Stderr, "it runs outside a transaction (transaction:false): on the live database it would not be rolled back")
			if len(f.Leftovers) > 0 {
				fmt.Fprintf(a.Stderr, " and would leave behind the invalid index(es) %s", strings.Join(f.Leftovers, ", "))
			}
			fmt.Fprintln(a.Stderr, ".")
		}
		fmt.Fprintf(a.Stderr, "%s; the service was not stopped.\nCorrect the data the error names, then run: %s\n", unchanged, again)
		if f.NonTransactional {
			return ExitFailedPartly
		}
		return ExitFailed
	case errors.As(err, &cannot):
		what := "the rehearsal could not run"
		if prefix != "" {
			what = fmt.Sprintf("REHEARSE=yes in %s, but the rehearsal could not run", a.configPath)
		}
		a.errorf("%s%s: %v\n%s. Fix the cause, then run: %s", prefix, what, d.Redactor.Error(cannot), unchanged, again)
		return ExitNoRehearsal
	case errors.As(err, &intr):
		a.errorf("%sthe rehearsal was interrupted by a signal (SIGTERM, SIGINT or SIGHUP) before it finished. %s. To rehearse, run: %s", prefix, unchanged, again)
		return ExitInterrupted
	case errors.As(err, &newer):
		a.refuseNewer(ctx, cfg, d, newer.State)
		return ExitNewer
	case errors.As(err, &sum):
		a.errorf("%v", sum)
		return ExitChecksum
	case errors.As(err, &unreachable):
		return a.unreachable(err, cfg)
	}
	a.errorf("%srehearsal: %v\nThe live database is as it was. Fix the cause, then run: %s", prefix, d.Redactor.Error(err), again)
	return ExitError
}

// preflightRehearsal rehearses the pending migrations for the preflight as
// REHEARSE says. It returns the exit code (ExitOK to go on).
func (a *app) preflightRehearsal(ctx context.Context, cfg config.Config, d *dsn.DSN, conn *pgx.Conn) int {
	switch cfg.Rehearse {
	case "no":
		fmt.Fprintf(a.Stdout, "preflight: the migrations are not rehearsed (REHEARSE=no in %s)\n", a.configPath)
		return ExitOK
	case "auto":
		reason := a.skipRehearsal(ctx, conn)
		if ctx.Err() != nil { // a signal, not a reason to skip
			return a.rehearsalFailed(ctx, cfg, d, rehearse.Report{}, &rehearse.InterruptedError{Err: context.Cause(ctx)}, "preflight: ", a.next("openwatch migrate --preflight"))
		}
		if reason != "" {
			fmt.Fprintf(a.Stdout, "preflight: the rehearsal is skipped (REHEARSE=auto in %s): %s; set REHEARSE=yes there to rehearse anyway, or run: openwatch migrate --rehearse\n",
				a.configPath, d.Redactor.String(reason))
			return ExitOK
		}
	}
	rep, err := rehearse.Run(ctx, a.rehearseOptions(cfg, d, cfg.Rehearse == "yes"))
	var cannot *rehearse.CannotError
	if errors.As(err, &cannot) && cfg.Rehearse == "auto" {
		a.warnDropFailed(rep, "preflight: ")
		fmt.Fprintf(a.Stdout, "preflight: the rehearsal is skipped (REHEARSE=auto in %s): it could not run: %s\n", a.configPath, d.Redactor.Error(cannot))
		return ExitOK
	}
	if err != nil {
		return a.rehearsalFailed(ctx, cfg, d, rep, err, "preflight: ", a.next("openwatch migrate --preflight"))
	}
	if len(rep.Pending) > 0 {
		a.warnDropFailed(rep, "preflight: ")
		fate := "dropped"
		if rep.DropErr != nil {
			fate = "not dropped: see the warning above"
		}
		fmt.Fprintf(a.Stdout, "preflight: rehearsal: all %d migration(s) succeeded on a copy of the database (copied in %s, %s, %s)\n"+
			"preflight: estimated downtime: %s for the migrations, as the rehearsal measured them, plus stopping the service and taking the restore point\n",
			len(rep.Steps), progress.Duration(rep.CopyTook), progress.Bytes(rep.CopySize), fate, rehearse.Duration(rep.MigrationTime()))
	}
	return ExitOK
}

// skipRehearsal says why REHEARSE=auto does not rehearse, or "".
func (a *app) skipRehearsal(ctx context.Context, conn *pgx.Conn) string {
	facts, err := rehearse.Inspect(ctx, conn)
	if err != nil {
		return err.Error()
	}
	return autoSkip(facts, config.RehearseAutoMaxBytes)
}

// autoSkip is REHEARSE=auto's rule: rehearse a database of at most limit
// bytes, when the rehearsal can run and the server's free space is known
// to be enough for the copy. It returns why not, or "".
func autoSkip(facts rehearse.Facts, limit int64) string {
	if facts.Size > limit {
		return fmt.Sprintf("the database is %s, more than the %s up to which its copy takes minutes, not hours",
			progress.Bytes(facts.Size), progress.Bytes(limit))
	}
	if p := facts.Problem(false); p != nil {
		return p.Error()
	}
	return ""
}
