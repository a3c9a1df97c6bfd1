package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/journal"
	"github.com/openwatch/openwatch/internal/migrate"
)

// lastUpgrade is what the upgrade journal says about the last package
// upgrade: the status an RPM user can rely on, since rpm does not fail on a
// %post error.
type lastUpgrade struct {
	Outcome         string `json:"outcome"` // succeeded, in-progress, migration-failed, unreachable, ...
	Phase           string `json:"phase"`   // check, preflight, stop, migrate, start, finished
	ServiceBefore   string `json:"service_before"`
	ServiceStopped  bool   `json:"service_stopped"`  // the upgrade left the service that ran stopped
	SchemaChanged   string `json:"schema_changed"`   // yes, no or unknown: the last attempt's
	RecoveryCommand string `json:"recovery_command"` // "" once it succeeded
	Message         string `json:"message"`          // the one-line reason ("" once it succeeded)
	Updated         string `json:"updated"`
	// A later transaction the gate refused (the installed version stayed).
	GateRefused  string `json:"gate_refused,omitempty"`
	GateMessage  string `json:"gate_message,omitempty"`
	GateRecovery string `json:"gate_recovery,omitempty"`
}

// lastUpgrade reads the journal; nil when there is none.
func (a *app) lastUpgrade() *lastUpgrade {
	vars := a.journalVars()
	if vars[journal.Outcome] == "" && vars[journal.GateRefused] == "" {
		return nil
	}
	l := &lastUpgrade{Outcome: vars[journal.Outcome], Phase: vars[journal.Phase], ServiceBefore: vars[journal.ServiceBefore],
		ServiceStopped: vars[journal.ServiceLeft] == "yes", SchemaChanged: vars[journal.SchemaChanged],
		RecoveryCommand: vars[journal.Recovery], Message: vars[journal.Message], Updated: vars[journal.Updated],
		GateRefused: vars[journal.GateRefused], GateMessage: vars[journal.GateMessage], GateRecovery: vars[journal.GateRecovery]}
	if l.Outcome == "succeeded" {
		l.RecoveryCommand, l.Message = "", ""
	}
	return l
}

// failed reports whether the journal holds an upgrade that did not succeed
// and names a recovery command.
func (l *lastUpgrade) failed() bool {
	return l != nil && l.Outcome != "" && l.Outcome != "succeeded" && l.Outcome != "in-progress" && l.RecoveryCommand != ""
}

func (l *lastUpgrade) describe() string {
	s := ""
	switch {
	case l == nil:
		return "none recorded"
	case l.Outcome == "":
		s = "none recorded"
	case l.RecoveryCommand == "":
		s = fmt.Sprintf("%s (%s)", l.Outcome, l.Updated)
	case l.Message != "":
		s = fmt.Sprintf("%s in phase %s (%s): %s; to recover, run: %s", l.Outcome, l.Phase, l.Updated, l.Message, l.RecoveryCommand)
	default:
		s = fmt.Sprintf("%s in phase %s (%s); to recover, run: %s", l.Outcome, l.Phase, l.Updated, l.RecoveryCommand)
	}
	if l.GateRefused != "" {
		s += fmt.Sprintf("\nrefused upgrade:   %s: %s; once fixed, run: %s", l.GateRefused, orNone(l.GateMessage), orNone(l.GateRecovery))
	}
	return s
}

// Short names of the journal keys the binary's migrate writes.
const (
	journalRestorePoint = journal.RestorePoint
	journalFailure      = journal.Failure
)

// What the upgrade helper knows about this attempt (migrate --attempt).
// Whether an earlier attempt's restore point is reused is decided from the
// database itself (RESTORE_POINT_STATE), not from what the helper saw of
// the service: retry-stopped is accepted as retry.
const (
	attemptNew          = "new"           // the first attempt of an upgrade
	attemptRetry        = "retry"         // a retry of an unfinished upgrade
	attemptRetryStopped = "retry-stopped" // as retry (kept for the helpers of earlier releases)
)

func validAttempt(s string) bool {
	switch s {
	case "", attemptNew, attemptRetry, attemptRetryStopped:
		return true
	}
	return false
}

