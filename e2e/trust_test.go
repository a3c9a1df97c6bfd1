package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openwatch/openwatch/gen"
)

// The service account faces the network; root must never create, write,
// rename, link, chmod or chown a file in a directory that account can write
// (it could have planted a link there), and nothing the account plants there
// may change anything outside it (issue 22, section 1).

var (
	serviceAccount = gen.Default().User
	accountDirPath = gen.Default().Paths.StateDir // the account's own directory
)

// TestRootNeverWritesWhereTheServiceAccountCan traces (strace -f, see
// strace_test.go) a fresh install, a good upgrade, an upgrade whose
// migration fails on the data (with a clone restore point, so the clone's
// timing is written too) and its documented recovery, and fails on every
// change root made in a directory the service account can write, naming
// the call and the processes that made it.
func TestRootNeverWritesWhereTheServiceAccountCan(t *testing.T) {
	for _, f := range formats {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			traceUpgrades(newEnv(t, f, "dash"))
		})
	}
}

// TestAPlantedLinkChangesNothingOutsideTheAccountsDirectory: the service
// account plants links where releases before the fix kept root's state
// (upgrade.state, upgrade.state.new, start-refused, backup-dir.symlink,
// clone.timing.tmp), pointing at /etc/profile.d and at files only root may
// read or write, and a forged journal of its own; a good upgrade, a failed
// one and its recovery then change no file outside the account's directory,
// create no /etc/profile.d/zz.sh, copy none of the forged lines into root's
// journal, and never offer or restore the forged restore point.
func TestAPlantedLinkChangesNothingOutsideTheAccountsDirectory(t *testing.T) {
	for _, f := range formats {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			plantedLinks(newEnv(t, f, "dash"))
		})
	}
}

// guardAsServiceAccount makes the recording systemctl run the drop-in's
// ExecStartPre= as the service account, as systemd does for the appliance's
// unit (User=openwatch on a real machine; the stand-in runs it as root,
// which would make the guard's own record in the account's directory look
// like root's write).
func (r *root) guardAsServiceAccount() {
	r.t.Helper()
	const runs = "\t\t$pre >/dev/null 2>&1 || return 1\n"
	if !strings.Contains(systemctlStub, runs) {
		r.t.Fatal("the systemctl stand-in no longer runs the guard as `$pre >/dev/null 2>&1 || return 1`: update guardAsServiceAccount")
	}
	stub := strings.Replace(systemctlStub, runs, "\t\tsetpriv --reuid="+serviceAccount+" --regid="+serviceAccount+
		" --init-groups $pre >/dev/null 2>&1 || return 1\n", 1)
	for _, p := range []string{"/usr/bin/systemctl", "/usr/local/sbin/systemctl"} {
		os.Remove(r.path(p))
		r.writeFile(p, stub, 0o755)
	}
}

// accountUID is the service account's uid inside the root.
func (r *root) accountUID() int {
	r.t.Helper()
	for _, l := range lines(r.readFile("/etc/passwd")) {
		f := strings.Split(l, ":")
		if len(f) > 2 && f[0] == serviceAccount {
			if n, err := strconv.Atoi(f[2]); err == nil {
				return n
			}
		}
	}
	r.t.Fatalf("no user %s in the root's /etc/passwd", serviceAccount)
	return -1
}

// addSetting appends a line to upgrade.conf, keeping its owner and group
// (the start guard, running as the service account, reads it).
func (e *env) addSetting(line string) {
	e.t.Helper()
	e.r.writeFile(upgradeConfPath, e.r.readFile(upgradeConfPath)+line+"\n", 0o640)
}

func (e *env) grantCreateDB() {
	e.t.Helper()
	if err := e.db.Server.Exec(context.Background(), "postgres", `ALTER ROLE "`+e.db.User+`" CREATEDB`); err != nil {
		e.t.Fatal(err)
	}
}

