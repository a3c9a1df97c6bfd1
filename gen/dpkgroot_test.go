package gen

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `dpkg --root DIR --force-script-chrootless` runs the maintainer scripts on
// the host with DPKG_ROOT=DIR: everything they create, change or remove is
// under DIR, and nothing outside it is touched. Each case runs a script with
// DPKG_ROOT=ROOT/target in a sandbox that looks like a running systemd host
// whose paths (the spec's) all exist outside the target, and checks that the
// sandbox outside the target is byte for byte as it was.

type rootCase struct {
	name    string
	script  string
	args    []string
	setup   func(t *testing.T, sb *sandbox, target string)
	wantRC  int
	want    []string // commands the stubs recorded; TARGET is the target
	wantOut []string
	check   func(t *testing.T, sb *sandbox, target string)
}

// in is where path p of the spec lands inside target.
func in(target, p string) string { return target + p }

// targetAccounts gives the target minimal account files.
func targetAccounts(t *testing.T, target string, withOpenwatch bool) {
	t.Helper()
	passwd, group := "root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n"
	if withOpenwatch {
		passwd += "openwatch:x:999:999:openwatch appliance:/var/lib/openwatch:/usr/sbin/nologin\n"
		group += "openwatch:x:999:\n"
	}
	writeFile(t, filepath.Join(target, "etc/passwd"), passwd, 0o644)
	writeFile(t, filepath.Join(target, "etc/group"), group, 0o644)
	writeFile(t, filepath.Join(target, "etc/shadow"), "root:*:20000:0:99999:7:::\n", 0o640)
	writeFile(t, filepath.Join(target, "etc/gshadow"), "root:*::\n", 0o640)
	writeFile(t, filepath.Join(target, "usr/sbin/nologin"), "#!/bin/sh\nexit 1\n", 0o755)
}

// snapshot describes every file under sb.root except the target and the
// harness's own bookkeeping (stub log and answers, the scripts it writes).
func snapshot(t *testing.T, sb *sandbox) string {
	t.Helper()
	var m []string
	err := filepath.WalkDir(sb.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(sb.root, p)
		switch rel {
		case "target", "log", "rc", "out", "scripts":
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		m = append(m, rel+" "+desc)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines(m)
}

func (c rootCase) run(t *testing.T) {
	for _, shell := range shells {
		t.Run(shellName(shell), func(t *testing.T) {
			sb := newSandbox(t)
			sb.systemd() // systemd runs on the host: the target is still not its to drive
			target := filepath.Join(sb.root, "target")
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			// Were getent asked, it would say the host has the accounts.
			sb.answer(check, 10)
			sb.answer(isActive, 0)
			if c.setup != nil {
				c.setup(t, sb, target)
			}
			before := snapshot(t, sb)
			rc, out := sb.run(shell, c.script, []string{"DPKG_ROOT=" + target}, c.args...)
			out = strings.ReplaceAll(strings.ReplaceAll(out, target, "TARGET"), sb.root, "ROOT")
			if rc != c.wantRC {
				t.Errorf("exit code %d, want %d; output:\n%s", rc, c.wantRC, out)
			}
			got := sb.log()
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], "ROOT/target", "TARGET")
			}
			if d := Diff("want", "got", lines(c.want), lines(got)); d != "" {
				t.Errorf("commands run (-want +got):\n%s\noutput:\n%s", d, out)
			}
			for _, s := range c.wantOut {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			if d := Diff("before", "after", before, snapshot(t, sb)); d != "" {
				t.Errorf("touched something outside DPKG_ROOT (-before +after):\n%s", d)
			}
			if c.check != nil {
				c.check(t, sb, target)
			}
		})
	}
}

