package gen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Names the expectations use.
const (
	check      = "openwatch migrate --check"
	migrate    = "openwatch migrate"
	isActive   = "systemctl --quiet is-active openwatch.service"
	stopApp    = "systemctl stop openwatch.service"
	startApp   = "systemctl start openwatch.service"
	reload     = "systemctl --system daemon-reload"
	wasEnabled = "deb-systemd-helper --quiet was-enabled openwatch-backup-cleanup.timer"
	enableDeb  = "deb-systemd-helper enable openwatch-backup-cleanup.timer"
	groupOK    = "getent group openwatch"
	userOK     = "getent passwd openwatch"
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
			if d := Diff("want", "got", lines(c.want), lines(sb.log())); d != "" {
				t.Errorf("commands run (-want +got):\n%s\noutput:\n%s", d, out)
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

func markerExists(want bool) func(t *testing.T, sb *sandbox) {
	return func(t *testing.T, sb *sandbox) {
		t.Helper()
		if got := sb.exists(sb.spec.Paths.Marker); got != want {
			t.Errorf("marker exists = %v, want %v", got, want)
		}
	}
}

func withMarker(sb *sandbox) { writeFile(sb.t, sb.spec.Paths.Marker, "", 0o600) }

func TestUpgradeHelper(t *testing.T) {
	const helper = "openwatch-upgrade.sh"
	active := func(sb *sandbox) { sb.answer(isActive, 0) }
	cases := []scriptCase{
		{
			name: "pending migrations with the service running: stop, migrate, start",
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 10)
			},
			want:  []string{check, isActive, stopApp, migrate, startApp},
			check: markerExists(false),
		},
		{
			name:  "pending migrations with the service stopped: migrate, service stays stopped",
			setup: func(sb *sandbox) { sb.answer(check, 10) },
			want:  []string{check, isActive, migrate},
			check: markerExists(false),
		},
		{
			name:  "schema at head with the service running: restart it, no backup",
			setup: active,
			want:  []string{check, isActive, "systemctl try-restart openwatch.service"},
			check: markerExists(false),
		},
		{
			name:  "schema at head with the service stopped: nothing",
			want:  []string{check, isActive},
			check: markerExists(false),
		},
		{
			name:  "schema at head after an earlier failed attempt: start what it stopped",
			setup: withMarker,
			want:  []string{check, startApp},
			check: markerExists(false),
		},
		{
			name: "migration fails under dpkg: service left stopped, marker kept, dpkg retry named",
			env:  []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 10)
				sb.answer(migrate, 1)
			},
			wantRC:  1,
			want:    []string{check, isActive, stopApp, migrate},
			wantOut: []string{"MIGRATION FAILED", "dpkg --configure -a", "openwatch restore FILE", "(none in ROOT/var/backups/openwatch)"},
			check:   markerExists(true),
		},
		{
			name: "restore point cannot be taken under rpm: service left stopped, helper rerun named",
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 10)
				sb.answer(migrate, 13)
			},
			wantRC:  1,
			want:    []string{check, isActive, stopApp, migrate},
			wantOut: []string{"MIGRATION FAILED", "ROOT/usr/lib/openwatch/openwatch-upgrade.sh"},
			check:   markerExists(true),
		},
		{
			name: "rerun after a failed migration: migrate, then start the service that ran before",
			setup: func(sb *sandbox) {
				withMarker(sb)
				sb.answer(check, 10)
			},
			want:  []string{check, isActive, migrate, startApp},
			check: markerExists(false),
		},
		{
			name: "service fails to start after the migration: exit 1, marker kept",
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 10)
				sb.answer(startApp, 1)
			},
			wantRC:  1,
			want:    []string{check, isActive, stopApp, migrate, startApp},
			wantOut: []string{"journalctl -u openwatch.service"},
			check:   markerExists(true),
		},
		{
			name: "schema newer than the binary with the service running: stop it, name the restore points, fail",
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 11)
				writeFile(sb.t, filepath.Join(sb.spec.Paths.BackupDir, "openwatch_1.1.0-1_schema-2_20260101T000000Z.dump"), "", 0o600)
			},
			wantRC: 1,
			want:   []string{check, isActive, stopApp},
			wantOut: []string{"NEWER THAN THIS PACKAGE", "ROOT/bin/openwatch restore FILE",
				"ROOT/var/backups/openwatch/openwatch_1.1.0-1_schema-2_20260101T000000Z.dump"},
			check: markerExists(true),
		},
		{
			name:    "schema newer than the binary with the service stopped: fail, nothing stopped",
			setup:   func(sb *sandbox) { sb.answer(check, 11) },
			wantRC:  1,
			want:    []string{check, isActive},
			check:   markerExists(false),
			wantOut: []string{"NEWER THAN THIS PACKAGE"},
		},
		{
			name: "database unreachable: warn with the follow-up commands, succeed, service untouched",
			setup: func(sb *sandbox) {
				active(sb)
				sb.answer(check, 12)
			},
			want: []string{check},
			wantOut: []string{"unreachable or not configured", "ROOT/bin/openwatch migrate --status",
				"ROOT/etc/openwatch/secrets.env", "systemctl start openwatch.service"},
			check: markerExists(false),
		},
		{
			name:    "check fails otherwise: warn saying what failed, succeed",
			setup:   func(sb *sandbox) { sb.answer(check, 1) },
			want:    []string{check},
			wantOut: []string{"failed (exit 1)", "ROOT/bin/openwatch migrate --status"},
		},
		{
			name:    "check usage error: warn, succeed",
			setup:   func(sb *sandbox) { sb.answer(check, 2) },
			want:    []string{check},
			wantOut: []string{"failed (exit 2)"},
		},
		{
			name:      "no systemd running (chroot): migrate, touch no unit",
			noSystemd: true,
			setup:     func(sb *sandbox) { sb.answer(check, 10) },
			want:      []string{check, migrate},
		},
		{
			name:  "DPKG_ROOT set: systemd is not ours to drive",
			env:   []string{"DPKG_ROOT=/nonexistent"},
			setup: func(sb *sandbox) { active(sb); sb.answer(check, 10) },
			want:  []string{check, migrate},
		},
	}
	for _, c := range cases {
		c.script = helper
		t.Run(c.name, c.run)
	}
}

