package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/progress"
	"github.com/openwatch/openwatch/internal/version"
)

type migrateFlags struct {
	check, preflight, status, json, noBackup bool
	rehearse                                 bool
	backupDir                                string
	guard                                    bool   // --check as the service's start guard
	attempt                                  string // what the upgrade helper knows of this attempt
	rec                                      recordFlags
	to                                       string // --to VERSION (downgrade.go)
}

func (a *app) migrate(ctx context.Context, args []string) int {
	var f migrateFlags
	fl := a.flags("migrate")
	fl.BoolVar(&f.check, "check", false, "")
	fl.BoolVar(&f.preflight, "preflight", false, "")
	fl.BoolVar(&f.status, "status", false, "")
	fl.BoolVar(&f.rehearse, "rehearse", false, "")
	fl.BoolVar(&f.json, "json", false, "")
	fl.BoolVar(&f.noBackup, "no-backup", false, "")
	fl.StringVar(&f.backupDir, "backup-dir", "", "")
	fl.BoolVar(&f.guard, "guard", false, "")
	fl.StringVar(&f.attempt, "attempt", "", "")
	f.rec.define(fl)
	fl.StringVar(&f.to, "to", "", "")
	var extra []string
	if code, ok := a.parse(fl, args, &extra, help["migrate"]); !ok {
		return code
	}
	if f.rec.event != "" {
		code := a.record(f.rec, extra)
		if code == ExitOK && outcomeEvents[f.rec.event] {
			a.writeMetrics(ctx)
		}
		return code
	}
	if msg := f.conflict(extra); msg != "" {
		return a.jsonError(f.json, a.usageError("migrate: %s", msg))
	}
	cfg, d, code := a.connection(!f.check && !f.status)
	if d == nil {
		if f.guard {
			a.guard(code)
		}
		return a.jsonError(f.json, code)
	}
	if f.to != "" {
		return a.migrateTo(ctx, cfg, d, f)
	}
	switch {
	case f.check:
		code := a.check(ctx, cfg, d, f.guard)
		if f.guard {
			a.guard(code)
		}
		return code
	case f.preflight:
		return a.preflight(ctx, cfg, d, f)
	case f.rehearse:
		return a.rehearse(ctx, cfg, d)
	case f.status:
		return a.jsonError(f.json, a.status(ctx, cfg, d, f.json))
	}
	return a.apply(ctx, cfg, d, f)
}

