package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/envfile"
)

// lastUpgrade is what the upgrade helper's journal says about the last
// package upgrade: the status an RPM user can rely on, since rpm does not
// fail on a %post error.
type lastUpgrade struct {
	Outcome         string `json:"outcome"` // succeeded, in-progress, migration-failed, unreachable, ...
	Phase           string `json:"phase"`   // check, preflight, stop, migrate, start, finished
	ServiceBefore   string `json:"service_before"`
	RecoveryCommand string `json:"recovery_command"` // "" once it succeeded
	Message         string `json:"message"`          // the one-line reason ("" once it succeeded)
	Updated         string `json:"updated"`
}

// lastUpgrade reads the journal; nil when there is none.
func (a *app) lastUpgrade() *lastUpgrade {
	vars, _, err := envfile.Read(a.journalPath)
	if err != nil || vars["OUTCOME"] == "" {
		return nil
	}
	l := &lastUpgrade{Outcome: vars["OUTCOME"], Phase: vars["PHASE"], ServiceBefore: vars["SERVICE_BEFORE"],
		RecoveryCommand: vars["RECOVERY"], Message: vars["MESSAGE"], Updated: vars["UPDATED"]}
	if l.Outcome == "succeeded" {
		l.RecoveryCommand, l.Message = "", ""
	}
	return l
}

// failed reports whether the journal holds an upgrade that did not succeed
// and names a recovery command.
func (l *lastUpgrade) failed() bool {
	return l != nil && l.Outcome != "succeeded" && l.Outcome != "in-progress" && l.RecoveryCommand != ""
}

func (l *lastUpgrade) describe() string {
	switch {
	case l == nil:
		return "none recorded"
	case l.RecoveryCommand == "":
		return fmt.Sprintf("%s (%s)", l.Outcome, l.Updated)
	case l.Message != "":
		return fmt.Sprintf("%s in phase %s (%s): %s; to recover, run: %s", l.Outcome, l.Phase, l.Updated, l.Message, l.RecoveryCommand)
	}
	return fmt.Sprintf("%s in phase %s (%s); to recover, run: %s", l.Outcome, l.Phase, l.Updated, l.RecoveryCommand)
}

// The keys of the journal the binary writes (the helper writes the others
// and keeps these lines as they are while an upgrade is being retried).
const (
	journalRestorePoint = "RESTORE_POINT" // the restore point the attempt took or reused
	journalFailure      = "FAILURE"       // one line: how the attempt's migrate failed
)

// What the upgrade helper knows about this attempt (migrate --attempt).
const (
	attemptNew          = "new"           // the first attempt of an upgrade
	attemptRetry        = "retry"         // a retry; the service may have run since the earlier attempt
	attemptRetryStopped = "retry-stopped" // a retry; the service has stayed stopped since the earlier attempt
)

func validAttempt(s string) bool {
	switch s {
	case "", attemptNew, attemptRetry, attemptRetryStopped:
		return true
	}
	return false
}

// journalQuote quotes s for a systemd EnvironmentFile value on one line.
func journalQuote(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`").Replace(s) + `"`
}

// setJournal sets keys in the journal, keeping every other line; the file is
// replaced whole (root 0600), as the helper does.
func (a *app) setJournal(set map[string]string) error {
	old, err := os.ReadFile(a.journalPath)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(old), "\n"), "\n") {
		k, _, _ := strings.Cut(line, "=")
		if _, ok := set[k]; ok || line == "" {
			continue
		}
		out = append(out, line)
	}
	for _, k := range []string{journalRestorePoint, journalFailure} {
		if v, ok := set[k]; ok && v != "" {
			out = append(out, k+"="+journalQuote(v))
		}
	}
	return renameio.WriteFile(a.journalPath, []byte(strings.Join(out, "\n")+"\n"), 0o600, renameio.WithTempDir(filepath.Dir(a.journalPath)))
}

func (a *app) journalVars() map[string]string {
	vars, _, _ := envfile.Read(a.journalPath)
	return vars
}

// reusableRestorePoint returns the earlier attempt's restore point when this
// attempt may take it as its own: the helper says the service has stayed
// stopped since that attempt (so nothing but the attempt's own migrations
// changed the database), and the restore point still exists. why says, when
// it cannot be reused, why not ("" when there is nothing to reuse).
func (a *app) reusableRestorePoint(ctx context.Context, cfg config.Config, d *dsn.DSN, attempt string) (name, why string) {
	if attempt != attemptRetryStopped {
		return "", ""
	}
	rp := a.journalVars()[journalRestorePoint]
	if rp == "" {
		return "", ""
	}
	if clone.IsName(rp) {
		for _, p := range a.clonePoints(ctx, d) {
			if p.Name == rp {
				return rp, ""
			}
		}
		return "", fmt.Sprintf("the earlier attempt's restore point %s is no longer on the database server", rp)
	}
	if fi, err := os.Stat(rp); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Sprintf("the earlier attempt's restore point %s is gone", rp)
	}
	return rp, ""
}

// recordAttempt keeps, for the helper's next retry, the restore point this
// run took or reused and how it failed; a failure like the earlier
// attempt's is said to be the same one. Only with --attempt (the helper).
func (a *app) recordAttempt(attempt, restorePoint string, code int) {
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
	set := map[string]string{journalRestorePoint: restorePoint, journalFailure: failure}
	if restorePoint == "" && code != ExitOK {
		delete(set, journalRestorePoint) // keep the earlier attempt's
	}
	if err := a.setJournal(set); err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot record the restore point in the upgrade journal %s: %v\n", a.journalPath, err)
	}
}

// guardRecordPath is where the start guard records a refusal: next to the
// journal (the state directory, which the service's user may write).
func (a *app) guardRecordPath() string {
	return filepath.Join(filepath.Dir(a.journalPath), "start-refused")
}

// guard reports, as the service's start guard (migrate --check --guard, an
// ExecStartPre=), a refusal at priority err in the system journal (the
// "<3>" prefix journald reads on a service's output) with its reason and the
// one command that recovers, and records it with the unit's invocation ID,
// so the upgrade helper can tell the guard's refusal from an operator's stop.
func (a *app) guard(code int) {
	if code == ExitOK {
		os.Remove(a.guardRecordPath())
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
	record := fmt.Sprintf("# written by the start guard (%s migrate --check --guard) when it refused a start\n"+
		"INVOCATION_ID=%s\nEXIT=%d\nREFUSED=%s\n", defaults.Binary, os.Getenv("INVOCATION_ID"), code, time.Now().UTC().Format(time.RFC3339))
	if err := renameio.WriteFile(a.guardRecordPath(), []byte(record), 0o644, renameio.WithTempDir(filepath.Dir(a.guardRecordPath()))); err != nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: cannot record the refusal in %s (the upgrade helper will take it for an operator's stop): %v\n", a.guardRecordPath(), err)
	}
}
