package gen

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultSpecIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *Spec)
		field  string
		want   error
	}{
		{"an empty package name", func(s *Spec) { s.Name = "" }, "Name", ErrEmpty},
		{"a package name that cannot name a clone database", func(s *Spec) { s.Name = "acme.watch" }, "Name", ErrBadName},
		{"an empty maintainer", func(s *Spec) { s.Maintainer = "" }, "Maintainer", ErrEmpty},
		{"an empty backup dir", func(s *Spec) { s.Paths.BackupDir = "" }, "Paths.BackupDir", ErrEmpty},
		{"a newline in a path", func(s *Spec) { s.Paths.Journal = "/var/lib/openwatch/x\nrm -rf /" }, "Paths.Journal", ErrControlChar},
		{"a newline in the description", func(s *Spec) { s.Description = "a\nb" }, "Description", ErrControlChar},
		{"a relative path", func(s *Spec) { s.Paths.Binary = "usr/bin/openwatch" }, "Paths.Binary", ErrNotAbsolute},
		{"an unclean path", func(s *Spec) { s.Paths.StateDir = "/var/lib/../openwatch" }, "Paths.StateDir", ErrNotAbsolute},
		{"the root directory", func(s *Spec) { s.Paths.BackupDir = "/" }, "Paths.BackupDir", ErrNotAbsolute},
		{"a unit name without a type", func(s *Spec) { s.Units.App = "openwatch" }, "Units.App", ErrBadUnitName},
		{"a unit name with a space", func(s *Spec) { s.Units.Database = "postgresql 15.service" }, "Units.Database", ErrBadUnitName},
		{"a unit name with a slash", func(s *Spec) { s.Units.App = "../x.service" }, "Units.App", ErrBadUnitName},
		{"a cleanup base name with a quote", func(s *Spec) { s.Units.Cleanup = "x'y" }, "Units.Cleanup", ErrBadUnitName},
		{"a user name with a space", func(s *Spec) { s.User = "open watch" }, "User", ErrBadName},
		{"a group name with a $", func(s *Spec) { s.Group = "$(id)" }, "Group", ErrBadName},
		{"a drop-in that is not a .conf", func(s *Spec) { s.Units.DropIn = "guard" }, "Units.DropIn", ErrBadName},
		{"a zero retention", func(s *Spec) { s.Backup.RetentionDays = 0 }, "Backup.RetentionDays", ErrOutOfRange},
		{"a compression of 10", func(s *Spec) { s.Backup.Compression = 10 }, "Backup.Compression", ErrOutOfRange},
		{"a dependency with a newline", func(s *Spec) { s.DebDepends = []string{"a\nb"} }, "DebDepends[0]", ErrBadName},
		{"an escaping dist dir", func(s *Spec) { s.DistDir = "../dist" }, "DistDir", ErrNotAbsolute},
		{"an apt hook name apt does not read", func(s *Spec) { s.Gate.AptConf = "50openwatch gate" }, "Gate.AptConf", ErrBadName},
		{"a dnf plugin that is no Python module name", func(s *Spec) { s.Gate.DNFPlugin = "open-watch" }, "Gate.DNFPlugin", ErrBadName},
		{"a skip variable with a $", func(s *Spec) { s.Gate.SkipEnv = "$(id)" }, "Gate.SkipEnv", ErrBadName},
		{"no RPM target", func(s *Spec) { s.Gate.RPMTargets = nil }, "Gate.RPMTargets", ErrEmpty},
		{"a dist tag with a dot", func(s *Spec) { s.Gate.RPMTargets[1].Dist = "el.8" }, "Gate.RPMTargets[1].Dist", ErrBadName},
		{"a relative plugin dir", func(s *Spec) { s.Gate.RPMTargets[0].PluginDir = "dnf-plugins" }, "Gate.RPMTargets[0].PluginDir", ErrNotAbsolute},
		{"a Python version that is not 3.X", func(s *Spec) { s.Gate.RPMTargets[2].Python = "3.12; rm" }, "Gate.RPMTargets[2].Python", ErrBadName},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Default()
			c.mutate(s)
			err := s.Validate()
			if !errors.Is(err, c.want) {
				t.Fatalf("Validate() = %v, want %v", err, c.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("Validate() = %v, want a *FieldError for %s", err, c.field)
			}
			if _, err := Render(s); !errors.Is(err, c.want) {
				t.Fatalf("Render() = %v, want it to refuse with %v", err, c.want)
			}
		})
	}
}

