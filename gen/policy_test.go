package gen

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// What the DEB systemd snippets run: debhelper 13.11.4's autoscripts for
// the cleanup timer (templates/maint/systemd*.deb-*.tmpl).
const (
	unmaskDeb     = "deb-systemd-helper unmask openwatch-backup-cleanup.timer"
	updateState   = "deb-systemd-helper update-state openwatch-backup-cleanup.timer"
	invokeStart   = "deb-systemd-invoke start openwatch-backup-cleanup.timer"
	invokeRestart = "deb-systemd-invoke restart openwatch-backup-cleanup.timer"
	invokeStop    = "deb-systemd-invoke stop openwatch-backup-cleanup.service openwatch-backup-cleanup.timer"
	purgeDeb      = "deb-systemd-helper purge openwatch-backup-cleanup.timer"
	maskDeb       = "deb-systemd-helper mask openwatch-backup-cleanup.timer"
)

// The RPM systemd snippets: systemd-rpm-macros' %systemd_post (enable),
// %systemd_preun and %systemd_postun_with_restart for the timer.
const (
	enableRPM     = "systemctl --no-reload enable openwatch-backup-cleanup.timer"
	startRPM      = "systemctl start openwatch-backup-cleanup.timer"
	disableNowRPM = "systemctl --no-reload disable --now openwatch-backup-cleanup.timer openwatch-backup-cleanup.service"
	tryRestartRPM = "systemctl try-restart openwatch-backup-cleanup.timer"
)

const (
	useradd  = "useradd --system --gid openwatch --home-dir ROOT/var/lib/openwatch --no-create-home --shell /usr/sbin/nologin --comment openwatch appliance openwatch"
	groupadd = "groupadd --system openwatch"
)

// enableTimer is postinst-systemd-enable with the timer enabled before (or
// never installed: was-enabled defaults to true).
var enableTimer = []string{unmaskDeb, wasEnabled, enableDeb}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func noAccounts(sb *sandbox) {
	sb.answer(groupOK, 2)
	sb.answer(userOK, 2)
}

const restorePoint = "openwatch_1.0.0-1_schema-1_20260101T000000Z.dump"

// earlierState is what an installed package leaves: a restore point and the
// journal of a failed upgrade.
func earlierState(sb *sandbox) {
	writeFile(sb.t, filepath.Join(sb.spec.Paths.BackupDir, restorePoint), "x", 0o600)
	afterFailure(sb)
}

// kept: the restore point and the journal are as earlierState left them.
func kept(t *testing.T, sb *sandbox) {
	t.Helper()
	restorePointKept(t, sb)
	journalSays("migration-failed")(t, sb)
}

// keptButJournal: the restore point is kept, the journal is gone.
func keptButJournal(t *testing.T, sb *sandbox) {
	t.Helper()
	restorePointKept(t, sb)
	journalSays("")(t, sb)
}

