package gen

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenSpec differs from Default in every field a template uses, so the
// golden tree shows where each one lands.
func goldenSpec() *Spec {
	s := Default()
	s.Name = "acme-watch"
	s.User, s.Group = "acmew", "acmeg"
	s.Paths.Binary = "/opt/acme/bin/acme-watch"
	s.Paths.LibDir = "/opt/acme/lib"
	s.Paths.ConfigDir = "/etc/acme"
	s.Paths.ConfigFile = "/etc/acme/upgrade.conf"
	s.Paths.SecretsFile = "/etc/acme/secrets.env"
	s.Paths.StateDir = "/var/lib/acme"
	s.Paths.UpgradeDir = "/var/lib/acme-upgrade"
	s.Paths.Journal = "/var/lib/acme-upgrade/upgrade.state"
	s.Paths.BackupDir = "/srv/acme/restore-points"
	s.Units.App = "acme.service"
	s.Units.Database = "postgresql@16-main.service"
	s.Units.Cleanup = "acme-prune"
	s.Units.Export = "acme-export.service"
	s.Units.OnCalendar = "*-*-* 03:00:00"
	s.Units.RandomizedDelay = "30m"
	s.Units.DropIn = "10-guard.conf"
	s.Backup = Backup{Auto: false, RetentionDays: 7, Compression: 1, LockTimeout: 60, LockWait: 10, RestorePoint: "file", Rehearse: "no", RehearseAutoMaxMB: 512}
	return s
}

func TestRenderGolden(t *testing.T) {
	files, err := Render(goldenSpec())
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("testdata", "golden")
	if *update {
		os.RemoveAll(root)
		if err := Write(root, files); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Check(root, files, &buf, "."); err != nil {
		t.Errorf("%v (run go test ./gen -update to accept):\n%s", err, buf.String())
	}
}

// repoRoot is where cmd/gen writes: the module root.
const repoRoot = ".."

func TestCommittedFilesMatchSpec(t *testing.T) {
	s := Default()
	files, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Check(repoRoot, files, &buf, s.DistDir); err != nil {
		t.Errorf("%v:\n%s", err, buf.String())
	}
}

func TestCheckReportsDrift(t *testing.T) {
	root := t.TempDir()
	files := map[string][]byte{"dist/a": []byte("one\ntwo\nthree\n"), "dist/b": []byte("b\n")}
	if err := Write(root, files); err != nil {
		t.Fatal(err)
	}
	if err := Check(root, files, new(bytes.Buffer), "dist"); err != nil {
		t.Fatalf("Check after Write = %v", err)
	}
	writeFile(t, filepath.Join(root, "dist/a"), "one\n2\nthree\n", 0o644)
	writeFile(t, filepath.Join(root, "dist/stale"), "x", 0o644)
	os.Remove(filepath.Join(root, "dist/b"))
	var buf bytes.Buffer
	err := Check(root, files, &buf, "dist")
	if !errors.Is(err, ErrDrift) {
		t.Fatalf("Check = %v, want ErrDrift", err)
	}
	want := `--- dist/a (committed)
+++ dist/a (rendered)
@@ -1,3 +1,3 @@
 one
-2
+two
 three
missing: dist/b
stale: dist/stale is not rendered by the spec any more; delete it
`
	if d := Diff("want", "got", want, buf.String()); d != "" {
		t.Error(d)
	}
}

func TestRenderIsReproducible(t *testing.T) {
	a, err := Render(Default())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Render(Default())
	for name := range a {
		if !bytes.Equal(a[name], b[name]) {
			t.Errorf("%s differs between two renders", name)
		}
	}
}

var headerRE = regexp.MustCompile(`^(# (Code generated|Generated)|// Code generated) by gen from templates/[a-z]+/[a-z0-9._-]+\.tmpl`)

func TestEveryFileSaysItIsGenerated(t *testing.T) {
	files, err := Render(Default())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		lines := strings.SplitN(string(b), "\n", 3)
		first := lines[0]
		if strings.HasPrefix(first, "#!") {
			first = lines[1]
		}
		if !headerRE.MatchString(first) {
			t.Errorf("%s: no generated-file header near the top: %q", name, first)
		}
	}
}

