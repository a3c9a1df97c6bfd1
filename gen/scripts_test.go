package gen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Names the expectations use.
const (
	check         = "openwatch migrate --check"
	migrate       = "openwatch migrate --attempt new"
	migrateRetry  = "openwatch migrate --attempt retry"
	isFailed      = "systemctl --quiet is-failed openwatch.service"
	isActive      = "systemctl --quiet is-active openwatch.service"
	unitFileState = "systemctl show -p UnitFileState --value openwatch.service"
	preflight     = "openwatch migrate --preflight"
	list          = "openwatch backup --list"
	exportBg      = "systemd-run --quiet --no-block --collect --unit=openwatch-export.service ROOT/bin/openwatch backup --export"
	exportFg      = "openwatch backup --export"
	stopApp       = "systemctl stop openwatch.service"
	startApp      = "systemctl start openwatch.service"
	reload        = "systemctl --system daemon-reload"
	wasEnabled    = "deb-systemd-helper --quiet was-enabled openwatch-backup-cleanup.timer"
	enableDeb     = "deb-systemd-helper enable openwatch-backup-cleanup.timer"
	groupOK       = "getent group openwatch"
	userOK        = "getent passwd openwatch"
)

type scriptCase struct {
	name      string
	script    string // under dist/
	args      []string
	env       []string
	noSystemd bool
	setup     func(sb *sandbox)
	wantRC    int
	want      []string // commands the stubs recorded, in order
	wantOut   []string // substrings of the output
	check     func(t *testing.T, sb *sandbox)
}

