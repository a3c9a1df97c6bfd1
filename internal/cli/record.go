package cli

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/journal"
)

// recordFlags: migrate --record EVENT, how the upgrade helper and the gate
// keep the upgrade journal. The binary is its only writer; they pass what
// they observed.
type recordFlags struct {
	event, outcome, phase, message, recovery string
	observed                                 map[string]string
}

func (r *recordFlags) define(fl *flag.FlagSet) {
	fl.StringVar(&r.event, "record", "", "")
	fl.StringVar(&r.outcome, "outcome", "", "")
	fl.StringVar(&r.phase, "phase", "", "")
	fl.StringVar(&r.message, "message", "", "")
	fl.StringVar(&r.recovery, "recovery", "", "")
	fl.Func("observed", "", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || !observedKeys[k] {
			return fmt.Errorf("--observed %q: want KEY=VALUE with KEY one of active, systemd, inactive-since, unit-file-state, invocation-id, boot-id", v)
		}
		if r.observed == nil {
			r.observed = map[string]string{}
		}
		r.observed[k] = val
		return nil
	})
}

var observedKeys = map[string]bool{"active": true, "systemd": true, "inactive-since": true, "unit-file-state": true, "invocation-id": true, "boot-id": true}

// The events of migrate --record.
const (
	eventBegin       = "begin"        // an attempt starts: decide the service's fate; print it
	eventStopping    = "stopping"     // the helper is about to stop the service
	eventStopped     = "stopped"      // it stopped it
	eventMigrating   = "migrating"    // migrate --attempt runs next
	eventSucceeded   = "succeeded"    // the schema is migrated and the service as it should be
	eventFailed      = "failed"       // --outcome, --phase, --message: the package manager fails
	eventUnfinished  = "unfinished"   // --outcome, --phase, --message: installed, not migrated
	eventGateRefused = "gate-refused" // --message, --recovery: the gate refused a transaction
)