func traceUpgrades(e *env) {
	old, nw, failing := e.vs["old"], e.vs["new"], e.vs["failing"]
	e.r.guardAsServiceAccount()
	var steps []tracedStep

	st := e.traceRun("fresh install of "+old.FullVersion(), e.f.install(e.f.pkg(old))...)
	if st.res.code != 0 {
		e.t.Fatalf("%s: exit %d\n%s", st.name, st.res.code, st.res.out)
	}
	steps = append(steps, st)
	e.initialise(old)
	// The maintainer scripts then remember the symlink across the upgrade.
	e.symlinkBackupDir()
	writable := e.r.accountWritable(serviceAccount)
	if _, ok := writable[accountDirPath]; !ok {
		e.t.Fatalf("walking the root as %s did not find its own directory %s among those it can write: %v", serviceAccount, accountDirPath, writable)
	}

	st = e.traceRun("upgrade "+old.FullVersion()+" → "+nw.FullVersion(), e.f.upgrade(e.f.pkg(nw))...)
	if st.res.code != 0 {
		e.t.Fatalf("%s: exit %d\n%s", st.name, st.res.code, st.res.out)
	}
	steps = append(steps, st)

	// A clone restore point (CREATEDB; no rehearsal, so the migration itself
	// fails): the clone's timing file is written as well.
	e.grantCreateDB()
	e.addSetting("REHEARSE=no")
	e.exec("CREATE TABLE e2e_block_migration (why text)")
	st = e.traceRun("failing upgrade "+nw.FullVersion()+" → "+failing.FullVersion(), e.f.upgrade(e.f.pkg(failing))...)
	if !e.f.reportsFailure(st.res) {
		e.t.Errorf("%s (exit %d) does not report the failed post-install script", st.name, st.res.code)
	}
	if !strings.Contains(st.res.out, "a clone of the database") {
		e.t.Errorf("%s did not take a clone restore point:\n%s", st.name, st.res.out)
	}
	// The failure left the service stopped and the helper's start was
	// refused by the guard, which recorded it, as the account, in the
	// account's directory: the trace tells the account's writes from root's.
	uid := e.r.accountUID()
	if !slices.ContainsFunc(st.ops, func(op fsOp) bool { return op.euid == uid && path.Dir(op.name) == accountDirPath }) {
		e.t.Errorf("%s: the trace shows no write by %s (uid %d) in %s: the start guard's record was not seen as the account's", st.name, serviceAccount, uid, accountDirPath)
	}
	steps = append(steps, st)

	e.exec("DROP TABLE e2e_block_migration")
	st = e.traceRun("recovery ("+strings.Join(e.f.recover, " ")+")", e.f.recover...)
	if st.res.code != 0 {
		e.t.Errorf("%s: exit %d\n%s", st.name, st.res.code, st.res.out)
	}
	if got, want := e.schemaVersions(), append(slices.Clone(repoMigrations), failing.Head); !slices.Equal(got, want) {
		e.t.Errorf("after the recovery schema_migrations = %v, want %v", got, want)
	}
	steps = append(steps, st)

	// The directories the account can write now, and those it made (and
	// maybe removed) while the commands ran.
	for d, info := range e.r.accountWritable(serviceAccount) {
		writable[d] = info
	}
	for _, s := range steps {
		for _, op := range s.ops {
			if op.euid == uid && op.kind == "mkdir" {
				writable[op.name] = accountDir{mode: 0o700, owner: serviceAccount}
			}
		}
	}
	var dirs []string
	for d := range writable {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	e.t.Logf("directories %s can write (or owns): %v", serviceAccount, dirs)

	judge := &trustJudge{resolve: e.r.resolveDir, account: serviceAccount, writable: writable, created: map[string]bool{}}
	journalDirs := []string{path.Dir(journalPath), accountDirPath}
	for i, s := range steps {
		var bad []string
		for _, op := range s.ops {
			if why := judge.violation(op); why != "" {
				bad = append(bad, fmt.Sprintf("%s: %s\n\t\tcall: %s\n\t\tby pid %d: %s", op.name, why, op.call, op.pid, op.proc))
			}
		}
		if len(bad) > 0 {
			e.t.Errorf("%s: root changed %d name(s) where %s can write:\n\t%s", s.name, len(bad), serviceAccount, strings.Join(bad, "\n\t"))
		}
		e.t.Logf("%s: root changed %d names: %v", s.name, len(s.written), s.written)
		// The trace reached the writer of the journal: the upgrades write it.
		if i > 0 && !slices.ContainsFunc(s.written, func(n string) bool { return slices.Contains(journalDirs, path.Dir(n)) }) {
			e.t.Errorf("%s: the trace shows no write of the upgrade journal (in %v) by root: it did not follow the scripts", s.name, journalDirs)
		}
	}
}

// Planted by the service account: where links point and what a forged
// journal says.
const (
	profileScript = "/etc/profile.d/zz.sh" // root's next login would run it
	secretFile    = "/root/e2e-secret"     // only root may read it
	secretMarker  = "e2e-root-only-secret-4f1c"
	backupTarget  = "/etc/e2e-backup-dir-target"
	timingTarget  = "/etc/e2e-clone-timing-target"
	forgedMarker  = "e2e-forged-7d2a"
	forgedRP      = "/etc/passwd"
	forgedCommand = "rm -rf /"
	movedBackups  = "/srv/restore-points"
)

// forgedJournal is what the account writes where earlier releases kept the
// journal: an unfinished upgrade whose restore point is /etc/passwd and whose
// recovery command wipes the machine.
var forgedJournal = strings.Join([]string{
	"# openwatch upgrade journal",
	"OUTCOME=migration-failed",
	"PHASE=migrate",
	"SERVICE_BEFORE=running",
	"SCHEMA_CHANGED=no",
	"STOPPED_AT=unknown",
	"RESTORE_POINT=" + forgedRP,
	"RECOVERY='" + forgedCommand + "'",
	"MESSAGE='forged by the service account " + forgedMarker + "'",
	"FAILURE='" + forgedMarker + ": forged'",
	"UPDATED=2026-01-01T00:00:00Z",
}, "\n") + "\n"

// plant replaces, as the service account, the names root's state had in
// its directory with links (and, when forged, upgrade.state with the forged
// journal, owned by the account).
func (e *env) plant(forged bool) {
	e.t.Helper()
	journal := "ln -s " + profileScript + " upgrade.state"
	if forged {
		journal = "printf '%s' \"$1\" >upgrade.state"
	}
	script := `set -e
cd ` + accountDirPath + `
rm -f upgrade.state upgrade.state.new start-refused backup-dir.symlink clone.timing.tmp
ln -s ` + profileScript + ` upgrade.state.new
ln -s ` + secretFile + ` start-refused
ln -s ` + backupTarget + ` backup-dir.symlink
ln -s ` + timingTarget + ` clone.timing.tmp
` + journal + `
`
	if res := e.r.run(time.Minute, asAccount("sh", "-c", script, "sh", forgedJournal)...); res.code != 0 {
		e.t.Fatalf("planting as %s: exit %d\n%s", serviceAccount, res.code, res.out)
	}
	// Root's own directory is out of the account's reach.
	if res := e.r.run(time.Minute, asAccount("ln", "-s", profileScript, path.Dir(journalPath)+"/upgrade.state.new")...); res.code == 0 {
		e.t.Errorf("%s could plant a link in root's directory %s", serviceAccount, path.Dir(journalPath))
	}
}

func asAccount(argv ...string) []string {
	return append([]string{"setpriv", "--reuid=" + serviceAccount, "--regid=" + serviceAccount, "--init-groups"}, argv...)
}

// snapshot describes every file below the given paths inside the root:
// type, mode, owner, size, modification time, and content hash or link
// target.
func (r *root) snapshot(paths ...string) map[string]string {
	r.t.Helper()
	out := map[string]string{}
	for _, p := range paths {
		base := r.path(p)
		filepath.WalkDir(base, func(hp string, d fs.DirEntry, err error) error {
			name := p + strings.TrimPrefix(hp, base)
			if err != nil {
				out[name] = "error " + err.Error()
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				out[name] = "error " + err.Error()
				return nil
			}
			desc := fmt.Sprintf("%v", fi.Mode())
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				desc += fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
			}
			switch {
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(hp)
				if err != nil {
					desc += " unreadable"
				} else {
					desc += fmt.Sprintf(" %d %s %x", fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano), sha256.Sum256(b))
				}
			case fi.Mode()&fs.ModeSymlink != 0:
				t, _ := os.Readlink(hp)
				desc += " -> " + t
			}
			out[name] = desc
			return nil
		})
	}
	return out
}