// defaults: schema at head, appliance inactive, user and group exist.
func (c scriptCase) run(t *testing.T) {
	for _, shell := range shells {
		t.Run(shellName(shell), func(t *testing.T) {
			sb := newSandbox(t)
			if !c.noSystemd {
				sb.systemd()
			}
			sb.answer(check, 0)
			sb.answer(isActive, 3)
			if c.setup != nil {
				c.setup(sb)
			}
			rc, out := sb.run(shell, c.script, c.env, c.args...)
			if rc != c.wantRC {
				t.Errorf("exit code %d, want %d; output:\n%s", rc, c.wantRC, out)
			}
			// A failure case without want checks only its output and journal.
			if got := sb.log(); c.want != nil || c.wantRC == 0 {
				if d := Diff("want", "got", lines(c.want), lines(got)); d != "" {
					t.Errorf("commands run (-want +got):\n%s\noutput:\n%s", d, out)
				}
			}
			for _, s := range c.wantOut {
				if !strings.Contains(strings.ReplaceAll(out, sb.root, "ROOT"), s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			if c.check != nil {
				c.check(t, sb)
			}
		})
	}
}

func lines(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, "\n") + "\n"
}

// journalSays checks the upgrade journal's OUTCOME ("" for no journal).
func journalSays(outcome string) func(t *testing.T, sb *sandbox) {
	return func(t *testing.T, sb *sandbox) {
		t.Helper()
		if got := sb.journal()["OUTCOME"]; got != outcome {
			t.Errorf("journal OUTCOME = %q, want %q", got, outcome)
		}
	}
}

// afterFailure leaves the journal an earlier attempt leaves when it stopped
// a running service and then failed.
func afterFailure(sb *sandbox) {
	writeFile(sb.t, sb.spec.Paths.Journal, "OUTCOME=migration-failed\nPHASE=migrate\nSERVICE_BEFORE=running\nSTOPPED_AT=111\nUNIT_FILE_STATE=enabled\nRECOVERY='dpkg --configure -a'\n", 0o600)
}

func TestUpgradeHelper(t *testing.T) {
	const helper = "openwatch-upgrade.sh"
	active := func(sb *sandbox) { sb.answer(isActive, 0) }
	pending := func(sb *sandbox) { sb.answer(check, 10) }
	both := func(fs ...func(*sandbox)) func(*sandbox) {
		return func(sb *sandbox) {
			for _, f := range fs {
				f(sb)
			}
		}
	}
	cases := []scriptCase{
		{
			name:  "pending migrations with the service running: preflight, stop, migrate, start",
			setup: both(active, pending),
			want:  []string{isActive, check, preflight, isActive, stopApp, migrate, startApp},
			check: journalSays("succeeded"),
		},
		{
			name:  "pending migrations with the service stopped: preflight, migrate, service stays stopped",
			setup: pending,
			want:  []string{isActive, check, preflight, isActive, migrate},
			check: journalSays("succeeded"),
		},
		{
			name:    "preflight fails: nothing stopped, nothing applied, the package manager fails",
			env:     []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			setup:   both(active, pending, func(sb *sandbox) { sb.answer(preflight, 13) }),
			wantRC:  1,
			want:    []string{isActive, check, preflight, isActive, isActive, isActive},
			wantOut: []string{"PREFLIGHT FAILED", "the database was not changed and openwatch.service was not stopped", "openwatch.service is running.", "run: dpkg --configure -a"},
			check:   journalSays("preflight-failed"),
		},
		{
			name:  "schema at head with the service running: restart it, no backup",
			setup: active,
			want:  []string{isActive, check, isActive, "systemctl try-restart openwatch.service"},
			check: journalSays("succeeded"),
		},
		{
			name:  "schema at head with the service stopped: nothing",
			want:  []string{isActive, check},
			check: journalSays("succeeded"),
		},
		{
			name: "schema at head after an earlier failed attempt stopped the service: start it, export the clone it may have left",
			setup: both(afterFailure, func(sb *sandbox) {
				sb.output(list, "openwatch_rp_1_20260101t000000z  (clone, package 1.0.0-1, schema 1, 1.0 MiB)")
			}),
			want:  []string{isActive, check, isActive, startApp, list, exportBg},
			check: journalSays("succeeded"),
		},
		{
			name: "after a failed attempt the operator started and stopped the service: it stays stopped",
			setup: both(afterFailure, pending, func(sb *sandbox) {
				sb.output("systemctl show -p InactiveEnterTimestampMonotonic --value openwatch.service", "222")
			}),
			want:    []string{isActive, check, preflight, isActive, migrateRetry, list},
			wantOut: []string{"started or stopped after the earlier attempt stopped it: it stays stopped"},
			check:   journalSays("succeeded"),
		},
		{
			name:    "after a failed attempt the operator masked the service: it stays stopped",
			setup:   both(afterFailure, func(sb *sandbox) { sb.output(unitFileState, "masked") }),
			want:    []string{isActive, check, list},
			wantOut: []string{"masked after the earlier attempt stopped it"},
		},
		{
			name:    "after a failed attempt the operator disabled the service: it stays stopped",
			setup:   both(afterFailure, func(sb *sandbox) { sb.output(unitFileState, "disabled") }),
			want:    []string{isActive, check, list},
			wantOut: []string{"disabled after the earlier attempt stopped it"},
		},
		{
			name: "after a failed attempt a start was refused with no record of the start guard's: it stays stopped, saying how to start it",
			setup: both(afterFailure, pending, func(sb *sandbox) {
				sb.output("systemctl show -p ActiveState --value openwatch.service", "failed")
				sb.output("systemctl show -p InactiveEnterTimestampMonotonic --value openwatch.service", "333")
			}),
			want:    []string{isActive, check, preflight, isActive, migrateRetry, list},
			wantOut: []string{"it stays stopped", "systemctl start openwatch.service"},
			check:   journalSays("succeeded"),
		},
		{
			name:    "after a failed attempt the start guard refused a restart (its record names the unit's last invocation): the service is started after the migration",
			setup:   both(afterFailure, pending, guardRefused(inv1, inv1)),
			want:    []string{isActive, check, preflight, isActive, migrateRetry, isActive, startApp, isActive, list},
			wantOut: []string{"stopped by the start guard's refusal", "not by an operator"},
			check:   journalSays("succeeded"),
		},
		{
			name: "after a failed attempt the guard's record names an older invocation: the operator started and stopped it since, it stays stopped",
			setup: both(afterFailure, pending, guardRefused(inv1, inv2), func(sb *sandbox) {
				sb.output("systemctl show -p InactiveEnterTimestampMonotonic --value openwatch.service", "444")
			}),
			want:    []string{isActive, check, preflight, isActive, migrateRetry, list},
			wantOut: []string{"it stays stopped"},
			check:   journalSays("succeeded"),
		},
		{
			name:  "rerun after a failed migration: migrate, then start the service that ran before",
			setup: both(afterFailure, pending),
			want:  []string{isActive, check, preflight, isActive, migrateRetry, isActive, startApp, list},
			check: journalSays("succeeded"),
		},
		{
			name: "rerun after a failed migration that took a clone, whose own restore point is a file: the earlier clone is exported",
			setup: both(afterFailure, pending, func(sb *sandbox) {
				sb.output(list, "openwatch_rp_1_20260101t000000z  (clone, package 1.0.0-1, schema 1, 1.0 MiB)")
			}),
			want:    []string{isActive, check, preflight, isActive, migrateRetry, isActive, startApp, list, exportBg},
			wantOut: []string{"the restore point an earlier attempt left is exported to a file or compressed in the background"},
			check:   journalSays("succeeded"),
		},
		{
			name: "migration fails under dpkg: service left stopped, journal kept, dpkg retry named",
			env:  []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			setup: both(active, pending, func(sb *sandbox) {
				sb.answer(migrate, 16)
				sb.answer(isActive, 0)
				sb.answer(startApp, 1) // the start guard refuses
				sb.answer(isFailed, 1)
			}),
			wantRC:  1,
			want:    []string{isActive, check, preflight, isActive, stopApp, migrate, list, isActive, isActive, check, startApp, isActive, isFailed},
			wantOut: []string{"MIGRATION FAILED and was rolled back", "openwatch.service is stopped.", "After fixing the cause, run: dpkg --configure -a", "restore one with: ROOT/bin/openwatch restore NAME, NAME as listed"},
			check: func(t *testing.T, sb *sandbox) {
				journalSays("migration-failed")(t, sb)
				j := sb.journal()
				if j["SERVICE_BEFORE"] != "running" || j["RECOVERY"] != "dpkg --configure -a" || j["STOPPED_AT"] == "" ||
					j["SERVICE_STOPPED"] != "yes" {
					t.Errorf("journal = %v", j)
				}
				if m := sb.mode(sb.spec.Paths.Journal); m != 0o640 {
					t.Errorf("journal mode %o, want 640 (root writes, the service's group reads)", m)
				}
			},
		},
		{
			name:    "service fails to start after the migration: exit 1, journal says so",
			setup:   both(active, pending, func(sb *sandbox) { sb.answer(startApp, 1); sb.answer(isFailed, 1) }),
			wantRC:  1,
			want:    []string{isActive, check, preflight, isActive, stopApp, migrate, startApp, isActive, isActive, isFailed},
			wantOut: []string{"journalctl -u openwatch.service", "openwatch.service is stopped.", "run: ROOT/usr/lib/openwatch/openwatch-upgrade.sh"},
			check:   journalSays("start-failed"),
		},
		{
			name: "schema newer than the binary with the service running: stop it, name the restore points, fail",
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 11)
				sb.answer(startApp, 1) // the start guard refuses
				sb.answer(isFailed, 1)
			},
			wantRC:  1,
			want:    []string{isActive, check, isActive, stopApp, list, isActive, isActive, check, startApp, isActive, isFailed},
			wantOut: []string{"NEWER THAN THIS PACKAGE", "ROOT/bin/openwatch restore NAME (NAME as listed above)", "openwatch.service is stopped."},
			check:   journalSays("newer-schema"),
		},
		{
			name:    "schema newer than the binary with the service stopped: fail, nothing stopped",
			setup:   func(sb *sandbox) { sb.answer(check, 11); sb.answer(isFailed, 1) },
			wantRC:  1,
			want:    []string{isActive, check, isActive, list, isActive, isActive, isFailed},
			wantOut: []string{"NEWER THAN THIS PACKAGE", "openwatch.service is stopped."},
		},
		{
			name: "database unreachable: the helper itself is the follow-up, succeed, service untouched",
			env:  []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 12)
			},
			want:    []string{isActive, check, isActive, isActive, isActive},
			wantOut: []string{"UNREACHABLE OR NOT CONFIGURED", "openwatch.service is running;", "When the database is back, run: ROOT/usr/lib/openwatch/openwatch-upgrade.sh"},
			check:   journalSays("unreachable"),
		},
		{
			name:    "check fails otherwise: warn saying what failed, succeed",
			setup:   func(sb *sandbox) { sb.answer(check, 1); sb.answer(isFailed, 1) },
			want:    []string{isActive, check, isActive, isActive, isFailed, isActive, isFailed},
			wantOut: []string{"failed (exit 1", "run: ROOT/usr/lib/openwatch/openwatch-upgrade.sh"},
			check:   journalSays("error"),
		},
		{
			name:      "no systemd running (chroot): migrate, touch no unit",
			noSystemd: true,
			setup:     pending,
			want:      []string{check, preflight, migrate},
		},
		{
			// The postinst never runs the helper under DPKG_ROOT (see
			// dpkgroot_test.go); run by hand inside the target with
			// DPKG_ROOT still exported, it leaves systemd alone.
			name:  "DPKG_ROOT exported when run by hand: systemd is not ours to drive",
			env:   []string{"DPKG_ROOT=/nonexistent"},
			setup: both(active, pending),
			want:  []string{check, preflight, migrate},
		},
	}
	// Each outcome of `openwatch migrate` has its own message and journal entry.
	for rc, o := range map[int]struct{ outcome, say string }{
		13: {"no-restore-point", "NO RESTORE POINT COULD BE TAKEN: nothing was applied."},
		15: {"interrupted", "MIGRATION INTERRUPTED"},
		17: {"migration-failed-partially", "COULD NOT BE ROLLED BACK"},
		18: {"lock-timeout", "LOCK TIMEOUT"},
		12: {"unreachable", "BECAME UNREACHABLE during the migration"},
		19: {"config-error", "CONFIGURATION ERROR"},
		1:  {"error", "openwatch migrate failed (exit 1)"},
	} {
		cases = append(cases, scriptCase{
			name:    fmt.Sprintf("migrate exits %d: %s", rc, o.outcome),
			setup:   both(active, pending, func(sb *sandbox) { sb.answer(migrate, rc); sb.answer(startApp, 1) }),
			wantRC:  1,
			wantOut: []string{o.say, "openwatch.service is stopped", "After fixing the cause, run: ROOT/usr/lib/openwatch/openwatch-upgrade.sh"},
			check:   journalSays(o.outcome),
		})
	}
	for _, c := range cases {
		c.script = helper
		t.Run(c.name, c.run)
	}
}