func TestDebMaintainerScripts(t *testing.T) {
	const (
		timerRestart = "deb-systemd-invoke restart openwatch-backup-cleanup.timer"
		timerStart   = "deb-systemd-invoke start openwatch-backup-cleanup.timer"
	)
	noUser := func(sb *sandbox) {
		sb.answer(groupOK, 2)
		sb.answer(userOK, 2)
	}
	withRestorePoint := func(sb *sandbox) {
		writeFile(sb.t, filepath.Join(sb.spec.Paths.BackupDir, "openwatch_1.0.0-1_schema-1_20260101T000000Z.dump"), "x", 0o600)
		withMarker(sb)
	}
	cases := []scriptCase{
		{name: "preinst install creates the group and user", script: "deb/preinst", args: []string{"install"}, setup: noUser,
			want: []string{groupOK, "groupadd --system openwatch", userOK,
				"useradd --system --gid openwatch --home-dir ROOT/var/lib/openwatch --no-create-home --shell /usr/sbin/nologin --comment openwatch appliance openwatch"}},
		{name: "preinst install without useradd falls back to adduser", script: "deb/preinst", args: []string{"install"},
			setup: func(sb *sandbox) {
				noUser(sb)
				os.Remove(filepath.Join(sb.root, "bin/groupadd"))
				os.Remove(filepath.Join(sb.root, "bin/useradd"))
			},
			want: []string{groupOK, "addgroup --system openwatch", userOK,
				"adduser --system --ingroup openwatch --home ROOT/var/lib/openwatch --no-create-home --shell /usr/sbin/nologin --gecos openwatch appliance openwatch"}},
		{name: "preinst install keeps an existing user", script: "deb/preinst", args: []string{"install"}, want: []string{groupOK, userOK}},
		{name: "preinst upgrade keeps an existing user", script: "deb/preinst", args: []string{"upgrade", "1.0.0-1"}, want: []string{groupOK, userOK}},
		{name: "preinst abort-upgrade does nothing", script: "deb/preinst", args: []string{"abort-upgrade", "1.1.0-1"}},

		{name: "postinst configure on a fresh install enables the timer, prints setup, no helper", script: "deb/postinst", args: []string{"configure", ""},
			want:    []string{reload, wasEnabled, enableDeb, timerStart},
			wantOut: []string{"OPENWATCH_DATABASE_DSN=", "ROOT/etc/openwatch/secrets.env", "ROOT/bin/openwatch migrate"}},
		{name: "postinst configure without systemd enables the timer offline", script: "deb/postinst", args: []string{"configure"}, noSystemd: true,
			want: []string{wasEnabled, enableDeb}},
		{name: "postinst configure on upgrade runs the helper", script: "deb/postinst", args: []string{"configure", "1.0.0-1"},
			want: []string{reload, wasEnabled, enableDeb, timerRestart, check, isActive}},
		{name: "postinst configure on upgrade keeps an administrator's disabled timer", script: "deb/postinst", args: []string{"configure", "1.0.0-1"},
			setup: func(sb *sandbox) { sb.answer(wasEnabled, 1) },
			want:  []string{reload, wasEnabled, "deb-systemd-helper update-state openwatch-backup-cleanup.timer", timerRestart, check, isActive}},
		{name: "postinst configure fails when the migration fails", script: "deb/postinst", args: []string{"configure", "1.0.0-1"},
			env: []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			setup: func(sb *sandbox) {
				sb.answer(check, 10)
				sb.answer(isActive, 0)
				sb.answer(migrate, 1)
			},
			wantRC:  1,
			want:    []string{reload, wasEnabled, enableDeb, timerRestart, check, isActive, stopApp, migrate},
			wantOut: []string{"dpkg --configure -a"}},
		{name: "postinst abort-upgrade does nothing", script: "deb/postinst", args: []string{"abort-upgrade", "1.1.0-1"}},
		{name: "postinst abort-remove does nothing", script: "deb/postinst", args: []string{"abort-remove"}},
		{name: "postinst rejects an unknown argument", script: "deb/postinst", args: []string{"bogus"}, wantRC: 1},

		{name: "prerm remove stops the timer and its service", script: "deb/prerm", args: []string{"remove"},
			want: []string{"deb-systemd-invoke stop openwatch-backup-cleanup.timer openwatch-backup-cleanup.service"}},
		{name: "prerm upgrade stops nothing", script: "deb/prerm", args: []string{"upgrade", "1.1.0-1"}},
		{name: "prerm failed-upgrade stops nothing", script: "deb/prerm", args: []string{"failed-upgrade", "1.0.0-1"}},

		{name: "postrm remove reloads and masks the timer, keeps restore points", script: "deb/postrm", args: []string{"remove"},
			setup: withRestorePoint,
			want:  []string{reload, "deb-systemd-helper mask openwatch-backup-cleanup.timer"},
			check: func(t *testing.T, sb *sandbox) {
				restorePointKept(t, sb)
				markerExists(true)(t, sb)
			}},
		{name: "postrm purge forgets the timer, removes the marker, keeps restore points", script: "deb/postrm", args: []string{"purge"},
			setup: withRestorePoint,
			want: []string{reload, "deb-systemd-helper purge openwatch-backup-cleanup.timer",
				"deb-systemd-helper unmask openwatch-backup-cleanup.timer"},
			wantOut: []string{"restore points in ROOT/var/backups/openwatch"},
			check: func(t *testing.T, sb *sandbox) {
				restorePointKept(t, sb)
				markerExists(false)(t, sb)
			}},
		{name: "postrm upgrade does nothing", script: "deb/postrm", args: []string{"upgrade", "1.1.0-1"}},
		{name: "postrm abort-upgrade does nothing", script: "deb/postrm", args: []string{"abort-upgrade", "1.0.0-1"}},
		{name: "postrm abort-install does nothing", script: "deb/postrm", args: []string{"abort-install"}},
		{name: "postrm failed-upgrade does nothing", script: "deb/postrm", args: []string{"failed-upgrade", "1.0.0-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func restorePointKept(t *testing.T, sb *sandbox) {
	t.Helper()
	if !sb.exists(filepath.Join(sb.spec.Paths.BackupDir, "openwatch_1.0.0-1_schema-1_20260101T000000Z.dump")) {
		t.Error("restore point deleted")
	}
}

func TestRPMScriptlets(t *testing.T) {
	const (
		timerTryRestart = "systemctl try-restart openwatch-backup-cleanup.timer"
	)
	noUser := func(sb *sandbox) {
		sb.answer(groupOK, 2)
		sb.answer(userOK, 2)
	}
	cases := []scriptCase{
		{name: "pre 1 creates the group and user", script: "rpm/pre.sh", args: []string{"1"}, setup: noUser,
			want: []string{groupOK, "groupadd --system openwatch", userOK,
				"useradd --system --gid openwatch --home-dir ROOT/var/lib/openwatch --no-create-home --shell /usr/sbin/nologin --comment openwatch appliance openwatch"}},
		{name: "pre 2 keeps an existing user", script: "rpm/pre.sh", args: []string{"2"}, want: []string{groupOK, userOK}},

		{name: "post 1 enables and starts the timer, prints setup, no helper", script: "rpm/post.sh", args: []string{"1"},
			want:    []string{reload, "systemctl --no-reload enable openwatch-backup-cleanup.timer", "systemctl start openwatch-backup-cleanup.timer"},
			wantOut: []string{"OPENWATCH_DATABASE_DSN="}},
		{name: "post 1 without systemd enables the timer offline", script: "rpm/post.sh", args: []string{"1"}, noSystemd: true,
			want: []string{"systemctl --no-reload enable openwatch-backup-cleanup.timer"}},
		{name: "post 2 runs the helper", script: "rpm/post.sh", args: []string{"2"},
			want: []string{reload, timerTryRestart, check, isActive}},
		{name: "post 2 fails when the migration fails", script: "rpm/post.sh", args: []string{"2"},
			setup: func(sb *sandbox) {
				sb.answer(check, 10)
				sb.answer(migrate, 1)
			},
			wantRC:  1,
			want:    []string{reload, timerTryRestart, check, isActive, migrate},
			wantOut: []string{"ROOT/usr/lib/openwatch/openwatch-upgrade.sh"}},
		{name: "post rejects a non-count", script: "rpm/post.sh", args: []string{"configure"}, wantRC: 1},

		{name: "preun 0 stops and disables the timer", script: "rpm/preun.sh", args: []string{"0"},
			want: []string{"systemctl stop openwatch-backup-cleanup.timer openwatch-backup-cleanup.service",
				"systemctl --no-reload disable openwatch-backup-cleanup.timer"}},
		{name: "preun 1 (old package during upgrade) does nothing", script: "rpm/preun.sh", args: []string{"1"}},
		{name: "postun 0 reloads systemd", script: "rpm/postun.sh", args: []string{"0"}, want: []string{reload}},
		{name: "postun 1 (old package during upgrade) only try-restarts the timer", script: "rpm/postun.sh", args: []string{"1"},
			want: []string{reload, timerTryRestart}},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}