// jsonError prints, for --json, one JSON error object on stdout when code
// is a failure, so a script always gets one JSON document.
func (a *app) jsonError(asJSON bool, code int) int {
	if !asJSON || code == ExitOK {
		return code
	}
	type errorJSON struct {
		ExitCode int    `json:"exit_code"`
		Kind     string `json:"kind"`
		Message  string `json:"message"`
	}
	enc := json.NewEncoder(a.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(struct {
		Error errorJSON `json:"error"`
	}{errorJSON{ExitCode: code, Kind: exitKind(code), Message: strings.Join(a.messages, "\n")}})
	return code
}

// exitKind names an exit code for machines.
func exitKind(code int) string {
	switch code {
	case ExitUsage:
		return "usage"
	case ExitNewer:
		return "newer-schema"
	case ExitUnreachable:
		return "unreachable"
	case ExitBackupFailed:
		return "no-restore-point"
	case ExitChecksum:
		return "checksum-mismatch"
	case ExitInterrupted:
		return "interrupted"
	case ExitFailed:
		return "migration-failed"
	case ExitFailedPartly:
		return "migration-failed-partially"
	case ExitLockTimeout:
		return "lock-timeout"
	case ExitConfig:
		return "config-error"
	case ExitNoRehearsal:
		return "rehearsal-not-possible"
	case ExitNoWayDown:
		return "no-way-down"
	}
	return "error"
}

func (f migrateFlags) conflict(extra []string) string {
	switch {
	case len(extra) > 0:
		return fmt.Sprintf("unexpected argument %q", extra[0])
	case btoi(f.check)+btoi(f.status)+btoi(f.preflight)+btoi(f.rehearse) > 1:
		return "--check, --preflight, --rehearse and --status exclude each other"
	case f.rehearse && (f.noBackup || f.backupDir != ""):
		return "--backup-dir and --no-backup do not apply to --rehearse (it takes no restore point)"
	case f.json && !f.status:
		return "--json goes with --status"
	case (f.check || f.status) && (f.noBackup || f.backupDir != ""):
		return "--backup-dir and --no-backup only apply when migrating (or with --preflight)"
	case f.to != "" && btoi(f.check)+btoi(f.status)+btoi(f.rehearse) > 0:
		return "--to goes with none of --check, --rehearse and --status"
	case f.guard && !f.check:
		return "--guard goes with --check"
	case f.attempt != "" && (f.check || f.status || f.preflight):
		return "--attempt only applies when migrating"
	case !validAttempt(f.attempt):
		return fmt.Sprintf("--attempt %q: want new, retry or retry-stopped", f.attempt)
	case f.noBackup && f.backupDir != "":
		return "--backup-dir and --no-backup exclude each other"
	case f.backupDir != "" && !filepath.IsAbs(f.backupDir):
		return "--backup-dir needs an absolute path"
	}
	return ""
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readState opens one session and reads the schema state: what --check and
// --status need, and nothing more (--check must stay fast).
func (a *app) readState(ctx context.Context, cfg config.Config, d *dsn.DSN, verify bool) (migrate.State, int) {
	conn, code := a.connect(ctx, cfg, d)
	if conn == nil {
		return migrate.State{}, code
	}
	defer conn.Close(context.Background())
	s, err := migrate.ReadState(ctx, conn, a.migrations)
	if err == nil && verify && !s.Newer() {
		_, err = migrate.VerifyChecksums(ctx, conn, a.migrations, s)
	}
	var sum *migrate.ChecksumError
	if errors.As(err, &sum) {
		a.errorf("%v", sum)
		return s, ExitChecksum
	}
	if err != nil {
		a.errorf("%v", d.Redactor.Error(err))
		return s, ExitError
	}
	return s, ExitOK
}

// check reports the schema state. Run by hand it names the next command;
// the upgrade helper (which names the recovery command itself, and runs the
// next step anyway) and the start guard (which names the one command in its
// refusal) get the state alone.
func (a *app) check(ctx context.Context, cfg config.Config, d *dsn.DSN, guard bool) int {
	s, code := a.readState(ctx, cfg, d, true)
	if code != ExitOK {
		return code
	}
	switch {
	case s.Newer():
		a.refuseNewer(ctx, cfg, d, s)
		return ExitNewer
	case len(s.Pending) > 0:
		fmt.Fprintf(a.Stdout, "%d migration(s) pending: %s (schema at %s, this binary's head %s)\n",
			len(s.Pending), names(s.Pending), orNone(s.Current), s.Head)
		if !guard && os.Getenv(RecoveryVar) == "" {
			fmt.Fprintf(a.Stdout, "To take a restore point, migrate, and start the service again if it ran, run: %s\n", config.DefaultUpgradeHelper)
		}
		return ExitPending
	}
	fmt.Fprintf(a.Stdout, "schema at this binary's head (%s)\n", s.Head)
	return ExitOK
}

// statusJSON is the stable --status --json document.
type statusJSON struct {
	State          string              `json:"state"` // current, pending or newer
	Database       string              `json:"database"`
	SchemaVersion  string              `json:"schema_version"` // "" when nothing is applied
	BinaryHead     string              `json:"binary_head"`
	PackageVersion string              `json:"package_version"`
	Applied        []string            `json:"applied"`
	Pending        []migrate.Migration `json:"pending"`
	UnknownApplied []string            `json:"unknown_applied"`
	RestorePoints  []dump.RestorePoint `json:"restore_points"` // newest first
	LastUpgrade    *lastUpgrade        `json:"last_upgrade"`   // null when the journal holds none
}

func (a *app) status(ctx context.Context, cfg config.Config, d *dsn.DSN, asJSON bool) int {
	s, code := a.readState(ctx, cfg, d, false)
	if code != ExitOK {
		return code
	}
	state := "current"
	switch {
	case s.Newer():
		state = "newer"
	case len(s.Pending) > 0:
		state = "pending"
	}
	rps := a.restorePoints(ctx, cfg, d)
	last := a.lastUpgrade()
	if asJSON {
		enc := json.NewEncoder(a.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(statusJSON{State: state, Database: d.Describe(), SchemaVersion: s.Current, BinaryHead: s.Head,
			PackageVersion: version.Version, Applied: s.Applied, Pending: s.Pending, UnknownApplied: s.Unknown,
			RestorePoints: nonNil(rps), LastUpgrade: last})
		return ExitOK
	}
	fmt.Fprintf(a.Stdout, "database:         %s\n", d.Describe())
	fmt.Fprintf(a.Stdout, "state:            %s\n", state)
	fmt.Fprintf(a.Stdout, "schema version:   %s\n", orNone(s.Current))
	fmt.Fprintf(a.Stdout, "binary head:      %s (openwatch %s)\n", s.Head, version.Version)
	fmt.Fprintf(a.Stdout, "pending:          %s\n", orNone(names(s.Pending)))
	fmt.Fprintf(a.Stdout, "unknown applied:  %s\n", orNone(strings.Join(s.Unknown, ", ")))
	fmt.Fprintf(a.Stdout, "last upgrade:     %s\n", last.describe())
	fmt.Fprintf(a.Stdout, "restore points:   %d (files in %s, clones on the server)\n", len(rps), cfg.BackupDir)
	a.printRestorePoints(rps, "  ")
	a.printRehearsalLeftovers(ctx, d)
	if conn, err := d.Connect(ctx); err == nil {
		kept, err := clone.Kept(ctx, conn, d.Config.Database)
		conn.Close(context.Background())
		if err == nil && len(kept) > 0 {
			fmt.Fprintf(a.Stdout, "kept by restores: %d (each the database as it was before a restore; drop it once you no longer need it)\n", len(kept))
			for _, k := range kept {
				fmt.Fprintf(a.Stdout, "  %s  (renamed %s, %s)  %s\n", k.Name, k.Renamed.Format(time.RFC3339), progress.Bytes(k.Size), clone.DropStatement(k.Name))
			}
		}
	}
	return ExitOK
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// printRestorePoints lists restore points, one a line, newest first.
func (a *app) printRestorePoints(rps []dump.RestorePoint, indent string) {
	for _, rp := range rps {
		fmt.Fprintf(a.Stdout, "%s%s  (%s, package %s, schema %s, %s)\n", indent, rp.Name, rp.Kind,
			rp.PackageVersion, rp.SchemaVersion, progress.Bytes(rp.Size))
	}
}

func (a *app) apply(ctx context.Context, cfg config.Config, d *dsn.DSN, f migrateFlags) int {
	fmt.Fprintf(a.Stdout, "database: %s (%s)\n", d.Describe(), cfg.DSNSource)
	// Wait here, once, for a database that is still starting.
	conn, code := a.connectToChange(ctx, cfg, d, "openwatch migrate")
	if conn == nil {
		return code
	}
	// A retry takes the earlier attempt's restore point while the database
	// is as that attempt left it: only its own migrations changed it since.
	reuse, notReused := a.reusableRestorePoint(ctx, d, conn, f.attempt)
	var clonePoint string
	var err error
	if reuse == "" {
		clonePoint, err = a.cloneRestorePoint(ctx, cfg, d, conn, f)
	} else {
		conn.Close(context.Background())
	}
	if err != nil {
		a.errorf("could not take a restore point: %v\nNothing was applied. Fix the cause, then run: %s", d.Redactor.Error(err), a.next("openwatch migrate"))
		a.recordAttempt(ctx, d, f.attempt, "", "no", ExitBackupFailed)
		return ExitBackupFailed
	}
	var restorePoint, noBackupReason string
	res, err := migrate.Run(ctx, migrate.Options{
		DSN: d, FS: a.migrations, Out: a.Stdout, LockTimeout: cfg.MigrateLockTimeout, LockWait: cfg.MigrationLockWait,
		BeforeApply: func(ctx context.Context, s migrate.State, hasData bool) error {
			fmt.Fprintf(a.Stdout, "%d migration(s) pending: %s\n", len(s.Pending), names(s.Pending))
			noBackupReason = a.backupPolicy(cfg, f, hasData)
			if noBackupReason != "" {
				fmt.Fprintf(a.Stdout, "no restore point: %s\n", noBackupReason)
				return nil
			}
			if reuse != "" {
				restorePoint, a.reusedRestorePoint = reuse, true
				fmt.Fprintf(a.Stdout, "restore point: %s, taken by the earlier attempt of this upgrade; no new one is taken: "+
					"the database server says nothing but that attempt's migrations changed the database since\n", reuse)
				return nil
			}
			if notReused != "" {
				fmt.Fprintf(a.Stdout, "restore point: a new one: %s\n", notReused)
			}
			if clonePoint != "" {
				restorePoint = clonePoint
				return nil
			}
			dir := cfg.BackupDir
			if f.backupDir != "" {
				dir = f.backupDir
			}
			path, err := dump.Backup(ctx, dump.BackupOptions{DSN: d, Dir: dir, PackageVersion: version.Version,
				Compression: cfg.BackupCompression, Progress: a.Stderr, DeferCompression: true})
			if err != nil {
				return err
			}
			restorePoint = path
			fmt.Fprintf(a.Stdout, "restore point: %s\n", path)
			return nil
		},
	})
	if err != nil {
		code := a.applyFailed(ctx, cfg, d, err, restorePoint, noBackupReason)
		a.recordAttempt(context.WithoutCancel(ctx), d, f.attempt, restorePoint, schemaChanged(err), code)
		return code
	}
	changed := "no"
	if len(res.Applied) > 0 {
		changed = "yes"
	}
	a.recordAttempt(ctx, d, f.attempt, restorePoint, changed, ExitOK)
	if len(res.Applied) == 0 {
		fmt.Fprintf(a.Stdout, "nothing to migrate: schema at this binary's head (%s)\n", res.Before.Head)
		return ExitOK
	}
	fmt.Fprintf(a.Stdout, "applied %d migration(s); schema now at %s\n", len(res.Applied), res.Applied[len(res.Applied)-1].Version)
	return ExitOK
}

// backupPolicy returns why no restore point is taken, or "" to take one.
func (a *app) backupPolicy(cfg config.Config, f migrateFlags, hasData bool) string {
	switch {
	case f.noBackup:
		return "--no-backup given"
	case !hasData:
		return "the schema is empty"
	case !cfg.AutoBackup && f.backupDir == "":
		return fmt.Sprintf("AUTO_BACKUP=no in %s and no --backup-dir", a.configPath)
	}
	return ""
}

func (a *app) applyFailed(ctx context.Context, cfg config.Config, d *dsn.DSN, err error, restorePoint, noBackupReason string) int {
	var unreachable *dsn.UnreachableError
	var newer *migrate.NewerSchemaError
	var backup *migrate.BackupError
	var failed *migrate.FailedError
	var interrupted *migrate.InterruptedError
	var sum *migrate.ChecksumError
	var lockWait *migrate.LockWaitError
	switch {
	case errors.As(err, &sum):
		a.errorf("%v", sum)
		return ExitChecksum
	case errors.As(err, &lockWait):
		a.errorf("%v", lockWait)
		a.restoreHint(restorePoint, noBackupReason)
		fmt.Fprintf(a.Stderr, "Then run: %s\n", a.next("openwatch migrate"))
		return ExitLockTimeout
	case errors.As(err, &newer):
		a.refuseNewer(ctx, cfg, d, newer.State)
		return ExitNewer
	case errors.As(err, &backup) && ctx.Err() != nil:
		a.errorf("interrupted while taking the restore point; nothing was applied and no restore point was left.\n"+
			"To migrate, run: %s", a.next("openwatch migrate"))
		return ExitInterrupted
	case errors.As(err, &backup):
		a.errorf("%v\nNothing was applied. Fix the cause, then run: %s", backup, a.next("openwatch migrate"))
		return ExitBackupFailed
	case errors.As(err, &interrupted):
		a.errorf("%v\nEvery applied migration is complete; the schema is at %s.", interrupted, orNone(schemaAfter(interrupted.Applied)))
		a.restoreHint(restorePoint, noBackupReason)
		fmt.Fprintf(a.Stderr, "To apply the rest, run: %s\n", a.next("openwatch migrate"))
		return ExitInterrupted
	case errors.As(err, &failed):
		a.reportFailure(failed, restorePoint, noBackupReason)
		if failed.NonTransactional {
			return ExitFailedPartly
		}
		return ExitFailed
	case errors.Is(err, migrate.ErrLockTimeout):
		a.errorf("%v\nNothing was applied. Wait for it to finish, then run: %s", err, a.next("openwatch migrate"))
		return ExitLockTimeout
	case errors.As(err, &unreachable):
		return a.unreachable(err, cfg)
	}
	// A server that went away mid-way (stopped, crashed, the network)
	// surfaces as the driver's "bad connection" or "conn closed": say so,
	// rather than a bare driver error, when a new session cannot be opened.
	probeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if probe, perr := d.Connect(probeCtx); perr != nil {
		a.errorf("the database became unreachable during the migration (%v; a new session fails: %v).\n"+
			"The migration in progress was rolled back by the server (unless it runs with transaction:false); the ones before it stay applied.",
			d.Redactor.Error(err), d.Redactor.Error(perr))
		a.restoreHint(restorePoint, noBackupReason)
		fmt.Fprintf(a.Stderr, "Check that PostgreSQL is running and that OPENWATCH_DATABASE_DSN in %s is right, then run: %s\n", cfg.DSNSource, a.next("openwatch migrate"))
		return ExitUnreachable
	} else {
		probe.Close(context.Background())
	}
	a.errorf("%v", err)
	return ExitError
}

// schemaChanged says whether a failed run changed the schema: yes, no, or
// unknown when the database went away mid-way.
func schemaChanged(err error) string {
	var interrupted *migrate.InterruptedError
	var failed *migrate.FailedError
	var lockWait *migrate.LockWaitError
	var backup *migrate.BackupError
	var sum *migrate.ChecksumError
	var newer *migrate.NewerSchemaError
	yes := func(applied []migrate.Migration, partly bool) string {
		if len(applied) > 0 || partly {
			return "yes"
		}
		return "no"
	}
	switch {
	case errors.As(err, &failed):
		return yes(failed.Applied, failed.NonTransactional)
	case errors.As(err, &interrupted):
		return yes(interrupted.Applied, false)
	case errors.As(err, &lockWait):
		return yes(lockWait.Applied, false)
	case errors.As(err, &backup), errors.As(err, &sum), errors.As(err, &newer), errors.Is(err, migrate.ErrLockTimeout):
		return "no"
	}
	return "unknown"
}

func schemaAfter(applied []migrate.Migration) string {
	if len(applied) == 0 {
		return ""
	}
	return applied[len(applied)-1].Version
}

func (a *app) reportFailure(f *migrate.FailedError, restorePoint, noBackupReason string) {
	a.errorf("%v", f)
	fmt.Fprintf(a.Stderr, "applied in this run: %s\n", orNone(names(f.Applied)))
	if f.Failed.Name != "" {
		if f.NonTransactional {
			fmt.Fprintf(a.Stderr, "failed (NOT rolled back: transaction:false): %s\n", f.Failed.Name)
		} else {
			fmt.Fprintf(a.Stderr, "failed (rolled back): %s\n", f.Failed.Name)
		}
	}
	fmt.Fprintf(a.Stderr, "not applied: %s\n", orNone(names(f.NotApplied)))
	if f.NonTransactional {
		for _, idx := range f.Leftovers {
			fmt.Fprintf(a.Stderr, "left over: invalid index %s; remove it (outside a transaction) with: DROP INDEX CONCURRENTLY %s;\n", idx, idx)
		}
		if len(f.Leftovers) == 0 {
			fmt.Fprintf(a.Stderr, "statements of it that ran before the error remain; check the database before migrating again.\n")
		}
	}
	if restorePoint == "" {
		fmt.Fprintf(a.Stderr, "no restore point was taken (%s).\nFix the cause, then run: %s\n", orNone(noBackupReason), a.next("openwatch migrate"))
		return
	}
	fmt.Fprintf(a.Stderr, "restore point: %s\n", restorePoint)
	before := "this run"
	if a.reusedRestorePoint {
		before = "the earlier attempt of this upgrade"
	}
	fmt.Fprintf(a.Stderr, "To put the database back as it was before %s:\n  openwatch restore --yes %s\n", before, restorePoint)
}

// restoreHint names the restore point taken by this run.
func (a *app) restoreHint(restorePoint, noBackupReason string) {
	if restorePoint == "" {
		fmt.Fprintf(a.Stderr, "no restore point was taken (%s).\n", orNone(noBackupReason))
		return
	}
	if a.reusedRestorePoint {
		fmt.Fprintf(a.Stderr, "restore point of this upgrade (taken by its earlier attempt): %s\n", restorePoint)
		return
	}
	fmt.Fprintf(a.Stderr, "restore point of this run: %s\n", restorePoint)
}

// refuseNewer explains a downgrade and names the newest restore point, file
// or clone, matching this binary when there is one.
func (a *app) refuseNewer(ctx context.Context, cfg config.Config, d *dsn.DSN, s migrate.State) {
	a.errorf("the database schema is newer than this binary and nothing was applied.\n"+
		"database schema version: %s (unknown to this binary: %s)\n"+
		"this binary (openwatch %s) knows schema versions up to %s.\n"+
		"Either install the newer openwatch package again, or restore a restore point taken with this version's schema:",
		s.Current, strings.Join(s.Unknown, ", "), version.Version, s.Head)
	for _, rp := range a.restorePoints(ctx, cfg, d) {
		if rp.SchemaVersion == s.Head {
			fmt.Fprintf(a.Stderr, "  openwatch restore --yes %s\n", rp.Name)
			return
		}
	}
	fmt.Fprintf(a.Stderr, "  (no restore point with schema %s in %s or on the database server)\n", s.Head, cfg.BackupDir)
}

func names(ms []migrate.Migration) string {
	var n []string
	for _, m := range ms {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