// guardRefused leaves the start guard's record of a refused invocation and
// makes systemd name the unit's last invocation.
// Invocation IDs as systemd writes them: 32 hex digits.
const inv1, inv2 = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"

func guardRefused(recorded, last string) func(sb *sandbox) {
	return func(sb *sandbox) {
		writeFile(sb.t, sb.spec.GuardRecord(), "INVOCATION_ID="+recorded+"\nEXIT=10\n", 0o644)
		sb.output("systemctl show -p InvocationID --value openwatch.service", last)
	}
}

func restorePointKept(t *testing.T, sb *sandbox) {
	t.Helper()
	if !sb.exists(filepath.Join(sb.spec.Paths.BackupDir, "openwatch_1.0.0-1_schema-1_20260101T000000Z.dump")) {
		t.Error("restore point deleted")
	}
}

// calls returns the recorded commands starting with prefix, without
// clearing the log.
func (sb *sandbox) calls(prefix string) []string {
	b, _ := os.ReadFile(filepath.Join(sb.root, "log"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, strings.ReplaceAll(l, sb.root, "ROOT"))
		}
	}
	return out
}

// migrateRecords makes the stub `openwatch migrate --attempt KIND` record a
// restore point in the journal, as the binary does.
func migrateRecords(kind, restorePoint string) func(sb *sandbox) {
	return migrateWrites(kind, `RESTORE_POINT="`+restorePoint+`"`)
}