func TestScriptsPassShellcheck(t *testing.T) {
	for _, spec := range []*Spec{Default(), goldenSpec()} {
		files, err := Render(spec)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		var scripts []string
		for name, b := range files {
			if Mode(b) != 0o755 {
				continue
			}
			p := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
			writeFile(t, p, string(b), 0o755)
			scripts = append(scripts, p)
		}
		if len(scripts) != 11 { // nine maintainer scripts, the upgrade helper, the gate
			t.Errorf("%d scripts rendered, want 11", len(scripts))
		}
		out, err := exec.Command("shellcheck", append([]string{"-s", "sh", "-S", "style"}, scripts...)...).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	}
}

func TestDiff(t *testing.T) {
	if d := Diff("a", "b", "x\n", "x\n"); d != "" {
		t.Errorf("equal inputs: %q", d)
	}
	got := Diff("a", "b", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n")
	want := `--- a
+++ b
@@ -2,9 +2,10 @@
 2
 3
 4
-5
+five
 6
 7
 8
 9
 10
+11
`
	if got != want {
		t.Errorf("Diff:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteIsAtomicAndSetsModes(t *testing.T) {
	root := t.TempDir()
	files := map[string][]byte{"dist/x.sh": []byte("#!/bin/sh\n"), "dist/sub/y.conf": []byte("y\n")}
	if err := Write(root, files); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"dist/x.sh": 0o755, "dist/sub/y.conf": 0o644} {
		st, err := os.Stat(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	// A second write of the same content leaves the files alone.
	before, _ := os.Stat(filepath.Join(root, "dist/x.sh"))
	if err := Write(root, files); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(root, "dist/x.sh"))
	if !os.SameFile(before, after) {
		t.Error("an unchanged file was rewritten")
	}
	// A changed file is replaced by rename: no temp files stay behind.
	files["dist/x.sh"] = []byte("#!/bin/sh\necho new\n")
	if err := Write(root, files); err != nil {
		t.Fatal(err)
	}
	if d := Diff("want", "got", lines([]string{"sub", "x.sh"}), lines(listDir(t, filepath.Join(root, "dist")))); d != "" {
		t.Error(d)
	}
}

func ExampleRender() {
	files, err := Render(Default())
	if err != nil {
		panic(err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fmt.Println(name)
	}
	// Output:
	// dist/apt/50openwatch-gate
	// dist/copyright
	// dist/deb/postinst
	// dist/deb/postrm
	// dist/deb/preinst
	// dist/deb/prerm
	// dist/dnf/openwatch.py
	// dist/lintian-overrides
	// dist/openwatch-gate.sh
	// dist/openwatch-upgrade.sh
	// dist/rpm/post.sh
	// dist/rpm/posttrans.sh
	// dist/rpm/postun.sh
	// dist/rpm/pre.sh
	// dist/rpm/preun.sh
	// dist/rpmlintrc
	// dist/systemd/50-schema-guard.conf
	// dist/systemd/openwatch-backup-cleanup.service
	// dist/systemd/openwatch-backup-cleanup.timer
	// dist/upgrade.conf
	// internal/defaults/defaults_gen.go
	// nfpm.yaml
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
	return names // ReadDir sorts by name
}

// The binary's defaults are Go source that gofmt leaves alone, marked as
// generated the way Go tools recognise, with every value quoted as Go data.
func TestTheGoDefaultsAreGofmtCleanGeneratedCode(t *testing.T) {
	hostile := Default()
	hostile.Paths.UpgradeDir = "/var/lib/it's \"`$(x)\\n"
	hostile.Paths.Journal = hostile.Paths.UpgradeDir + "/j"
	for _, spec := range []*Spec{Default(), goldenSpec(), hostile} {
		files, err := Render(spec)
		if err != nil {
			t.Fatal(err)
		}
		b := files[GoDefaults]
		formatted, err := format.Source(b)
		if err != nil || !bytes.Equal(formatted, b) {
			t.Errorf("%s is not gofmt-clean (%v):\n%s", GoDefaults, err, b)
		}
		if !regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`).Match(b) {
			t.Errorf("%s lacks the generated-code marker", GoDefaults)
		}
		if want := "JournalPath   = " + strconv.Quote(spec.Paths.Journal) + "\n"; !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%s", GoDefaults, want, b)
		}
	}
}