// packageFiles lists what the installed package owns.
func (e *env) packageFiles() map[string]bool {
	e.t.Helper()
	argv := []string{"dpkg-query", "-L", "openwatch"}
	if e.f.Name == "rpm" {
		argv = []string{"rpm", "-ql", "openwatch"}
	}
	owned := map[string]bool{}
	for _, l := range lines(e.r.run(time.Minute, argv...).out) {
		owned[strings.TrimSpace(l)] = true
	}
	return owned
}

func plantedLinks(e *env) {
	old, nw, failing := e.vs["old"], e.vs["new"], e.vs["failing"]
	e.r.guardAsServiceAccount()
	e.installAndInitialise(old)

	e.symlinkBackupDir()
	setup := `set -e
install -m 0600 /dev/null ` + secretFile + `
printf 'INVOCATION_ID=%s\nEXIT=10\nREFUSED=2026-01-01T00:00:00Z\n' ` + secretMarker + ` >` + secretFile + `
printf 'untouched\n' >` + backupTarget + `
printf 'untouched\n' >` + timingTarget + `
`
	if res := e.r.run(time.Minute, "sh", "-c", setup); res.code != 0 {
		e.t.Fatalf("setting up: %s", res.out)
	}
	watched := []string{"/etc", secretFile}
	before := e.r.snapshot(watched...)
	ownedBefore := e.packageFiles()
	var outputs []result
	profileAbsent := func(when string) {
		e.t.Helper()
		if e.r.exists(profileScript) {
			e.t.Errorf("%s: %s exists (root's next login runs it):\n%s", when, profileScript, e.r.readFile(profileScript))
		}
	}
	noForgery := func(when, where, text string) {
		e.t.Helper()
		for _, bad := range []string{forgedMarker, forgedCommand, forgedRP, secretMarker} {
			if strings.Contains(text, bad) {
				e.t.Errorf("%s: %s contains %q, which only the service account's planted files say:\n%s", when, where, bad, text)
			}
		}
	}

	// A good upgrade, with every link planted.
	e.plant(false)
	res := e.pm(e.f.upgrade(e.f.pkg(nw))...)
	outputs = append(outputs, res)
	if res.code != 0 {
		e.t.Fatalf("upgrade %s → %s with links planted: exit %d", old.FullVersion(), nw.FullVersion(), res.code)
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations) {
		e.t.Errorf("schema_migrations = %v, want %v", got, repoMigrations)
	}
	profileAbsent("after the good upgrade")
	noForgery("after the good upgrade", "root's journal "+journalPath, e.r.readFile(journalPath))

	// A failed upgrade and its recovery, with a forged journal where the
	// earlier releases kept theirs. A clone restore point (CREATEDB, no
	// rehearsal): its timing file is written too.
	e.plant(true)
	e.grantCreateDB()
	e.addSetting("REHEARSE=no")
	e.exec("CREATE TABLE e2e_block_migration (why text)")
	res = e.pm(e.f.upgrade(e.f.pkg(failing))...)
	outputs = append(outputs, res)
	if !e.f.reportsFailure(res) {
		e.t.Errorf("%s (exit %d) does not report the failed post-install script", res.cmd, res.code)
	}
	profileAbsent("after the failed upgrade")
	j := e.r.readFile(journalPath)
	noForgery("after the failed upgrade", "root's journal "+journalPath, j)
	if got := e.journal("RESTORE_POINT"); got == "" || got == forgedRP {
		e.t.Errorf("root's journal records the restore point %q, want the one this upgrade took:\n%s", got, j)
	}
	if got := e.journal("RECOVERY"); got != strings.Join(e.f.recover, " ") {
		e.t.Errorf("root's journal names the recovery %q, want %q", got, strings.Join(e.f.recover, " "))
	}
	status := e.mustOperator("openwatch", "migrate", "--status")
	noForgery("after the failed upgrade", "openwatch migrate --status", status.out)

	// The account forges again; the recovery must neither offer nor reuse
	// nor restore its restore point.
	e.plant(true)
	e.exec("DROP TABLE e2e_block_migration")
	res = e.pm(e.f.recover...)
	outputs = append(outputs, res)
	if res.code != 0 {
		e.t.Errorf("recovery %s: exit %d", res.cmd, res.code)
	}
	if got, want := e.schemaVersions(), append(slices.Clone(repoMigrations), failing.Head); !slices.Equal(got, want) {
		e.t.Errorf("after the recovery schema_migrations = %v, want %v", got, want)
	}
	if got := e.journal("OUTCOME"); got != "succeeded" {
		e.t.Errorf("journal OUTCOME = %q after the recovery, want succeeded", got)
	}
	profileAbsent("after the recovery")
	noForgery("after the recovery", "root's journal "+journalPath, e.r.readFile(journalPath))
	noForgery("after the recovery", "the login message", e.r.readFile("/run/motd.d/openwatch"))
	for _, o := range outputs {
		noForgery("the output of "+o.cmd, "the output", o.out)
	}
	for _, l := range lines(e.r.events()) {
		if strings.Contains(l, forgedRP) {
			e.t.Errorf("a recorded call used the forged restore point: %s", l)
		}
	}

	// Nothing outside the account's directory changed but what the package
	// manager installs (the package's own files, the systemd enablement
	// links it makes).
	after := e.r.snapshot(watched...)
	owned := e.packageFiles()
	for p := range ownedBefore {
		owned[p] = true
	}
	var changed []string
	for p := range mergeKeys(before, after) {
		if before[p] == after[p] || owned[p] || strings.HasPrefix(p, "/etc/systemd/system/") && strings.Contains(p, ".wants/") {
			continue
		}
		changed = append(changed, fmt.Sprintf("%s:\n\t\tbefore %s\n\t\tafter  %s", p, orAbsent(before[p]), orAbsent(after[p])))
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		e.t.Errorf("files outside %s changed while links were planted there:\n\t%s", accountDirPath, strings.Join(changed, "\n\t"))
	}
	if target, err := os.Readlink(e.r.path(backupDir)); err != nil || target != movedBackups {
		e.t.Errorf("%s is %q (%v) after the upgrades, want the operator's link to %s", backupDir, target, err, movedBackups)
	}
}


// symlinkBackupDir: the operator keeps the restore points on another disk,
// BACKUP_DIR is a symlink, which the maintainer scripts remember across an
// upgrade (backup-dir.symlink).
func (e *env) symlinkBackupDir() {
	e.t.Helper()
	move := "set -e\ninstall -d -m 0700 " + movedBackups + "\nrmdir " + backupDir + "\nln -s " + movedBackups + " " + backupDir + "\n"
	if res := e.r.run(time.Minute, "sh", "-c", move); res.code != 0 {
		e.t.Fatalf("moving %s to %s: %s", backupDir, movedBackups, res.out)
	}
}

func mergeKeys(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func orAbsent(s string) string {
	if s == "" {
		return "absent"
	}
	return s
}