// migrateWrites: migrate --attempt KIND appends line to the journal, as the
// binary records what its attempt did.
func migrateWrites(kind, line string) func(sb *sandbox) {
	return func(sb *sandbox) {
		bin := sb.spec.Paths.Binary
		real := filepath.Join(sb.root, "real", "openwatch") // the same name: the stub keys on it
		os.MkdirAll(filepath.Dir(real), 0o755)
		if err := os.Rename(bin, real); err != nil {
			sb.t.Fatal(err)
		}
		writeFile(sb.t, bin, "#!/bin/sh\nif [ \"$1 $2 $3\" = \"migrate --attempt "+kind+"\" ]; then\n"+
			"\tprintf '%s\\n' "+shQuote(line)+" >>"+shQuote(sb.spec.Paths.Journal)+"\nfi\nexec "+shQuote(real)+" \"$@\"\n", 0o755)
	}
}

// A failure is visible after the package manager's output is gone: the
// login message and the system journal at priority err name it and the one
// command; the upgrade journal keeps its one-line reason and the binary's
// lines. The successful recovery takes the login message away.
func TestAFailureStaysVisibleUntilTheRecoverySucceeds(t *testing.T) {
	for _, shell := range shells {
		t.Run(shellName(shell), func(t *testing.T) {
			sb := newSandbox(t)
			sb.systemd()
			sb.answer(check, 10)
			sb.answer(isActive, 0)
			sb.answer(migrate, 16)
			sb.answer(startApp, 1)
			migrateRecords("new", "/var/backups/openwatch/openwatch_1.1.0-1_schema-1_20260101T000000Z.dump")(sb)
			env := []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"}
			if rc, out := sb.exec(shell, sb.spec.UpgradeHelper(), env); rc != 1 {
				t.Fatalf("exit %d, want 1:\n%s", rc, out)
			}
			motd, err := os.ReadFile(sb.spec.Paths.Motd)
			if err != nil || !strings.Contains(string(motd), "a migration failed and was rolled back") || !strings.Contains(string(motd), "run: dpkg --configure -a") {
				t.Errorf("login message %q (%v), want the reason and dpkg --configure -a", motd, err)
			}
			logged := sb.calls("logger ")
			if len(logged) != 1 || !strings.HasPrefix(logged[0], "logger -t openwatch-upgrade -p user.err -- THE UPGRADE FAILED: a migration failed and was rolled back.") ||
				!strings.HasSuffix(logged[0], "After fixing the cause, run: dpkg --configure -a") {
				t.Errorf("system journal: %q, want one line at priority err with the reason and the command", logged)
			}
			j := sb.journal()
			if j["MESSAGE"] != "a migration failed and was rolled back" || j["RESTORE_POINT"] == "" || j["SERVICE_STOPPED"] != "yes" {
				t.Errorf("journal = %v, want MESSAGE and the binary's RESTORE_POINT", j)
			}
			if got := sb.calls(startApp); len(got) != 1 {
				t.Errorf("the failure did not ask for the start the guard refuses (the unit's failed state): %q", got)
			}
			sb.log()

			sb.answer(migrateRetry, 0)
			sb.answer(startApp, 0)
			if rc, out := sb.exec(shell, sb.spec.UpgradeHelper(), nil); rc != 0 {
				t.Fatalf("retry exit %d:\n%s", rc, out)
			}
			if sb.exists(sb.spec.Paths.Motd) {
				t.Error("the login message outlived the successful recovery")
			}
			if got := sb.calls("logger "); len(got) != 1 || !strings.Contains(got[0], "-p user.notice") {
				t.Errorf("system journal after the recovery: %q", got)
			}
			if j := sb.journal(); j["OUTCOME"] != "succeeded" || j["RESTORE_POINT"] != "" || j["MESSAGE"] != "" || j["SERVICE_STOPPED"] != "no" {
				t.Errorf("journal after the recovery = %v", j)
			}
		})
	}
}

