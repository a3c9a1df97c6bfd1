package metrics

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// promtool runs `promtool check metrics` (Debian's prometheus package) on
// content: what an operator's CI would run, and the format's own linter.
func promtool(t *testing.T, content []byte) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\non:\n%s", err, out, content)
	}
}

func TestRender(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		s     State
		want  []string
		avoid []string
	}{
		{
			name: "a failed upgrade that left the service stopped, two pending migrations, a clone newer than a file",
			s: State{Written: at, PackageVersion: "1.2.0-1", BinaryHead: "20260301000000",
				Upgrade:           &Upgrade{Outcome: "migration-failed", Phase: "migrate", Updated: at.Add(-time.Minute), Failed: true, LeftStopped: true},
				DatabaseReachable: true, SchemaVersion: "20260101000000", Pending: 2, RestorePointsKnown: true,
				RestorePoints: []RestorePoint{{Kind: "file", Created: at.Add(-48 * time.Hour), Size: 100}, {Kind: "clone", Created: at.Add(-2 * time.Minute), Size: 8000}}},
			want: []string{
				"openwatch_metrics_updated_timestamp_seconds 1772360100\n",
				`openwatch_build_info{version="1.2.0-1",schema_head="20260301000000"} 1` + "\n",
				`openwatch_upgrade_last_info{outcome="migration-failed",phase="migrate"} 1` + "\n",
				"openwatch_upgrade_last_timestamp_seconds 1772360040\n",
				"openwatch_upgrade_failed 1\n", "openwatch_service_left_stopped 1\n",
				"openwatch_database_reachable 1\n", `openwatch_schema_info{version="20260101000000"} 1` + "\n",
				"openwatch_migrations_pending 2\n", "openwatch_schema_newer 0\n",
				`openwatch_restore_points{kind="clone"} 1` + "\n", `openwatch_restore_points{kind="file"} 1` + "\n",
				`openwatch_restore_point_newest_timestamp_seconds{kind="clone"} 1772359980` + "\n",
				`openwatch_restore_point_newest_size_bytes{kind="clone"} 8000` + "\n",
			},
		},
		{
			name: "no journal, the database unreachable, restore points not listed",
			s:    State{Written: at, PackageVersion: "1.2.0-1", BinaryHead: "20260301000000"},
			want: []string{"openwatch_upgrade_failed 0\n", "openwatch_service_left_stopped 0\n", "openwatch_database_reachable 0\n"},
			avoid: []string{"openwatch_upgrade_last_info", "openwatch_migrations_pending", "openwatch_schema_info",
				"openwatch_restore_points", "openwatch_restore_point_newest"},
		},
		{
			name: "journal values that are not plain words are not copied into labels",
			s: State{Written: at, PackageVersion: "1.0\"\n{x}", BinaryHead: "",
				Upgrade: &Upgrade{Outcome: `succeeded"} 1` + "\nevil 1", Phase: "FINISHED"}, RestorePointsKnown: true},
			want:  []string{`openwatch_upgrade_last_info{outcome="unknown",phase="unknown"} 1`, `openwatch_build_info{version="unknown",schema_head="none"} 1`, `openwatch_restore_points{kind="file"} 0`},
			avoid: []string{"evil", "openwatch_restore_point_newest"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Render(c.s)
			for _, w := range c.want {
				if !strings.Contains(string(got), w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
			for _, a := range c.avoid {
				if strings.Contains(string(got), a) {
					t.Errorf("holds %q:\n%s", a, got)
				}
			}
			promtool(t, got)
		})
	}
}

func TestWrite(t *testing.T) {
	t.Run("replaces the file whole, mode 0644, leaving no temporary file", func(t *testing.T) {
		dir := t.TempDir()
		os.Chmod(dir, 0o755)
		for _, content := range []string{"a 1\n", "b 2\n"} {
			if err := Write(dir, []byte(content)); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, FileName))
			if err != nil || string(b) != content {
				t.Errorf("file holds %q (%v), want %q", b, err, content)
			}
		}
		if fi, _ := os.Stat(filepath.Join(dir, FileName)); fi.Mode().Perm() != 0o644 {
			t.Errorf("mode %v", fi.Mode())
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("directory holds %v", ents)
		}
	})

	t.Run("a symbolic link at the file's name is replaced, not followed", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), t.TempDir()
		os.Chmod(dir, 0o755)
		victim := filepath.Join(elsewhere, "victim")
		os.WriteFile(victim, []byte("keep"), 0o600)
		os.Symlink(victim, filepath.Join(dir, FileName))
		if err := Write(dir, []byte("a 1\n")); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(victim); string(b) != "keep" {
			t.Errorf("the link's target was written: %q", b)
		}
		if fi, _ := os.Lstat(filepath.Join(dir, FileName)); !fi.Mode().IsRegular() {
			t.Errorf("%s is %v, want a regular file", FileName, fi.Mode())
		}
	})

	t.Run("refused, writing nothing: a relative path, a symbolic link, a directory others may write, one owned by another user", func(t *testing.T) {
		base := t.TempDir()
		real := filepath.Join(base, "real")
		os.Mkdir(real, 0o755)
		link := filepath.Join(base, "link")
		os.Symlink(real, link)
		group := filepath.Join(base, "group")
		os.Mkdir(group, 0o775)
		os.Chmod(group, 0o775)
		world := filepath.Join(base, "world")
		os.Mkdir(world, 0o1777)
		os.Chmod(world, 0o1777)
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o755)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			dir  string
			want error
		}{
			{"relative/dir", ErrNotAbsolute}, {link, ErrSymlink}, {group, ErrUntrusted}, {world, ErrUntrusted}, {other, ErrUntrusted},
		} {
			err := Write(c.dir, []byte("a 1\n"))
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.dir, err, c.want)
			}
			if _, serr := os.Lstat(filepath.Join(c.dir, FileName)); serr == nil {
				t.Errorf("%s: the file was written", c.dir)
			}
		}
		if _, err := os.Lstat(filepath.Join(real, FileName)); err == nil {
			t.Errorf("written through the link")
		}
	})
}

// The alert rules docs/UPGRADING.md gives operators load in Prometheus
// (promtool check rules) and name only metrics this package writes.
func TestTheDocumentedAlertRules(t *testing.T) {
	doc, err := os.ReadFile("../../docs/UPGRADING.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "\n    groups:\n")
	if start < 0 {
		t.Fatal("docs/UPGRADING.md gives no alert rules (an indented block starting with groups:)")
	}
	var rules []string
	for _, l := range strings.Split(text[start+1:], "\n") {
		if l != "" && !strings.HasPrefix(l, "    ") {
			break
		}
		rules = append(rules, strings.TrimPrefix(l, "    "))
	}
	file := filepath.Join(t.TempDir(), "openwatch.rules.yml")
	if err := os.WriteFile(file, []byte(strings.Join(rules, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the documented rules: %v\n%s", err, out)
	}
	all := string(Render(State{Written: time.Now(), Upgrade: &Upgrade{Outcome: "succeeded", Phase: "finished", Updated: time.Now()},
		DatabaseReachable: true, RestorePointsKnown: true, RestorePoints: []RestorePoint{{Kind: "file", Created: time.Now()}}}))
	for _, name := range regexp.MustCompile(`openwatch_[a-z_]+`).FindAllString(strings.Join(rules, "\n"), -1) {
		if !strings.Contains(all, "\n"+name+" ") && !strings.Contains(all, "\n"+name+"{") {
			t.Errorf("the documented rules name %s, which openwatch does not write", name)
		}
	}
}
