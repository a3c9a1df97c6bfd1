package cli

import (
	"fmt"

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
	Updated         string `json:"updated"`
}

// lastUpgrade reads the journal; nil when there is none.
func (a *app) lastUpgrade() *lastUpgrade {
	vars, _, err := envfile.Read(a.journalPath)
	if err != nil || vars["OUTCOME"] == "" {
		return nil
	}
	l := &lastUpgrade{Outcome: vars["OUTCOME"], Phase: vars["PHASE"], ServiceBefore: vars["SERVICE_BEFORE"],
		RecoveryCommand: vars["RECOVERY"], Updated: vars["UPDATED"]}
	if l.Outcome == "succeeded" {
		l.RecoveryCommand = ""
	}
	return l
}

func (l *lastUpgrade) describe() string {
	switch {
	case l == nil:
		return "none recorded"
	case l.RecoveryCommand == "":
		return fmt.Sprintf("%s (%s)", l.Outcome, l.Updated)
	}
	return fmt.Sprintf("%s in phase %s (%s); to recover, run: %s", l.Outcome, l.Phase, l.Updated, l.RecoveryCommand)
}