// journalVars reads the journal: its valid entries, never through a link.
// A journal an earlier release kept in the service account's directory is
// read when there is no journal yet (the upgrade from that release resumes
// its unfinished upgrade).
func (a *app) journalVars() map[string]string {
	vars, err := journal.Read(a.journalPath)
	if err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: the upgrade journal is not read: %v\n", err)
	}
	if len(vars) == 0 && a.journalPath == defaults.JournalPath {
		if old, err := journal.ImportLegacy(defaults.LegacyJournalPath); err == nil && old != nil {
			return old
		}
	}
	return vars
}

// setJournal sets keys in the journal ("" removes one), keeping the others.
func (a *app) setJournal(set map[string]string) error {
	vars := a.journalVars()
	for k, v := range set {
		if v == "" {
			delete(vars, k)
		} else {
			vars[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return a.writeJournal(vars)
}

// writeJournal replaces the journal; the file of an earlier release in the
// service account's directory is then removed (unlinking a name never
// follows a link).
func (a *app) writeJournal(vars map[string]string) error {
	if err := journal.Write(a.journalPath, vars, defaults.Group); err != nil {
		return err
	}
	if a.journalPath == defaults.JournalPath {
		os.Remove(defaults.LegacyJournalPath)
	}
	return nil
}

// reusableRestorePoint returns the earlier attempt's restore point when this
// attempt may take it as its own: the database server says the database is
// as the earlier attempt left it (so only that attempt's own migrations
// changed it since the restore point was taken), and the restore point
// still exists. why says, when it cannot be reused, why not ("" when there
// is nothing to reuse).
func (a *app) reusableRestorePoint(ctx context.Context, d *dsn.DSN, conn *pgx.Conn, attempt string) (name, why string) {
	if attempt == "" || attempt == attemptNew {
		return "", ""
	}
	vars := a.journalVars()
	rp := vars[journalRestorePoint]
	if rp == "" {
		return "", ""
	}
	if clone.IsName(rp) {
		found := false
		for _, p := range a.clonePoints(ctx, d) {
			found = found || p.Name == rp
		}
		if !found {
			return "", fmt.Sprintf("the earlier attempt's restore point %s is no longer on the database server", rp)
		}
	} else if fi, err := os.Lstat(rp); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Sprintf("the earlier attempt's restore point %s is gone", rp)
	}
	was := vars[journal.RestorePointState]
	if was == "" {
		return "", fmt.Sprintf("what the database looked like after the earlier attempt was not recorded, so whether it changed since its restore point %s was taken cannot be told", rp)
	}
	others, err := migrate.OtherSessions(ctx, conn)
	if err == nil && others > 0 {
		return "", fmt.Sprintf("%d other session(s) are connected to the database, whose writes since the earlier attempt's restore point %s cannot all be counted yet", others, rp)
	}
	now, err := migrate.SettledDatabaseState(ctx, d)
	switch {
	case err != nil:
		return "", fmt.Sprintf("whether the database changed since the earlier attempt's restore point %s was taken cannot be told (%v)", rp, d.Redactor.Error(err))
	case was != now:
		return "", fmt.Sprintf("the database changed since the earlier attempt's restore point %s was taken (it has been written to since that attempt ended)", rp)
	}
	return rp, ""
}

// recordAttempt keeps, for the helper's next retry, the restore point this
// run took or reused, what the database server said at its end, whether it
// changed the schema and how it failed; a failure like the earlier
// attempt's is said to be the same one. Only with --attempt (the helper).
func (a *app) recordAttempt(ctx context.Context, d *dsn.DSN, attempt, restorePoint, schemaChanged string, code int) {
	if attempt == "" {
		return
	}
	failure := ""
	if code != ExitOK && len(a.messages) > 0 {
		msg := a.messages[len(a.messages)-1]
		first, _, _ := strings.Cut(msg, "\n")
		failure = exitKind(code) + ": " + first
	}
	if attempt != attemptNew && failure != "" {
		if prev := a.journalVars()[journalFailure]; prev == strings.Join(strings.Fields(failure), " ") {
			fmt.Fprintf(a.Stderr, "openwatch: this is the same failure as the earlier attempt's: %s\n", failure)
		}
	}
	// The state is read after this run's sessions ended; only a failed
	// run's restore point is ever reused.
	state := ""
	if restorePoint != "" && code != ExitOK {
		if s, err := migrate.SettledDatabaseState(ctx, d); err == nil {
			state = s
		} else {
			fmt.Fprintf(a.Stderr, "openwatch: warning: what the database looks like after this attempt cannot be recorded (%v): a retry takes a new restore point\n", d.Redactor.Error(err))
		}
	}
	set := map[string]string{journalRestorePoint: restorePoint, journal.RestorePointState: state,
		journalFailure: failure, journal.SchemaChanged: schemaChanged}
	if err := a.setJournal(set); err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot record the restore point in the upgrade journal %s: %v\n", a.journalPath, err)
	}
}

// guardRecordPath is where the start guard records a refusal: in the
// service account's own directory when it runs as that account; as root (a
// unit without User=, or by hand) in root's own directory, next to the
// journal, since root never writes where the account can.
func (a *app) guardRecordPath() string {
	if os.Geteuid() == 0 {
		return a.rootGuardRecordPath()
	}
	return a.accountGuardRecordPath()
}

func (a *app) accountGuardRecordPath() string {
	dir := a.stateDir
	if dir == "" {
		dir = filepath.Dir(a.journalPath)
	}
	return filepath.Join(dir, filepath.Base(defaults.GuardRecord))
}

func (a *app) rootGuardRecordPath() string {
	return filepath.Join(filepath.Dir(a.journalPath), filepath.Base(defaults.GuardRecord))
}

// guardInvocations are the invocations the start guard's records name, as
// the service account and as root.
func (a *app) guardInvocations() []string {
	return []string{journal.ReadGuardRecord(a.accountGuardRecordPath()), journal.ReadGuardRecord(a.rootGuardRecordPath())}
}

// guard reports, as the service's start guard (migrate --check --guard, an
// ExecStartPre=), a refusal at priority err in the system journal (the
// "<3>" prefix journald reads on a service's output) with its reason and the
// one command that recovers, and records it with the unit's invocation ID,
// so the upgrade helper can tell the guard's refusal from an operator's stop.
func (a *app) guard(code int) {
	if code == ExitOK {
		// Unlinking a name never follows a link.
		os.Remove(a.guardRecordPath())
		if os.Geteuid() == 0 {
			os.Remove(a.accountGuardRecordPath())
		}
		return
	}
	reason := map[int]string{
		ExitPending:     "migrations are pending",
		ExitNewer:       "the database schema is newer than this binary",
		ExitUnreachable: "the database is unreachable or not configured",
		ExitChecksum:    "an applied migration differs from the one this package ships",
		ExitConfig:      "the database connection setting is invalid",
	}[code]
	if reason == "" {
		reason = fmt.Sprintf("openwatch migrate --check failed (exit %d)", code)
	}
	next := ""
	switch last := a.lastUpgrade(); {
	case last.failed():
		next = fmt.Sprintf("The last upgrade ended %s: %s. After fixing the cause, run: %s", last.Outcome, orNone(last.Message), last.RecoveryCommand)
	case code == ExitPending || code == ExitUnreachable && last != nil && last.Outcome == "unreachable":
		next = "To take a restore point, migrate, and start the service, run: " + config.DefaultUpgradeHelper
	case code == ExitUnreachable:
		next = "Once the database is back, run: systemctl start " + defaults.AppUnit
	default:
		next = "The lines above say what to do; openwatch migrate --status shows where the schema stands."
	}
	fmt.Fprintf(a.Stderr, "<3>openwatch start guard: refused to start %s: %s. %s\n", defaults.AppUnit, reason, next)
	if os.Geteuid() == 0 {
		// As the service account the guard may not write root's METRICS_DIR;
		// the upgrade's own outcome is there already.
		a.writeMetrics(context.Background())
	}
	record := fmt.Sprintf("# written by the start guard (%s migrate --check --guard) when it refused a start\n"+
		"INVOCATION_ID=%s\nEXIT=%d\nREFUSED=%s\n", defaults.Binary, os.Getenv("INVOCATION_ID"), code, time.Now().UTC().Format(time.RFC3339))
	if err := renameio.WriteFile(a.guardRecordPath(), []byte(record), 0o644, renameio.WithTempDir(filepath.Dir(a.guardRecordPath()))); err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot record the refusal in %s (the upgrade helper will take it for an operator's stop): %v\n", a.guardRecordPath(), err)
	}
}