// After the start, the restore point is finished in the background as what
// it is: a clone exported to a file, a file (written uncompressed in the
// downtime) compressed; neither is called the other.
func TestTheRestorePointIsFinishedInTheBackgroundAsWhatItIs(t *testing.T) {
	for _, tc := range []struct {
		name, rp string
		want     []string
		say      string
	}{
		{"a clone", "openwatch_rp_1_20260101t000000z", []string{isActive, check, preflight, isActive, migrate, exportBg}, "the clone restore point openwatch_rp_1_20260101t000000z is exported to a file in the background"},
		{"a file", "/var/backups/openwatch/openwatch_1.1.0-1_schema-1_20260101T000000Z.dump", []string{isActive, check, preflight, isActive, migrate, exportBg},
			"the restore point file /var/backups/openwatch/openwatch_1.1.0-1_schema-1_20260101T000000Z.dump is compressed in the background"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			sb.systemd()
			sb.answer(check, 10)
			sb.answer(isActive, 3)
			migrateRecords("new", tc.rp)(sb)
			rc, out := sb.exec(shells[0], sb.spec.UpgradeHelper(), nil)
			if rc != 0 {
				t.Fatalf("exit %d:\n%s", rc, out)
			}
			if d := Diff("want", "got", lines(tc.want), lines(sb.log())); d != "" {
				t.Errorf("commands run (-want +got):\n%s", d)
			}
			if tc.say != "" && !strings.Contains(out, tc.say) || tc.say == "" && strings.Contains(out, "clone") {
				t.Errorf("output:\n%s\nwant it to say %q (and nothing of clones for a file)", out, tc.say)
			}
		})
	}
}

