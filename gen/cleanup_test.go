package gen

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

func stampName(version string, age time.Duration) string {
	return "openwatch_" + version + "_schema-20260101000003_" + time.Now().UTC().Add(-age).Format("20060102T150405Z") + ".dump"
}

func TestCleanupBackups(t *testing.T) {
	day := 24 * time.Hour
	for _, shell := range shells {
		t.Run(shellName(shell), func(t *testing.T) {
			t.Run("prunes only old restore points and keeps the newest", func(t *testing.T) {
				sb := newSandbox(t)
				dir := sb.spec.Paths.BackupDir
				outside := filepath.Join(sb.root, "outside")
				writeFile(t, filepath.Join(outside, "precious"), "keep", 0o600)
				old := []string{
					stampName("1.0.0-1", 40*day),
					stampName("1.0.0 with spaces", 31*day), // a name with spaces
				}
				keep := []string{
					stampName("1.1.0-1", 2*day),
					stampName("1.1.0-1", 29*day),
					"openwatch_notes.txt",                           // not a restore point
					"other_1.0.0_schema-1_20200101T000000Z.dump",    // another prefix
					"openwatch_1.0.0_schema-1_garbage.dump",         // undatable
					".openwatch-123.partial",                        // partial file
					"openwatch_1_schema-1_20200101T000000Z.dump.gz", // other suffix
				}
				for _, n := range append(append([]string{}, old...), keep...) {
					writeFile(t, filepath.Join(dir, n), "dump", 0o600)
				}
				// A symlink and a directory named like old restore points.
				link := filepath.Join(dir, stampName("0.9.0-1", 100*day))
				if err := os.Symlink(filepath.Join(outside, "precious"), link); err != nil {
					t.Fatal(err)
				}
				keep = append(keep, filepath.Base(link))
				subdir := stampName("0.8.0-1", 100*day)
				if err := os.Mkdir(filepath.Join(dir, subdir), 0o700); err != nil {
					t.Fatal(err)
				}
				keep = append(keep, subdir)

				rc, out := sb.exec(shell, sb.spec.CleanupScript(), nil)
				if rc != 0 {
					t.Fatalf("exit %d:\n%s", rc, out)
				}
				if d := Diff("want", "got", lines(sorted(keep)), lines(listDir(t, dir))); d != "" {
					t.Errorf("backup dir after cleanup (-want +got):\n%s\noutput:\n%s", d, out)
				}
				if b, err := os.ReadFile(filepath.Join(outside, "precious")); err != nil || string(b) != "keep" {
					t.Errorf("symlink target touched: %q, %v", b, err)
				}
				if !strings.Contains(out, "2 restore point(s)") {
					t.Errorf("output: %s", out)
				}
			})
			t.Run("always keeps the newest even when it is old", func(t *testing.T) {
				sb := newSandbox(t)
				dir := sb.spec.Paths.BackupDir
				newest := stampName("1.0.0-1", 50*day)
				for _, n := range []string{newest, stampName("1.0.0-1", 60*day), stampName("0.9.0-1", 70*day)} {
					writeFile(t, filepath.Join(dir, n), "dump", 0o600)
				}
				if rc, out := sb.exec(shell, sb.spec.CleanupScript(), nil); rc != 0 {
					t.Fatalf("exit %d:\n%s", rc, out)
				}
				if d := Diff("want", "got", lines([]string{newest}), lines(listDir(t, dir))); d != "" {
					t.Errorf("(-want +got):\n%s", d)
				}
			})
			t.Run("reads BACKUP_DIR and BACKUP_RETENTION_DAYS from upgrade.conf as data", func(t *testing.T) {
				sb := newSandbox(t)
				// A hostile directory name: executing the config would create pwned.
				dir := filepath.Join(sb.root, "it's $(touch pwned) `touch pwned` \"x\"")
				conf := "# comment\n; comment\nAUTO_BACKUP=yes\n  BACKUP_DIR = \"" + dir + "\"\nBACKUP_RETENTION_DAYS='5'\n$(touch pwned)=1\n"
				writeFile(t, sb.spec.Paths.ConfigFile, conf, 0o640)
				old, recent := stampName("1.0.0-1", 6*day), stampName("1.0.0-1", 4*day)
				newest := stampName("1.0.0-1", 1*day)
				for _, n := range []string{old, recent, newest} {
					writeFile(t, filepath.Join(dir, n), "dump", 0o600)
				}
				rc, out := sb.exec(shell, sb.spec.CleanupScript(), nil)
				if rc != 0 {
					t.Fatalf("exit %d:\n%s", rc, out)
				}
				if d := Diff("want", "got", lines(sorted([]string{recent, newest})), lines(listDir(t, dir))); d != "" {
					t.Errorf("(-want +got):\n%s\n%s", d, out)
				}
				if sb.exists(filepath.Join(sb.root, "pwned")) {
					t.Error("the config was executed")
				}
			})
			t.Run("refuses a bad retention", func(t *testing.T) {
				sb := newSandbox(t)
				writeFile(t, sb.spec.Paths.ConfigFile, "BACKUP_RETENTION_DAYS=1; rm -rf /\n", 0o640)
				if rc, out := sb.exec(shell, sb.spec.CleanupScript(), nil); rc == 0 || !strings.Contains(out, "whole number") {
					t.Errorf("exit %d, want failure:\n%s", rc, out)
				}
			})
			t.Run("does not follow a symlinked backup dir", func(t *testing.T) {
				sb := newSandbox(t)
				target := filepath.Join(sb.root, "elsewhere")
				n := stampName("1.0.0-1", 90*day)
				writeFile(t, filepath.Join(target, n), "dump", 0o600)
				writeFile(t, filepath.Join(target, stampName("1.0.0-1", 1*day)), "dump", 0o600)
				link := filepath.Join(sb.root, "linked")
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
				writeFile(t, sb.spec.Paths.ConfigFile, "BACKUP_DIR="+link+"\n", 0o640)
				if rc, out := sb.exec(shell, sb.spec.CleanupScript(), nil); rc == 0 {
					t.Errorf("exit 0, want failure:\n%s", out)
				}
				if !sb.exists(filepath.Join(target, n)) {
					t.Error("followed the symlinked directory")
				}
			})
		})
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return sorted(names)
}

func sorted(s []string) []string {
	s = append([]string{}, s...)
	sort.Strings(s)
	return s
}