// Every invocation form of Debian Policy ch. 6 ("Package maintainer
// scripts and installation procedure"), each script with each of its
// forms, with systemd running, the user existing, the schema at head and
// the appliance stopped: which commands run, with which arguments, the exit
// code, and what happens to the journal and the restore points.
func TestDebPolicyForms(t *testing.T) {
	helper := []string{isActive, check} // the helper, schema at head
	cases := []scriptCase{
		// preinst (6.5)
		{name: "preinst install", script: "deb/preinst", args: []string{"install"}, setup: earlierState,
			want: []string{groupOK, userOK}, check: kept},
		{name: "preinst install old-version (reinstall after remove)", script: "deb/preinst", args: []string{"install", "1.0.0-1"}, setup: earlierState,
			want: []string{groupOK, userOK}, check: kept},
		{name: "preinst upgrade old-version", script: "deb/preinst", args: []string{"upgrade", "1.0.0-1"}, setup: earlierState,
			want: []string{groupOK, userOK}, check: kept},
		{name: "preinst abort-upgrade new-version", script: "deb/preinst", args: []string{"abort-upgrade", "1.1.0-1"}, setup: earlierState,
			check: kept},
		{name: "preinst install creates a missing group and user", script: "deb/preinst", args: []string{"install"}, setup: noAccounts,
			want: []string{groupOK, groupadd, userOK, useradd}},
		{name: "preinst upgrade creates a missing group and user", script: "deb/preinst", args: []string{"upgrade", "1.0.0-1"}, setup: noAccounts,
			want: []string{groupOK, groupadd, userOK, useradd}},
		{name: "preinst install without useradd falls back to adduser", script: "deb/preinst", args: []string{"install"},
			setup: func(sb *sandbox) {
				noAccounts(sb)
				os.Remove(filepath.Join(sb.root, "bin/groupadd"))
				os.Remove(filepath.Join(sb.root, "bin/useradd"))
			},
			want: []string{groupOK, "addgroup --system openwatch", userOK,
				"adduser --system --ingroup openwatch --home ROOT/var/lib/openwatch --no-create-home --shell /usr/sbin/nologin --gecos openwatch appliance openwatch"}},

		// postinst (6.5, 6.6)
		{name: "postinst configure (fresh install): enable, start, say how to initialise, forget an old journal, no helper",
			script: "deb/postinst", args: []string{"configure"}, setup: earlierState,
			want:    cat(enableTimer, []string{reload, invokeStart}),
			wantOut: []string{"OPENWATCH_DATABASE_DSN=", "ROOT/etc/openwatch/secrets.env", "ROOT/bin/openwatch migrate", "systemctl start openwatch.service"},
			check:   keptButJournal},
		{name: "postinst configure with an empty old-version is a fresh install", script: "deb/postinst", args: []string{"configure", ""}, setup: earlierState,
			want: cat(enableTimer, []string{reload, invokeStart}), wantOut: []string{"OPENWATCH_DATABASE_DSN="}, check: keptButJournal},
		{name: "postinst configure old-version (upgrade): enable, restart, run the helper", script: "deb/postinst", args: []string{"configure", "1.0.0-1"},
			want: cat(enableTimer, []string{reload, invokeRestart}, helper), check: journalSays("succeeded")},
		{name: "postinst configure old-version keeps an administrator's disabled timer", script: "deb/postinst", args: []string{"configure", "1.0.0-1"},
			setup: func(sb *sandbox) { sb.answer(wasEnabled, 1) },
			want:  cat([]string{unmaskDeb, wasEnabled, updateState, reload, invokeRestart}, helper)},
		{name: "postinst configure old-version fails when the migration fails", script: "deb/postinst", args: []string{"configure", "1.0.0-1"},
			env: []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch"},
			setup: func(sb *sandbox) {
				sb.answer(check, 10)
				sb.answer(isActive, 0)
				sb.answer(migrate, 16)
				sb.answer(startApp, 1) // the start guard refuses
				sb.answer(isFailed, 1)
			},
			wantRC:  1,
			want:    cat(enableTimer, []string{reload, invokeRestart, isActive, check, preflight, isActive, stopApp, migrate, list, isActive, isActive, check, startApp, isActive, isFailed}),
			wantOut: []string{"dpkg --configure -a"}},
		{name: "postinst configure without systemd running enables the timer offline", script: "deb/postinst", args: []string{"configure"}, noSystemd: true,
			want: enableTimer},
		{name: "postinst abort-upgrade new-version: re-enable and restart the old release's timer, no helper",
			script: "deb/postinst", args: []string{"abort-upgrade", "1.1.0-1"}, setup: earlierState,
			want: cat(enableTimer, []string{reload, invokeRestart}), check: kept},
		{name: "postinst abort-remove: unmask, re-enable and start the timer prerm stopped",
			script: "deb/postinst", args: []string{"abort-remove"}, setup: earlierState,
			want: cat(enableTimer, []string{reload, invokeStart}), check: kept},
		{name: "postinst abort-remove in-favour package new-version",
			script: "deb/postinst", args: []string{"abort-remove", "in-favour", "other", "2.0-1"}, setup: earlierState,
			want: cat(enableTimer, []string{reload, invokeRestart}), check: kept},
		{name: "postinst abort-deconfigure in-favour failed-install-package version removing conflicting-package version",
			script: "deb/postinst", args: []string{"abort-deconfigure", "in-favour", "other", "2.0-1", "removing", "openwatch", "1.1.0-1"}, setup: earlierState,
			want: cat(enableTimer, []string{reload, invokeRestart}), check: kept},
		{name: "postinst triggered does nothing", script: "deb/postinst", args: []string{"triggered", "/usr/lib/x"}, setup: earlierState, check: kept},

		// prerm (6.5)
		{name: "prerm remove stops the timer and its service", script: "deb/prerm", args: []string{"remove"}, setup: earlierState,
			want: []string{invokeStop}, check: kept},
		{name: "prerm remove without systemd running stops nothing", script: "deb/prerm", args: []string{"remove"}, noSystemd: true},
		{name: "prerm upgrade new-version stops nothing", script: "deb/prerm", args: []string{"upgrade", "1.1.0-1"}, setup: earlierState, check: kept},
		{name: "prerm deconfigure in-favour package-being-installed version removing conflicting-package version stops nothing",
			script: "deb/prerm", args: []string{"deconfigure", "in-favour", "other", "2.0-1", "removing", "x", "1"}, setup: earlierState, check: kept},
		{name: "prerm failed-upgrade old-version stops nothing", script: "deb/prerm", args: []string{"failed-upgrade", "1.0.0-1"}, setup: earlierState, check: kept},

		// postrm (6.5, 6.6)
		{name: "postrm remove: reload, no mask (the enablement is kept for a reinstall), forget the journal, keep restore points",
			script: "deb/postrm", args: []string{"remove"}, setup: earlierState,
			want: []string{reload}, check: keptButJournal},
		{name: "postrm purge: deb-systemd-helper purge, forget the journal, keep restore points",
			script: "deb/postrm", args: []string{"purge"}, setup: earlierState,
			want:    []string{purgeDeb},
			wantOut: []string{"restore points in ROOT/var/backups/openwatch and ROOT/etc/openwatch/secrets.env were kept"},
			check:   keptButJournal},
		{name: "postrm upgrade new-version does nothing", script: "deb/postrm", args: []string{"upgrade", "1.1.0-1"}, setup: earlierState, check: kept},
		{name: "postrm disappear overwriter overwriter-version: no mask, forget the journal",
			script: "deb/postrm", args: []string{"disappear", "other", "2.0-1"}, setup: earlierState, check: keptButJournal},
		{name: "postrm failed-upgrade old-version does nothing", script: "deb/postrm", args: []string{"failed-upgrade", "1.0.0-1"}, setup: earlierState, check: kept},
		{name: "postrm abort-install does nothing", script: "deb/postrm", args: []string{"abort-install"}, setup: earlierState, check: kept},
		{name: "postrm abort-install old-version does nothing", script: "deb/postrm", args: []string{"abort-install", "1.0.0-1"}, setup: earlierState, check: kept},
		{name: "postrm abort-upgrade old-version does nothing", script: "deb/postrm", args: []string{"abort-upgrade", "1.0.0-1"}, setup: earlierState, check: kept},
	}
	// Anything else is refused before any snippet acts.
	for _, script := range []string{"preinst", "postinst", "prerm", "postrm"} {
		for _, args := range [][]string{{"bogus"}, {}} {
			cases = append(cases, scriptCase{name: script + " refuses " + strings.Join(append([]string{"("}, append(args, ")")...), " "),
				script: "deb/" + script, args: args, setup: earlierState, wantRC: 1, want: []string{},
				wantOut: []string{"called with unknown argument"}, check: kept})
		}
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// Each count rpm passes each scriptlet ($1: the number of instances of the
// package after the transaction; %posttrans gets none that means anything).
func TestRPMCounts(t *testing.T) {
	helper := []string{isActive, check}
	symlinked := func(sb *sandbox) {
		os.Remove(sb.spec.Paths.BackupDir)
		if err := os.Symlink(filepath.Join(sb.root, "bigdisk"), sb.spec.Paths.BackupDir); err != nil {
			sb.t.Fatal(err)
		}
	}
	saved := func(sb *sandbox) string { return sb.spec.BackupDirLink() }
	cases := []scriptCase{
		{name: "pre 1 (install) creates a missing group and user", script: "rpm/pre.sh", args: []string{"1"}, setup: noAccounts,
			want: []string{groupOK, groupadd, userOK, useradd}},
		{name: "pre 1 keeps an existing user, remembers no symlink", script: "rpm/pre.sh", args: []string{"1"}, setup: symlinked,
			want: []string{groupOK, userOK},
			check: func(t *testing.T, sb *sandbox) {
				if sb.exists(saved(sb)) {
					t.Error("remembered a symlink on install")
				}
			}},
		{name: "pre 2 (upgrade) keeps an existing user, remembers the BACKUP_DIR symlink", script: "rpm/pre.sh", args: []string{"2"}, setup: symlinked,
			want: []string{groupOK, userOK},
			check: func(t *testing.T, sb *sandbox) {
				if b, err := os.ReadFile(saved(sb)); err != nil || strings.TrimSpace(string(b)) != filepath.Join(sb.root, "bigdisk") {
					t.Errorf("remembered symlink: %q, %v", b, err)
				}
			}},
		{name: "post 1 (install): enable and start the timer, say how to initialise, forget an old journal, no helper",
			script: "rpm/post.sh", args: []string{"1"}, setup: earlierState,
			want:    []string{reload, enableRPM, startRPM},
			wantOut: []string{"OPENWATCH_DATABASE_DSN=", "ROOT/etc/openwatch/secrets.env", "ROOT/bin/openwatch migrate"},
			check:   keptButJournal},
		{name: "post 1 without systemd running enables the timer offline", script: "rpm/post.sh", args: []string{"1"}, noSystemd: true,
			want: []string{enableRPM}},
		{name: "post 2 (upgrade): reload, run the helper; the timer is the old %postun's to restart",
			script: "rpm/post.sh", args: []string{"2"}, want: cat([]string{reload}, helper), check: journalSays("succeeded")},
		{name: "post 3 (a third instance) is an upgrade too", script: "rpm/post.sh", args: []string{"3"}, want: cat([]string{reload}, helper)},
		{name: "post 2 fails when the migration fails", script: "rpm/post.sh", args: []string{"2"},
			setup: func(sb *sandbox) {
				sb.answer(check, 10)
				sb.answer(migrate, 16)
			},
			wantRC:  1,
			want:    []string{reload, isActive, check, preflight, isActive, migrate, list, isActive, isActive, isFailed},
			wantOut: []string{"ROOT/usr/lib/openwatch/openwatch-upgrade.sh"}},
		{name: "preun 0 (erase) disables and stops the timer and its service", script: "rpm/preun.sh", args: []string{"0"}, setup: earlierState,
			want: []string{disableNowRPM}, check: kept},
		{name: "preun 1 (the old package during an upgrade) does nothing", script: "rpm/preun.sh", args: []string{"1"}, setup: earlierState, check: kept},
		{name: "postun 0 (erase) reloads systemd, forgets the journal, keeps restore points", script: "rpm/postun.sh", args: []string{"0"}, setup: earlierState,
			want: []string{reload}, check: keptButJournal},
		{name: "postun 1 (the old package during an upgrade) reloads and try-restarts the timer", script: "rpm/postun.sh", args: []string{"1"}, setup: earlierState,
			want: []string{reload, tryRestartRPM}, check: kept},
		{name: "posttrans forgets the remembered symlink and runs nothing", script: "rpm/posttrans.sh", args: []string{"0"},
			setup: func(sb *sandbox) { writeFile(sb.t, saved(sb), "/srv/x\n", 0o644) },
			check: func(t *testing.T, sb *sandbox) {
				if sb.exists(saved(sb)) {
					t.Error("the remembered symlink was kept")
				}
			}},
	}
	for _, script := range []string{"pre", "post", "preun", "postun"} {
		for _, arg := range []string{"configure", "-1", ""} {
			cases = append(cases, scriptCase{name: script + " refuses " + strings.TrimSpace("count "+arg), script: "rpm/" + script + ".sh",
				args: []string{arg}, setup: earlierState, wantRC: 1, want: []string{}, wantOut: []string{"unexpected package count"}, check: kept})
		}
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// The words of one format's machinery never show in the other's scripts:
// each script is assembled from its own format's snippets only.
func TestScriptsSpeakOnlyTheirFormat(t *testing.T) {
	debOnly := regexp.MustCompile(`(?i)dpkg|DPKG_ROOT|deb-systemd|debhelper|dh_|purge|configure|abort-|disappear|deconfigure|failed-upgrade|policy-rc`)
	rpmOnly := regexp.MustCompile(`(?i)\brpm\b|%pre|%post|scriptlet|systemd-rpm-macros|package count|preset|posttrans`)
	for _, spec := range []*Spec{Default(), goldenSpec()} {
		files, err := Render(spec)
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			var forbidden *regexp.Regexp
			switch {
			case strings.HasPrefix(name, spec.DistDir+"/rpm/"):
				forbidden = debOnly
			case strings.HasPrefix(name, spec.DistDir+"/deb/"):
				forbidden = rpmOnly
			default:
				continue
			}
			for i, l := range strings.Split(string(b), "\n") {
				if m := forbidden.FindString(l); m != "" {
					t.Errorf("%s:%d says %q, a word of the other format: %s", name, i+1, m, l)
				}
			}
		}
	}
}

// Every line of a generated maintainer script other than its skeleton's
// (shebang, `set -e`, comments, `exit 0`) stands between the markers of a
// snippet, and each marker names a template that exists and spec fields
// that exist: from any line, the marker above it is one hop to both.
func TestEverySnippetLineIsMarked(t *testing.T) {
	files, err := Render(Default())
	if err != nil {
		t.Fatal(err)
	}
	startRE := regexp.MustCompile(`^# openwatch: (.+) -- templates/(maint/[a-z0-9.-]+\.tmpl); spec: (.+)$`)
	endRE := regexp.MustCompile(`^# openwatch: end (.+)$`)
	scripts := 0
	used := map[string]bool{}
	for name, b := range files {
		if !strings.HasPrefix(name, "dist/deb/") && !strings.HasPrefix(name, "dist/rpm/") {
			continue
		}
		scripts++
		open, snippets := "", 0
		for i, l := range strings.Split(string(b), "\n") {
			where := func() string { return name + ":" + strconv.Itoa(i+1) }
			if m := endRE.FindStringSubmatch(l); m != nil {
				if open == "" || m[1] != open {
					t.Errorf("%s: end marker %q does not close %q", where(), m[1], open)
				}
				open = ""
				continue
			}
			if m := startRE.FindStringSubmatch(l); m != nil {
				if open != "" {
					t.Errorf("%s: snippet %q opens inside %q", where(), m[1], open)
				}
				open = m[1]
				snippets++
				used[m[2]] = true
				if _, err := os.Stat(filepath.Join("..", "templates", m[2])); err != nil {
					t.Errorf("%s: the marker names %s: %v", where(), m[2], err)
				}
				for _, f := range strings.Split(m[3], ", ") {
					if f != "none" && !specHas(f) {
						t.Errorf("%s: the marker names spec field %q, which Spec lacks", where(), f)
					}
				}
				continue
			}
			skeleton := l == "" || strings.HasPrefix(l, "#") || l == "set -e" || l == "exit 0"
			if open == "" && !skeleton {
				t.Errorf("%s: line outside any snippet: %s", where(), l)
			}
		}
		if open != "" {
			t.Errorf("%s: snippet %q never ends", name, open)
		}
		if snippets == 0 {
			t.Errorf("%s: no snippets", name)
		}
	}
	if scripts != 9 {
		t.Errorf("%d maintainer scripts, want 9", scripts)
	}
	// Every template under maint/ is a skeleton or a snippet some script uses.
	for _, o := range Default().outputs() {
		used[o.tmpl] = true
	}
	all, _ := filepath.Glob(filepath.Join("..", "templates", "maint", "*.tmpl"))
	for _, p := range all {
		if rel := "maint/" + filepath.Base(p); !used[rel] {
			t.Errorf("templates/%s is neither a skeleton nor a snippet any script uses", rel)
		}
	}
}

// The script templates assemble per format: no template under maint/ asks
// which format it renders for.
func TestNoFormatTestInScriptTemplates(t *testing.T) {
	m, err := filepath.Glob(filepath.Join("..", "templates", "maint", "*.tmpl"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no templates: %v", err)
	}
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), ".Format") {
			t.Errorf("%s tests .Format", p)
		}
	}
}

// specHas: f is a field path of Spec ("Paths.Journal") or, written
// "Name()", a method of *Spec.
func specHas(f string) bool {
	if m, ok := strings.CutSuffix(f, "()"); ok {
		_, ok := reflect.TypeOf(&Spec{}).MethodByName(m)
		return ok
	}
	t := reflect.TypeOf(Spec{})
	for _, part := range strings.Split(f, ".") {
		sf, ok := t.FieldByName(part)
		if !ok {
			return false
		}
		t = sf.Type
	}
	return true
}