// A retry tells the binary it is one (--attempt retry): whether the earlier
// attempt's restore point is reused is the binary's decision, from what the
// database server says (internal/cli), never from the service's timestamps.
// A failed retry keeps that restore point in the journal.
func TestARetryTellsTheBinaryAndKeepsTheEarlierRestorePoint(t *testing.T) {
	sb := newSandbox(t)
	sb.systemd()
	writeFile(t, sb.spec.Paths.Journal, "OUTCOME=migration-failed\nPHASE=migrate\nSERVICE_BEFORE=running\nSTOPPED_AT=111\n"+
		"UNIT_FILE_STATE=enabled\nRECOVERY='dpkg --configure -a'\nRESTORE_POINT=\"/var/backups/openwatch/x.dump\"\n", 0o600)
	sb.answer(check, 10)
	sb.answer(isActive, 3)
	sb.answer(migrateRetry, 16)
	sb.answer(startApp, 1)
	sb.exec(shells[0], sb.spec.UpgradeHelper(), nil)
	if got := sb.calls("openwatch migrate --attempt"); len(got) != 1 || got[0] != migrateRetry {
		t.Errorf("ran %q, want %s", got, migrateRetry)
	}
	if j := sb.journal(); j["RESTORE_POINT"] != "/var/backups/openwatch/x.dump" {
		t.Errorf("the failed retry lost the earlier attempt's restore point from the journal: %v", j)
	}
}

