package gen

import "testing"

// Exit 14 from migrate --check (an applied migration differs from the
// shipped file) is a preflight failure: nothing stopped, nothing applied,
// the package manager fails.
func TestUpgradeHelperTreatsAChecksumMismatchLikeAFailedPreflight(t *testing.T) {
	scriptCase{
		name:   "checksum mismatch",
		script: "openwatch-upgrade.sh",
		env:    []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
		setup: func(sb *sandbox) {
			sb.answer(isActive, 0)
			sb.answer(check, 14)
		},
		wantRC: 1,
		want:   []string{isActive, check, isActive, isActive, isActive},
		wantOut: []string{"MIGRATION CHECKSUM MISMATCH", "the database was not changed and openwatch.service was not stopped",
			"Install again the package version that applied it", "openwatch.service is running.", "run: dpkg --configure -a"},
		check: journalSays("preflight-failed"),
	}.run(t)
}