func (a *app) record(r recordFlags, extra []string) int {
	if len(extra) > 0 {
		return a.usageError("migrate --record: unexpected argument %q", extra[0])
	}
	for _, v := range []struct{ key, val string }{{journal.Outcome, r.outcome}, {journal.Phase, r.phase},
		{journal.Message, r.message}, {journal.Recovery, r.recovery}} {
		if !journal.Valid(v.key, oneSpaced(v.val)) {
			return a.usageError("migrate --record: invalid --%s %q", strings.ToLower(v.key), v.val)
		}
	}
	obs := r.observed
	active := obs["active"] == "yes"
	vars := a.journalVars()
	now := time.Now().UTC().Format(time.RFC3339)
	set := func(k, v string) {
		if v = oneSpaced(v); v == "" || !journal.Valid(k, v) {
			delete(vars, k)
			return
		}
		vars[k] = v
	}
	switch r.event {
	case eventBegin:
		o := journal.Observed{Systemd: obs["systemd"] == "yes", Active: active,
			InactiveSince: obs["inactive-since"], UnitFileState: obs["unit-file-state"],
			InvocationID: obs["invocation-id"], BootID: obs["boot-id"]}
		guardInv := ""
		for _, inv := range a.guardInvocations() {
			if inv != "" && inv == o.InvocationID {
				guardInv = inv
			}
		}
		in := journal.Decide(vars, o, defaults.AppUnit, guardInv)
		if in.Resuming {
			fmt.Fprintf(a.Stderr, "openwatch: resuming after an earlier attempt that ended: %s%s\n", vars[journal.Outcome],
				map[bool]string{true: " (" + vars[journal.Message] + ")", false: ""}[vars[journal.Message] != ""])
		}
		if in.Note != "" {
			fmt.Fprintf(a.Stderr, "openwatch: %s\n", in.Note)
		}
		prevStopped := vars[journal.StoppedAt]
		if !in.Resuming {
			// A new upgrade: nothing of an earlier one is carried.
			vars = map[string]string{}
			prevStopped = ""
		}
		before := map[bool]string{true: "running", false: "stopped"}[in.Running]
		set(journal.ServiceBefore, before)
		set(journal.StoppedAt, prevStopped)
		if prevStopped == "" && active {
			set(journal.UnitFileState, obs["unit-file-state"])
		} else if prevStopped == "" {
			set(journal.UnitFileState, "")
		}
		set(journal.ServiceLeft, map[bool]string{true: "yes", false: "no"}[in.Running && !active])
		set(journal.SchemaChanged, "no")
		set(journal.BootID, obs["boot-id"])
		set(journal.Outcome, "in-progress")
		set(journal.Phase, "check")
		set(journal.Message, "")
		for _, k := range []string{journal.GateRefused, journal.GateMessage, journal.GateRecovery} {
			delete(vars, k)
		}
		fmt.Fprintf(a.Stdout, "%s %s %s\n", before, yesNo(in.Resuming), yesNo(in.GuardRefused))
	case eventStopping:
		set(journal.Outcome, "in-progress")
		set(journal.Phase, "stop")
		set(journal.StoppedAt, "unknown")
	case eventMigrating:
		// Until migrate records what it did, it may have done anything.
		set(journal.Outcome, "in-progress")
		set(journal.Phase, "migrate")
		set(journal.SchemaChanged, "unknown")
	case eventStopped:
		set(journal.Outcome, "in-progress")
		set(journal.Phase, "migrate")
		at := obs["inactive-since"]
		if at == "" {
			at = "unknown"
		}
		set(journal.StoppedAt, at)
		set(journal.UnitFileState, obs["unit-file-state"])
		set(journal.ServiceLeft, map[bool]string{true: "yes", false: "no"}[vars[journal.ServiceBefore] == "running"])
	case eventSucceeded:
		set(journal.Outcome, "succeeded")
		set(journal.Phase, "finished")
		set(journal.ServiceLeft, "no")
		for _, k := range []string{journal.StoppedAt, journal.Recovery, journal.Message, journal.RestorePoint, journal.RestorePointState, journal.Failure} {
			delete(vars, k)
		}
	case eventFailed, eventUnfinished:
		if r.outcome == "" || r.phase == "" || r.message == "" {
			return a.usageError("migrate --record %s needs --outcome, --phase and --message", r.event)
		}
		set(journal.Outcome, r.outcome)
		set(journal.Phase, r.phase)
		set(journal.Message, r.message)
		set(journal.ServiceLeft, map[bool]string{true: "yes", false: "no"}[!active && vars[journal.ServiceBefore] == "running" && vars[journal.StoppedAt] != ""])
		if r.phase != "migrate" && r.phase != "start" {
			set(journal.SchemaChanged, "no")
		}
	case eventGateRefused:
		if r.message == "" {
			return a.usageError("migrate --record gate-refused needs --message")
		}
		set(journal.GateRefused, now)
		set(journal.GateMessage, r.message)
		set(journal.GateRecovery, r.recovery)
		return a.finishRecord(vars)
	default:
		return a.usageError("migrate --record %q: want begin, stopping, stopped, migrating, succeeded, failed, unfinished or gate-refused", r.event)
	}
	if r.recovery != "" {
		set(journal.Recovery, r.recovery)
	}
	set(journal.Updated, now)
	return a.finishRecord(vars)
}

func (a *app) finishRecord(vars map[string]string) int {
	if err := a.writeJournal(vars); err != nil {
		a.errorf("cannot write the upgrade journal %s: %v", a.journalPath, err)
		return ExitError
	}
	return ExitOK
}

// outcomeEvents end an attempt (or a transaction the gate refused): the
// state for monitoring (METRICS_DIR) is rewritten after them, not inside
// the downtime.
var outcomeEvents = map[string]bool{eventSucceeded: true, eventFailed: true, eventUnfinished: true, eventGateRefused: true}

func oneSpaced(s string) string { return strings.Join(strings.Fields(s), " ") }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
