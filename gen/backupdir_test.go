package gen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The packages do not own BACKUP_DIR (so removing them never removes it or
// an operator's symlink in its place): the postinst creates it, root only,
// when nothing is there, and leaves whatever is there alone.
func TestPostinstCreatesTheBackupDirOnlyWhenNothingIsThere(t *testing.T) {
	type state struct {
		name  string
		setup func(t *testing.T, sb *sandbox) // BACKUP_DIR is absent when it runs
		check func(t *testing.T, sb *sandbox)
	}
	states := []state{
		{"missing, with its parent: created 0700", func(t *testing.T, sb *sandbox) {},
			func(t *testing.T, sb *sandbox) {
				fi, err := os.Lstat(sb.spec.Paths.BackupDir)
				if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
					t.Errorf("BACKUP_DIR: %v, %v; want a 0700 directory", fi, err)
				}
				if m := sb.mode(filepath.Dir(sb.spec.Paths.BackupDir)); m != 0o755 {
					t.Errorf("parent created %v, want 0755", m)
				}
			}},
		{"an existing directory keeps its mode", func(t *testing.T, sb *sandbox) {
			if err := os.MkdirAll(sb.spec.Paths.BackupDir, 0o750); err != nil {
				t.Fatal(err)
			}
			os.Chmod(sb.spec.Paths.BackupDir, 0o750)
		}, func(t *testing.T, sb *sandbox) {
			if m := sb.mode(sb.spec.Paths.BackupDir); m != 0o750 {
				t.Errorf("mode %v, want the operator's 0750", m)
			}
		}},
		{"a symlink to another disk is left, and its target", func(t *testing.T, sb *sandbox) {
			target := filepath.Join(sb.root, "bigdisk")
			writeFile(t, filepath.Join(target, "openwatch_1_schema-1_20260101T000000Z.dump"), "x", 0o600)
			os.Chmod(target, 0o711)
			os.MkdirAll(filepath.Dir(sb.spec.Paths.BackupDir), 0o755)
			if err := os.Symlink(target, sb.spec.Paths.BackupDir); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, sb *sandbox) {
			if l, err := os.Readlink(sb.spec.Paths.BackupDir); err != nil || l != filepath.Join(sb.root, "bigdisk") {
				t.Errorf("symlink: %q, %v", l, err)
			}
			if m := sb.mode(filepath.Join(sb.root, "bigdisk")); m != 0o711 {
				t.Errorf("target mode %v, want 0711", m)
			}
			if !sb.exists(filepath.Join(sb.root, "bigdisk", "openwatch_1_schema-1_20260101T000000Z.dump")) {
				t.Error("the target's restore point is gone")
			}
		}},
		{"a dangling symlink is left dangling", func(t *testing.T, sb *sandbox) {
			os.MkdirAll(filepath.Dir(sb.spec.Paths.BackupDir), 0o755)
			if err := os.Symlink(filepath.Join(sb.root, "unmounted"), sb.spec.Paths.BackupDir); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, sb *sandbox) {
			if _, err := os.Readlink(sb.spec.Paths.BackupDir); err != nil {
				t.Errorf("symlink: %v", err)
			}
			if sb.exists(filepath.Join(sb.root, "unmounted")) {
				t.Error("created the symlink's target")
			}
		}},
	}
	for _, script := range []struct{ name, path string }{{"deb", "deb/postinst"}, {"rpm", "rpm/post.sh"}} {
		args := map[string][]string{"deb": {"configure"}, "rpm": {"1"}}[script.name]
		for _, st := range states {
			for _, shell := range shells {
				t.Run(script.name+"/"+st.name+"/"+shellName(shell), func(t *testing.T) {
					sb := newSandbox(t)
					if err := os.RemoveAll(filepath.Dir(sb.spec.Paths.BackupDir)); err != nil {
						t.Fatal(err)
					}
					st.setup(t, sb)
					if rc, out := sb.run(shell, script.path, nil, args...); rc != 0 {
						t.Fatalf("exit %d:\n%s", rc, strings.ReplaceAll(out, sb.root, "ROOT"))
					}
					st.check(t, sb)
				})
			}
		}
	}
}

// Releases before this one owned BACKUP_DIR, and the package manager unlinks
// an operator's symlink found in that directory's place when the upgrade
// takes the old release's directory away: dpkg while unpacking (between
// preinst and postinst), rpm when it erases the old release's files (after
// %post, before %posttrans). The preinst remembers the symlink and the
// postinst (deb) or %posttrans (rpm) puts it back.
func TestAnUpgradePutsBackTheSymlinkThePackageManagerRemoved(t *testing.T) {
	steps := map[string][]struct {
		script string
		args   []string
		unlink bool // the package manager removes the symlink after this step
	}{
		"deb": {{"deb/preinst", []string{"upgrade", "1.0.0-1"}, true}, {"deb/postinst", []string{"configure", "1.0.0-1"}, false}},
		"rpm": {{"rpm/pre.sh", []string{"2"}, false}, {"rpm/post.sh", []string{"2"}, true}, {"rpm/posttrans.sh", []string{"0"}, false}},
	}
	for _, format := range []string{"deb", "rpm"} {
		for _, shell := range shells {
			t.Run(format+"/"+shellName(shell), func(t *testing.T) {
				sb := newSandbox(t)
				sb.answer(check, 0)
				sb.answer(isActive, 3)
				target := filepath.Join(sb.root, "bigdisk")
				writeFile(t, filepath.Join(target, "openwatch_1_schema-1_20260101T000000Z.dump"), "x", 0o600)
				link := sb.spec.Paths.BackupDir
				if err := os.Remove(link); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
				for _, st := range steps[format] {
					if rc, out := sb.run(shell, st.script, nil, st.args...); rc != 0 {
						t.Fatalf("%s %v: exit %d\n%s", st.script, st.args, rc, out)
					}
					if st.unlink {
						if err := os.Remove(link); err != nil {
							t.Fatal(err)
						}
					}
				}
				if l, err := os.Readlink(link); err != nil || l != target {
					t.Errorf("BACKUP_DIR after the upgrade: %q, %v; want the symlink to %s", l, err, target)
				}
				if !sb.exists(filepath.Join(target, "openwatch_1_schema-1_20260101T000000Z.dump")) {
					t.Error("the restore point behind the symlink is gone")
				}
				if sb.exists(sb.spec.BackupDirLink()) {
					t.Error("the remembered symlink was not forgotten at the end of the upgrade")
				}
			})
		}
	}
}
