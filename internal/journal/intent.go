package journal

import (
	"regexp"
	"strings"
)

// Observed is what the upgrade helper saw of the service's unit when it
// started (systemctl show), passed to the binary as arguments.
type Observed struct {
	Systemd       bool   // systemd is the running init (and no DPKG_ROOT)
	Active        bool   // the unit is active now
	InactiveSince string // InactiveEnterTimestampMonotonic ("" or "0": never)
	UnitFileState string // enabled, disabled, masked, …
	InvocationID  string // the unit's last invocation
	BootID        string // /proc/sys/kernel/random/boot_id
}

// Intent is what the upgrade does with the service.
type Intent struct {
	Running      bool   // start the service again once the schema is migrated
	Resuming     bool   // an earlier attempt of this upgrade did not succeed
	GuardRefused bool   // the unit's last start was refused by the start guard
	Note         string // why a service that ran before stays stopped, or is started again; "" when plain
}

var invocationRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// GuardInvocation returns the invocation ID the start guard recorded when it
// refused a start, from the record's text: "" unless it is a well-formed ID.
func GuardInvocation(record []byte) string {
	id := ""
	for _, line := range strings.Split(string(record), "\n") {
		if v, ok := strings.CutPrefix(line, "INVOCATION_ID="); ok {
			id = strings.TrimSpace(v)
		}
	}
	if !invocationRE.MatchString(id) {
		return ""
	}
	return id
}

// ReadGuardRecord reads the start guard's record of a refused start, which
// the service account writes in its own directory: never through a link,
// only a small regular file, and only the invocation ID is taken from it.
func ReadGuardRecord(path string) string {
	b, err := readPlain(path, -1)
	if err != nil {
		return ""
	}
	return GuardInvocation(b)
}

// Decide applies the rules for the service across attempts of one upgrade:
// a service that runs now runs again; one that an earlier, unfinished
// attempt found running and stopped runs again, unless anything since says
// an operator wants it down (masked, disabled, started or stopped again,
// the machine restarted). A start the guard refused is not an operator's
// stop. Whatever cannot be told counts as "leave it to the operator".
func Decide(prev map[string]string, o Observed, unit, guardInvocation string) Intent {
	in := Intent{Resuming: prev[Outcome] != "" && prev[Outcome] != "succeeded"}
	in.GuardRefused = o.Systemd && !o.Active && guardInvocation != "" && guardInvocation == o.InvocationID
	stays := func(why string) Intent {
		in.Note = unit + " " + why + ": it stays stopped (start it yourself once this succeeds: systemctl start " + unit + ")."
		return in
	}
	switch {
	case o.Active:
		in.Running = true
		return in
	case !in.Resuming || prev[ServiceBefore] != "running" || !o.Systemd:
		return in
	case strings.HasPrefix(o.UnitFileState, "masked"):
		in.Note = unit + " was masked after the earlier attempt stopped it: it stays stopped."
		return in
	case prev[UnitFileState] == "enabled" && o.UnitFileState != "" && o.UnitFileState != "enabled":
		in.Note = unit + " was disabled after the earlier attempt stopped it: it stays stopped."
		return in
	case in.GuardRefused:
		in.Running = true
		in.Note = unit + " was stopped by the start guard's refusal (a restart while the schema was not migrated), " +
			"not by an operator: it is started again once the schema is migrated."
		return in
	case prev[StoppedAt] == "":
		return stays("was stopped after the earlier attempt")
	case prev[BootID] != "" && o.BootID != "" && prev[BootID] != o.BootID:
		return stays("has not run since the machine restarted after the earlier attempt")
	case prev[StoppedAt] != "unknown" && o.InactiveSince != "" && o.InactiveSince != "0" && o.InactiveSince != prev[StoppedAt]:
		return stays("was started or stopped after the earlier attempt stopped it")
	}
	in.Running = true
	return in
}