func TestRenderRefusesValuesAUnitFileCannotHold(t *testing.T) {
	s := Default()
	s.Paths.Binary = "/opt/open watch/bin/openwatch"
	if _, err := Render(s); err == nil || !strings.Contains(err.Error(), "unit file") {
		t.Fatalf("Render() = %v, want a unit-file error", err)
	}
}

func TestShQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":         "''",
		"plain":    "'plain'",
		"it's":     `'it'\''s'`,
		"$(x) `y`": "'$(x) `y`'",
	} {
		if got := shQuote(in); got != want {
			t.Errorf("shQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// hostile is valid (no control characters, absolute, clean) but full of
// shell syntax.
const hostile = `it's $(touch pwned1) ` + "`touch pwned2`" + ` "q" ;touch pwned3 & \ $HOME *`

// TestHostileSpecValuesStayData renders a spec whose shell-only paths are
// hostile, runs the scripts under every shell, and checks that the values
// arrived intact and nothing they spell was executed.
func TestHostileSpecValuesStayData(t *testing.T) {
	for _, shell := range shells {
		t.Run(shellName(shell), func(t *testing.T) {
			sb := newSandbox(t, func(s *Spec, root string) {
				base := filepath.Join(root, hostile)
				s.Paths.StateDir = base
				s.Paths.UpgradeDir = filepath.Join(root, "upgrade "+hostile)
				s.Paths.Journal = filepath.Join(s.Paths.UpgradeDir, "journal "+hostile)
				os.MkdirAll(s.Paths.UpgradeDir, 0o750)
				s.Paths.ConfigDir = filepath.Join(root, "etc", hostile)
				s.Paths.ConfigFile = filepath.Join(s.Paths.ConfigDir, "upgrade.conf")
				s.Paths.SecretsFile = filepath.Join(s.Paths.ConfigDir, "secrets.env")
				s.Description = hostile
				s.Maintainer = hostile
			})
			if err := os.MkdirAll(sb.spec.Paths.StateDir, 0o755); err != nil {
				t.Fatal(err)
			}
			sb.systemd()
			sb.answer(check, 10)
			sb.answer(isActive, 0)
			sb.answer(migrate, 1)
			rc, out := sb.exec(shell, sb.spec.UpgradeHelper(), nil)
			if rc != 1 {
				t.Fatalf("helper exit %d, want 1:\n%s", rc, out)
			}
			if sb.journal()["OUTCOME"] != "error" {
				t.Errorf("journal not written at %q:\n%s", sb.spec.Paths.Journal, out)
			}

			sb.answer(groupOK, 2)
			sb.answer(userOK, 2)
			if rc, out := sb.run(shell, "deb/preinst", nil, "install"); rc != 0 {
				t.Fatalf("preinst exit %d:\n%s", rc, out)
			}
			log := strings.Join(sb.log(), "\n")
			if !strings.Contains(log, "--home-dir ROOT/"+hostile+" --no-create-home") {
				t.Errorf("useradd did not get the home dir verbatim:\n%s", log)
			}
			if rc, out := sb.run(shell, "deb/postinst", nil, "configure", ""); rc != 0 ||
				!strings.Contains(out, sb.spec.Paths.SecretsFile) {
				t.Errorf("postinst exit %d, want 0 and the secrets path verbatim:\n%s", rc, out)
			}
			if rc, out := sb.run(shell, "deb/postrm", nil, "purge"); rc != 0 {
				t.Fatalf("postrm exit %d:\n%s", rc, out)
			}
			if sb.exists(sb.spec.Paths.Journal) {
				t.Error("purge did not remove the journal")
			}
			for _, p := range []string{"pwned1", "pwned2", "pwned3"} {
				if matches, _ := filepath.Glob(filepath.Join(sb.root, "*", p)); sb.exists(filepath.Join(sb.root, p)) || len(matches) > 0 {
					t.Errorf("%s was created: a spec value was executed", p)
				}
			}
		})
	}
}