// The upgrade migrates the database the service uses: a DSN or PG*
// variables exported in root's shell never reach the binary, which reads
// the service's own configuration.
func TestTheHelperRunsTheBinaryWithoutRootsDatabaseSettings(t *testing.T) {
	sb := newSandbox(t)
	sb.systemd()
	sb.answer(isActive, 0)
	sb.answer(check, 10)
	// A shim in the binary's place records what each run received, then
	// answers as the stub does.
	stub := filepath.Join(sb.root, "stubs", "openwatch")
	writeFile(t, stub, stubScriptFor(sb.root), 0o755)
	writeFile(t, sb.spec.Paths.Binary, "#!/bin/sh\nenv >>"+shQuote(filepath.Join(sb.root, "env"))+"\necho --- >>"+shQuote(filepath.Join(sb.root, "env"))+
		"\nexec "+shQuote(stub)+" \"$@\"\n", 0o755)
	env := []string{"OPENWATCH_DATABASE_DSN=postgres://root@elsewhere/other", "PGHOST=elsewhere", "PGDATABASE=other", "PGPASSWORD=hunter2", "PGSERVICE=x"}
	if rc, out := sb.exec(shells[0], sb.spec.UpgradeHelper(), env); rc != 0 {
		t.Fatalf("exit %d:\n%s", rc, out)
	}
	got, err := os.ReadFile(filepath.Join(sb.root, "env"))
	if err != nil || strings.Count(string(got), "---") < 3 {
		t.Fatalf("the shim recorded %q (%v), want every run of the binary", got, err)
	}
	for _, v := range []string{"OPENWATCH_DATABASE_DSN=", "PGHOST=", "PGDATABASE=", "PGPASSWORD=", "PGSERVICE="} {
		if strings.Contains(string(got), v) {
			t.Errorf("the binary received %s from root's shell:\n%s", v, got)
		}
	}
	if !strings.Contains(string(got), "OPENWATCH_RECOVERY_COMMAND=") || !strings.Contains(string(got), "PATH=") {
		t.Errorf("the binary did not receive what it needs (PATH, OPENWATCH_RECOVERY_COMMAND):\n%s", got)
	}
}

// Exit 15 after the binary recorded that nothing was applied (interrupted
// while taking the restore point) says so, not that a migration completed.
func TestAnInterruptionBeforeAnyMigrationSaysNothingWasApplied(t *testing.T) {
	for _, tc := range []struct{ changed, want, not string }{
		{"no", "INTERRUPTED before any migration was applied (while taking the restore point): nothing was applied.", "MIGRATION INTERRUPTED"},
		{"yes", "MIGRATION INTERRUPTED: the migration in progress completed", "before any migration"},
	} {
		sb := newSandbox(t)
		sb.systemd()
		sb.answer(isActive, 0)
		sb.answer(check, 10)
		sb.answer(migrate, 15)
		migrateWrites("new", "SCHEMA_CHANGED="+tc.changed)(sb)
		rc, out := sb.exec(shells[0], sb.spec.UpgradeHelper(), nil)
		if rc != 1 || !strings.Contains(out, tc.want) || strings.Contains(out, tc.not) {
			t.Errorf("SCHEMA_CHANGED=%s: exit %d, want 1 and %q without %q:\n%s", tc.changed, rc, tc.want, tc.not, out)
		}
	}
}

// A retry whose preflight fails while the earlier attempt left the service
// stopped does not claim the service was not stopped.
func TestAResumedPreflightFailureSaysTheServiceIsStillStopped(t *testing.T) {
	sb := newSandbox(t)
	sb.systemd()
	afterFailure(sb)
	sb.answer(isActive, 3)
	sb.answer(check, 10)
	sb.answer(preflight, 16)
	rc, out := sb.exec(shells[0], sb.spec.UpgradeHelper(), []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"})
	if rc != 1 || strings.Contains(out, "was not stopped") ||
		!strings.Contains(out, "this attempt changed nothing; openwatch.service is still stopped by the earlier attempt, whose applied migrations stay applied") {
		t.Errorf("exit %d, want 1 and the truth about the earlier attempt's stop:\n%s", rc, out)
	}
}
