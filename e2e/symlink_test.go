package e2e

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/pkgbuild"
)

// The operator moved the restore points to a bigger disk and left a symlink
// at BACKUP_DIR. The package manager must never remove that symlink or the
// files behind it (the packages do not own BACKUP_DIR; the postinst creates
// it only when nothing is there), and the binary follows it for writing,
// listing and pruning alike, while symlinks inside it are never followed.
func TestASymlinkedBackupDir(t *testing.T) {
	for _, f := range formats {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			symlinkedBackupDir(newEnv(t, f, "dash"), owningVariant(t))
		})
	}
}

var (
	owningOnce sync.Once
	owning     *variant
	owningErr  error
)

// owningVariant is the old release as it was shipped before BACKUP_DIR
// stopped being package-owned: the old binary, and nfpm.yaml with
// BACKUP_DIR as a `type: dir` entry (root:root 0700).
func owningVariant(t *testing.T) *variant {
	t.Helper()
	old := variants(t)["old"]
	owningOnce.Do(func() {
		dir, err := os.MkdirTemp("", "openwatch-e2e-owning-")
		if err != nil {
			owningErr = err
			return
		}
		defer os.RemoveAll(dir)
		conf, err := os.ReadFile(filepath.Join(srcRoot, "nfpm.yaml"))
		if err != nil {
			owningErr = err
			return
		}
		entry := "contents:\n  - dst: " + backupDir + "\n    type: dir\n    file_info: {mode: 0700, owner: root, group: root}\n"
		patched := strings.Replace(string(conf), "contents:\n", entry, 1)
		if patched == string(conf) {
			owningErr = os.ErrInvalid
			return
		}
		if owningErr = os.WriteFile(filepath.Join(dir, "nfpm.yaml"), []byte(patched), 0o644); owningErr != nil {
			return
		}
		// src paths are relative to nfpm.yaml's directory.
		for _, p := range []string{"dist", "docs"} {
			if owningErr = os.Symlink(filepath.Join(srcRoot, p), filepath.Join(dir, p)); owningErr != nil {
				return
			}
		}
		v := &variant{Name: "owning", Version: old.Version, Release: "0", Head: old.Head, Binary: old.Binary}
		targets, err := hostRPMTargets()
		if err != nil {
			owningErr = err
			return
		}
		res, err := pkgbuild.Build(pkgbuild.Options{Config: filepath.Join(dir, "nfpm.yaml"), Version: v.Version,
			Release: v.Release, Binary: v.Binary, OutDir: filepath.Join(pkgDir, v.Name), RPMTargets: targets})
		if err != nil {
			owningErr = err
			return
		}
		v.HostDEB, v.HostRPM = res.DEB, res.RPM
		v.DEB = "/e2e-pkgs/" + strings.TrimPrefix(res.DEB, pkgDir+"/")
		v.RPM = "/e2e-pkgs/" + strings.TrimPrefix(res.RPM, pkgDir+"/")
		owning = v
	})
	if owningErr != nil {
		t.Fatalf("building the package that owns %s: %v", backupDir, owningErr)
	}
	return owning
}

// symlinkedBackupDir: the release that owned BACKUP_DIR is installed and
// initialised; the operator moves the restore points to /srv/bigdisk and
// leaves a symlink. The upgrade to the new release keeps the symlink and
// takes its restore point behind it; `openwatch backup --prune` (what the
// cleanup unit runs) prunes behind it, keeps the newest, and leaves a
// symlink inside alone; removal and purge leave the symlink and every file
// behind it.
func symlinkedBackupDir(e *env, owning *variant) {
	nw := e.vs["new"]
	if res := e.pm(e.f.install(e.f.pkg(owning))...); res.code != 0 {
		e.t.Fatalf("install of the release that owns %s: exit %d\n%s", backupDir, res.code, res.out)
	}
	e.writeSecrets(e.dsn())
	e.mustOperator("openwatch", "migrate")
	e.seed()

	const target = "/srv/bigdisk/restore-points"
	stale := "openwatch_0.9.0-1_schema-20260101000001_20200101T000000Z.dump"
	inside := "openwatch_0.8.0-1_schema-20260101000001_20190101T000000Z.dump"
	move := `set -e
install -d -m 0700 ` + target + `
rmdir ` + backupDir + `
ln -s ` + target + ` ` + backupDir + `
printf dump >` + target + `/` + stale + `
chmod 0600 ` + target + `/` + stale + `
printf keep >/root/precious
ln -s /root/precious ` + target + `/` + inside + `
printf notes >` + target + `/notes.txt
`
	if res := e.r.run(30*time.Second, "sh", "-c", move); res.code != 0 {
		e.t.Fatalf("moving %s to %s: %s", backupDir, target, res.out)
	}
	linkIntact := func(when string) {
		e.t.Helper()
		if got, err := os.Readlink(e.r.path(backupDir)); err != nil || got != target {
			e.t.Fatalf("%s: %s is %q (%v), want the operator's symlink to %s", when, backupDir, got, err, target)
		}
	}
	names := func() []string {
		var out []string
		for _, p := range e.r.glob(target + "/*") {
			out = append(out, path.Base(p))
		}
		return out
	}

	if res := e.pm(e.f.upgrade(e.f.pkg(nw))...); res.code != 0 {
		e.t.Fatalf("upgrade to %s: exit %d", nw.FullVersion(), res.code)
	}
	linkIntact("after the upgrade")
	var rp string
	for _, n := range names() {
		if strings.HasPrefix(n, "openwatch_"+nw.FullVersion()+"_schema-"+owning.Head+"_") {
			rp = n
		}
	}
	if rp == "" {
		e.t.Fatalf("no restore point of the upgrade in %s: %v", target, names())
	}
	if got := e.mustOperator("openwatch", "backup", "--list").out; !strings.Contains(got, backupDir+"/"+rp) {
		e.t.Errorf("backup --list does not show %s:\n%s", rp, got)
	}

	res := e.mustOperator("openwatch", "backup", "--prune")
	if !strings.Contains(res.out, "removed "+backupDir+"/"+stale) {
		e.t.Errorf("backup --prune did not say it removed %s:\n%s", stale, res.out)
	}
	want := []string{inside, "notes.txt", rp}
	slices.Sort(want)
	if got := names(); !slices.Equal(got, want) {
		e.t.Errorf("behind the symlink after backup --prune: %v, want %v", got, want)
	}
	if got := e.r.readFile("/root/precious"); got != "keep" {
		e.t.Errorf("the target of a symlink inside BACKUP_DIR: %q", got)
	}

	if res := e.pm(e.f.remove...); res.code != 0 {
		e.t.Fatalf("removal: exit %d", res.code)
	}
	linkIntact("after removal")
	if got := names(); !slices.Equal(got, want) {
		e.t.Errorf("behind the symlink after removal: %v, want %v", got, want)
	}
	if e.f.purge != nil {
		if res := e.pm(e.f.purge...); res.code != 0 {
			e.t.Fatalf("purge: exit %d", res.code)
		}
		linkIntact("after purge")
		if got := names(); !slices.Equal(got, want) {
			e.t.Errorf("behind the symlink after purge: %v, want %v", got, want)
		}
	}
	if m := e.r.mode(target); m != 0o700 {
		e.t.Errorf("%s mode %o, want the operator's 700", target, m)
	}
}
