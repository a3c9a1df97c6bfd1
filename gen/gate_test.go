package gen

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// aptInput is what apt writes to a DPkg::Pre-Install-Pkgs hook that asked
// for protocol version 2: the version, apt's configuration (values
// percent-encoded), an empty line, then one line per package.
func aptInput(packages ...string) string {
	return "VERSION 2\nAPT::Architecture=amd64\nCommandLine::AsString=apt-get%20-y%20install%20openwatch\nDPkg::Tools::Options::x::Version=2\n\n" +
		strings.Join(packages, "\n") + "\n"
}

// incomingDeb builds a real .deb holding, at the spec's binary path, a stand-in
// for the incoming binary: it records its argv and the recovery command it
// was given in ROOT/incoming.log and exits with the code in ROOT/incoming.rc.
func incomingDeb(t *testing.T, sb *sandbox) string {
	t.Helper()
	tree := filepath.Join(sb.root, "debtree")
	writeFile(t, filepath.Join(tree, "DEBIAN", "control"), "Package: openwatch\nVersion: 1.1.0-1\nArchitecture: amd64\nMaintainer: e2e <e2e@example>\nDescription: incoming\n", 0o644)
	writeFile(t, filepath.Join(tree, sb.spec.Paths.Binary), `#!/bin/sh
case $1 in --version) echo "openwatch 1.1.0-1"; echo "schema head 1"; exit 0 ;; esac
echo "incoming $* recovery=$OPENWATCH_RECOVERY_COMMAND" >>`+shQuote(sb.root)+`/incoming.log
exit "$(cat `+shQuote(sb.root)+`/incoming.rc 2>/dev/null || echo 0)"
`, 0o755)
	deb := filepath.Join(sb.root, "openwatch_1.1.0-1_amd64.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
	}
	return deb
}

// The gate as apt's hook: what it runs and what it lets through, for every
// form of apt's input, under every shell.
func TestGateUnderApt(t *testing.T) {
	type tc struct {
		name      string
		lines     func(deb string) []string
		preflight int
		env       []string
		code      int
		ran       string // the incoming binary's log, "" when it must not run
		say       []string
	}
	upgrade := func(deb string) []string {
		return []string{"e2e-other 1 < 2 /var/cache/apt/archives/e2e-other_2_all.deb", "openwatch 1.0.0-1 < 1.1.0-1 " + deb}
	}
	cases := []tc{
		{name: "a ready upgrade goes on", lines: upgrade, code: 0,
			ran: "incoming migrate --preflight recovery=apt-get -y install openwatch",
			say: []string{"the incoming openwatch 1.1.0-1 is ready for this database; the upgrade goes on"}},
		{name: "a failed preflight refuses, naming apt's own command line", lines: upgrade, preflight: 19, code: 1,
			ran: "incoming migrate --preflight recovery=apt-get -y install openwatch",
			say: []string{"UPGRADE REFUSED (the incoming openwatch 1.1.0-1: migrate --preflight exit 19)", "run again: apt-get -y install openwatch"}},
		{name: "an unreachable database cannot decide and goes on", lines: upgrade, preflight: 12, code: 0,
			ran: "incoming migrate --preflight recovery=apt-get -y install openwatch",
			say: []string{"cannot decide: the database is unreachable or not configured (exit 12); the upgrade goes on"}},
		{name: "a downgrade is checked too", lines: func(deb string) []string { return []string{"openwatch 1.2.0-1 > 1.1.0-1 " + deb} },
			preflight: 11, code: 1, ran: "incoming migrate --preflight recovery=apt-get -y install openwatch",
			say: []string{"UPGRADE REFUSED"}},
		{name: "a transaction without openwatch is none of its business", lines: func(string) []string {
			return []string{"e2e-other 1 < 2 /var/cache/apt/archives/e2e-other_2_all.deb"}
		}, code: 0},
		{name: "removing openwatch is not checked", lines: func(string) []string { return []string{"openwatch 1.0.0-1 > - **REMOVE**"} }, code: 0},
		{name: "openwatch without a package file cannot decide", lines: func(string) []string { return []string{"openwatch 1.0.0-1 = 1.0.0-1 **CONFIGURE**"} },
			code: 0, say: []string{"cannot decide: this apt run brings no openwatch package file"}},
		{name: "the operator skips it for one run", lines: upgrade, preflight: 19, env: []string{"OPENWATCH_SKIP_GATE=1"}, code: 0,
			say: []string{"skipped (OPENWATCH_SKIP_GATE=1)"}},
	}
	for _, sh := range shells {
		for _, c := range cases {
			t.Run(shellName(sh)+"/"+c.name, func(t *testing.T) {
				sb := newSandbox(t)
				deb := incomingDeb(t, sb)
				writeFile(t, filepath.Join(sb.root, "incoming.rc"), strconv.Itoa(c.preflight), 0o644)
				tmp := filepath.Join(sb.root, "tmp")
				if err := os.MkdirAll(tmp, 0o755); err != nil {
					t.Fatal(err)
				}
				script := filepath.Join(sb.root, "scripts", "gate")
				writeFile(t, script, string(sb.file("openwatch-gate.sh")), 0o755)
				cmd := exec.Command(sh[0], append(append([]string{}, sh[1:]...), script, "--apt")...)
				cmd.Dir = sb.root
				cmd.Env = append([]string{"PATH=" + filepath.Join(sb.root, "bin") + ":/usr/bin:/bin", "LC_ALL=C", "TMPDIR=" + tmp}, c.env...)
				cmd.Stdin = strings.NewReader(aptInput(c.lines(deb)...))
				out, err := cmd.CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != c.code {
					t.Errorf("exit %d, want %d\n%s", code, c.code, out)
				}
				ran, _ := os.ReadFile(filepath.Join(sb.root, "incoming.log"))
				if got := strings.TrimSpace(string(ran)); got != c.ran {
					t.Errorf("the incoming binary ran %q, want %q", got, c.ran)
				}
				if got := sb.log(); len(got) != 0 {
					t.Errorf("the installed binary or another stub ran: %v", got)
				}
				for _, s := range c.say {
					if !strings.Contains(string(out), s) {
						t.Errorf("output lacks %q:\n%s", s, out)
					}
				}
				if len(c.say) == 0 && len(out) != 0 {
					t.Errorf("want no output, got:\n%s", out)
				}
				if left, _ := os.ReadDir(tmp); len(left) != 0 {
					t.Errorf("left in TMPDIR: %v", left)
				}
			})
		}
	}
}