func TestScriptsUnderDpkgRoot(t *testing.T) {
	const (
		groupadd = "groupadd --prefix TARGET --system openwatch"
		useradd  = "useradd --prefix TARGET --system --gid openwatch --home-dir ROOT/var/lib/openwatch --no-create-home --shell /usr/sbin/nologin --comment openwatch appliance openwatch"
	)
	noBackupDirOnHost := func(t *testing.T, sb *sandbox, target string) {
		// Were BACKUP_DIR created on the host, the snapshot would show it.
		if err := os.Remove(sb.spec.Paths.BackupDir); err != nil {
			t.Fatal(err)
		}
	}
	journals := func(t *testing.T, sb *sandbox, target string) {
		afterFailure(sb) // the host's journal must survive
		writeFile(t, in(target, sb.spec.Paths.Journal), "OUTCOME=succeeded\n", 0o600)
	}
	targetJournalGone := func(t *testing.T, sb *sandbox, target string) {
		if sb.exists(in(target, sb.spec.Paths.Journal)) {
			t.Error("the target's journal was kept")
		}
	}
	cases := []rootCase{
		{name: "preinst install creates the group and user in the target, asking the host nothing",
			script: "deb/preinst", args: []string{"install"},
			setup: func(t *testing.T, sb *sandbox, target string) { targetAccounts(t, target, false) },
			want:  []string{groupadd, useradd}},
		{name: "preinst install keeps the target's existing user",
			script: "deb/preinst", args: []string{"install"},
			setup: func(t *testing.T, sb *sandbox, target string) { targetAccounts(t, target, true) }},
		{name: "preinst install into a target without account files fails, naming what to run inside it",
			script: "deb/preinst", args: []string{"install"},
			wantRC: 1,
			wantOut: []string{"cannot create the system group openwatch and user openwatch in TARGET: TARGET/etc/passwd or TARGET/etc/group does not exist",
				`chroot "TARGET" groupadd --system openwatch && chroot "TARGET" useradd --system --gid openwatch --home-dir ROOT/var/lib/openwatch --no-create-home --shell /sbin/nologin openwatch`}},
		{name: "preinst install without the shadow tools fails: adduser cannot write into another root",
			script: "deb/preinst", args: []string{"install"},
			setup: func(t *testing.T, sb *sandbox, target string) {
				targetAccounts(t, target, true)
				writeFile(t, filepath.Join(target, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", 0o644)
				os.Remove(filepath.Join(sb.root, "bin/groupadd"))
				os.Remove(filepath.Join(sb.root, "bin/useradd"))
			},
			wantRC: 1,
			wantOut: []string{"adduser cannot write into another root",
				`  chroot "TARGET" useradd --system --gid openwatch`}},
		{name: "preinst upgrade remembers the target's BACKUP_DIR symlink in the target",
			script: "deb/preinst", args: []string{"upgrade", "1.0.0-1"},
			setup: func(t *testing.T, sb *sandbox, target string) {
				targetAccounts(t, target, true)
				d := in(target, sb.spec.Paths.BackupDir)
				os.MkdirAll(filepath.Dir(d), 0o755)
				os.MkdirAll(in(target, sb.spec.Paths.StateDir), 0o755)
				if err := os.Symlink("/srv/big", d); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, sb *sandbox, target string) {
				b, err := os.ReadFile(in(target, sb.spec.BackupDirLink()))
				if err != nil || string(b) != "/srv/big\n" {
					t.Errorf("remembered symlink: %q, %v", b, err)
				}
			}},

		{name: "postinst configure on upgrade runs no helper and names the command to run inside the target",
			script: "deb/postinst", args: []string{"configure", "1.0.0-1"},
			setup: noBackupDirOnHost,
			// deb-systemd-helper itself acts on DPKG_ROOT.
			want:    enableTimer,
			wantOut: []string{`run: chroot "TARGET" ROOT/usr/lib/openwatch/openwatch-upgrade.sh`},
			check: func(t *testing.T, sb *sandbox, target string) {
				if fi, err := os.Lstat(in(target, sb.spec.Paths.BackupDir)); err != nil || !fi.IsDir() {
					t.Errorf("BACKUP_DIR in the target: %v", err)
				}
			}},
		{name: "postinst configure on install forgets the target's journal, creates the target's BACKUP_DIR",
			script: "deb/postinst", args: []string{"configure", ""},
			setup: func(t *testing.T, sb *sandbox, target string) {
				noBackupDirOnHost(t, sb, target)
				journals(t, sb, target)
			},
			want:    enableTimer,
			wantOut: []string{"openwatch is installed in TARGET."},
			check: func(t *testing.T, sb *sandbox, target string) {
				targetJournalGone(t, sb, target)
				if m := sb.mode(in(target, sb.spec.Paths.BackupDir)); m != 0o700 {
					t.Errorf("the target's BACKUP_DIR mode %v, want 0700", m)
				}
			}},
		{name: "prerm remove stops nothing", script: "deb/prerm", args: []string{"remove"}},
		{name: "postrm purge forgets the target's journal and state directory only",
			script: "deb/postrm", args: []string{"purge"},
			setup: journals,
			want:  []string{purgeDeb},
			check: func(t *testing.T, sb *sandbox, target string) {
				targetJournalGone(t, sb, target)
				if sb.exists(in(target, sb.spec.Paths.StateDir)) {
					t.Error("the target's empty state directory was kept")
				}
			}},
		{name: "postrm remove forgets the target's journal only",
			script: "deb/postrm", args: []string{"remove"},
			setup: journals,
			check: targetJournalGone},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// The real shadow tools, run the way the preinst runs them, write the
// target's account files and leave the host's alone.
func TestPreinstUnderDpkgRootWithTheRealShadowTools(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("groupadd and useradd need root")
	}
	for _, tool := range []string{"groupadd", "useradd"} {
		if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
			t.Skipf("no /usr/sbin/%s", tool)
		}
	}
	host := []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"}
	read := func(files []string) [][]byte {
		var out [][]byte
		for _, f := range files {
			b, _ := os.ReadFile(f)
			out = append(out, b)
		}
		return out
	}
	for _, shell := range shells {
		t.Run(shellName(shell), func(t *testing.T) {
			sb := newSandbox(t)
			target := filepath.Join(sb.root, "target")
			targetAccounts(t, target, false)
			// The real tool, but only with --prefix: a broken preinst must
			// fail this test, not add the account to the host running it.
			for _, tool := range []string{"groupadd", "useradd"} {
				writeFile(t, filepath.Join(sb.root, "bin", tool), fmt.Sprintf(
					"#!/bin/sh\n[ \"$1\" = --prefix ] || { echo \"%[1]s without --prefix: $*\" >&2; exit 99; }\nexec /usr/sbin/%[1]s \"$@\"\n",
					tool), 0o755)
			}
			hostBefore := read(host)
			rc, out := sb.run(shell, "deb/preinst", []string{"DPKG_ROOT=" + target}, "install")
			if rc != 0 {
				t.Fatalf("exit code %d; output:\n%s", rc, out)
			}
			for i, b := range read(host) {
				if !bytes.Equal(b, hostBefore[i]) {
					t.Errorf("the host's %s changed", host[i])
				}
			}
			passwd, _ := os.ReadFile(filepath.Join(target, "etc/passwd"))
			group, _ := os.ReadFile(filepath.Join(target, "etc/group"))
			wantUser := ":openwatch appliance:" + sb.spec.Paths.StateDir + ":/usr/sbin/nologin\n"
			if !strings.Contains(string(passwd), "\nopenwatch:x:") || !strings.HasSuffix(string(passwd), wantUser) {
				t.Errorf("the target's passwd lacks the user (…%s):\n%s", wantUser, passwd)
			}
			if !strings.Contains(string(group), "\nopenwatch:x:") {
				t.Errorf("the target's group lacks the group:\n%s", group)
			}
			// A second run finds both and changes nothing.
			rc, out = sb.run(shell, "deb/preinst", []string{"DPKG_ROOT=" + target}, "install")
			if rc != 0 {
				t.Fatalf("second run: exit code %d; output:\n%s", rc, out)
			}
			if again, _ := os.ReadFile(filepath.Join(target, "etc/passwd")); !bytes.Equal(again, passwd) {
				t.Errorf("second run changed the target's passwd:\n%s", again)
			}
		})
	}
}
