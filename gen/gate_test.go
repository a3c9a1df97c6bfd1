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
	return aptInputWith("CommandLine::AsString=apt-get%20-y%20install%20openwatch\nDir=/\n", packages...)
}

// aptInputWith is aptInput with config as apt's configuration lines.
func aptInputWith(config string, packages ...string) string {
	return "VERSION 2\nAPT::Architecture=amd64\n" + config + "DPkg::Tools::Options::x::Version=2\n\n" +
		strings.Join(packages, "\n") + "\n"
}

// incomingDeb builds a real .deb holding, at the spec's binary path, a stand-in
// for the incoming binary: it records its argv and the recovery command it
// was given in ROOT/incoming.log and the directory it ran from in
// ROOT/incoming.dir, prints ROOT/incoming.out and exits with the code in
// ROOT/incoming.rc.
func incomingDeb(t *testing.T, sb *sandbox) string {
	return incomingDebAt(t, sb, filepath.Join(sb.root, "openwatch_1.1.0-1_amd64.deb"))
}

func incomingDebAt(t *testing.T, sb *sandbox, deb string) string {
	t.Helper()
	tree := filepath.Join(sb.root, "debtree")
	writeFile(t, filepath.Join(tree, "DEBIAN", "control"), "Package: openwatch\nVersion: 1.1.0-1\nArchitecture: amd64\nMaintainer: e2e <e2e@example>\nDescription: incoming\n", 0o644)
	writeFile(t, filepath.Join(tree, sb.spec.Paths.Binary), `#!/bin/sh
case $1 in --version) echo "openwatch 1.1.0-1"; echo "schema head 1"; exit 0 ;; esac
case "$*" in "migrate --status") echo 'database:         database "app" on 127.0.0.1 port 5432 as "app"'; exit 0 ;; esac
echo "incoming $* recovery=${OPENWATCH_RECOVERY_COMMAND:-} dsn=${OPENWATCH_DATABASE_DSN:-} pghost=${PGHOST:-}" >>`+shQuote(sb.root)+`/incoming.log
echo "${0%/*}" >`+shQuote(sb.root)+`/incoming.dir
cat `+shQuote(sb.root)+`/incoming.out 2>/dev/null
exit "$(cat `+shQuote(sb.root)+`/incoming.rc 2>/dev/null || echo 0)"
`, 0o755)
	if err := os.MkdirAll(filepath.Dir(deb), 0o755); err != nil {
		t.Fatal(err)
	}
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
		debName   string // the incoming .deb's file name, default openwatch_1.1.0-1_amd64.deb
		config    string // apt's configuration lines, default aptInput's
		lines     func(deb string) []string
		preflight int
		out       string // what the incoming binary prints
		env       []string
		code      int
		ran       string   // the incoming binary's log, "" when it must not run
		installed []string // what the installed binary (and the other stubs) ran
		say       []string
		never     []string // must not show in the output
		garbage   bool     // the package file is no package
	}
	upgrade := func(deb string) []string {
		return []string{"e2e-other 1 < 2 /var/cache/apt/archives/e2e-other_2_all.deb", "openwatch 1.0.0-1 < 1.1.0-1 " + deb}
	}
	withClient := func(deb string) []string {
		return append(upgrade(deb), "postgresql-client-17 - < 17.6-1 /var/cache/apt/archives/postgresql-client-17_17.6-1_amd64.deb")
	}
	const ran = "incoming migrate --preflight recovery=apt-get -y install openwatch dsn= pghost="
	refused := func(code int, why string) []string {
		return []string{"openwatch migrate --record gate-refused --message the incoming openwatch 1.1.0-1: migrate --preflight exit " +
			strconv.Itoa(code) + why + " --recovery apt-get -y install openwatch"}
	}
	oldPgDump := "openwatch: preflight: the restore point could not be taken:\n  - /usr/bin/pg_dump is version 15, older than the server (17): pg_dump refuses to dump a newer server; install the PostgreSQL 17 client\nNothing was changed. Fix the cause, then run: apt-get -y install openwatch\n"
	cases := []tc{
		{name: "a ready upgrade goes on, naming the database it checked", lines: upgrade, code: 0, ran: ran,
			say: []string{`the incoming openwatch 1.1.0-1 is ready for database "app" on 127.0.0.1 port 5432 as "app"; the upgrade goes on`}},
		{name: "a failed preflight refuses, naming apt's own command line, and records the refusal", lines: upgrade, preflight: 19, code: 1, ran: ran,
			out:       "openwatch: warning: secrets.env is readable by everyone\nopenwatch: invalid configuration: upgrade.conf: unknown setting AUTO_BACKUPS\n",
			installed: refused(19, ": invalid configuration: upgrade.conf: unknown setting AUTO_BACKUPS"),
			say:       []string{"UPGRADE REFUSED (the incoming openwatch 1.1.0-1: migrate --preflight exit 19)", "run again: apt-get -y install openwatch"}},
		{name: "an unreachable database cannot decide and goes on", lines: upgrade, preflight: 12, code: 0, ran: ran,
			say: []string{"cannot decide: the database is unreachable or not configured (exit 12); the upgrade goes on"}},
		{name: "a downgrade is checked too", lines: func(deb string) []string { return []string{"openwatch 1.2.0-1 > 1.1.0-1 " + deb} },
			preflight: 11, code: 1, ran: ran, installed: refused(11, ""),
			say: []string{"UPGRADE REFUSED"}},
		{name: "a local package whose path has spaces is checked", debName: "my downloads/openwatch 1.1.0.deb", lines: upgrade, preflight: 19, code: 1, ran: ran,
			installed: refused(19, ""), say: []string{"UPGRADE REFUSED"}},
		{name: "a crashing preflight refuses", lines: upgrade, preflight: 139, code: 1, ran: ran,
			installed: refused(139, ""), say: []string{"UPGRADE REFUSED (the incoming openwatch 1.1.0-1: migrate --preflight exit 139)"}},
		{name: "an old pg_dump refuses when the transaction brings no PostgreSQL client", lines: upgrade, preflight: 13, out: oldPgDump, code: 1, ran: ran,
			installed: refused(13, ": preflight: the restore point could not be taken:"), say: []string{"UPGRADE REFUSED"}},
		{name: "an old pg_dump cannot decide when the same transaction installs postgresql-client-17", lines: withClient, preflight: 13, out: oldPgDump, code: 0, ran: ran,
			say: []string{"cannot decide: pg_dump as installed now cannot take the restore point, but this transaction also installs postgresql-client-17; the upgrade goes on"}},
		{name: "an old pg_dump and another problem refuse even with a PostgreSQL client in the transaction", lines: withClient, preflight: 13,
			out:  "openwatch: preflight: the restore point could not be taken:\n  - /usr/bin/pg_dump is version 15, older than the server (17)\n  - /var/backups/openwatch: 10 MB free, about 2 GB needed\n",
			code: 1, ran: ran, installed: refused(13, ": preflight: the restore point could not be taken:"), say: []string{"UPGRADE REFUSED"}},
		{name: "a package file the binary cannot be taken from cannot decide, and nothing is left behind", lines: upgrade, garbage: true, preflight: 19, code: 0,
			say: []string{"cannot decide: " + "%BIN% could not be taken from"}},
		{name: "a transaction without openwatch is none of its business", lines: func(string) []string {
			return []string{"e2e-other 1 < 2 /var/cache/apt/archives/e2e-other_2_all.deb"}
		}, code: 0},
		{name: "removing openwatch is not checked", lines: func(string) []string { return []string{"openwatch 1.0.0-1 > - **REMOVE**"} }, code: 0},
		{name: "only configuring a half-configured openwatch says nothing", lines: func(string) []string { return []string{"openwatch 1.0.0-1 = 1.0.0-1 **CONFIGURE**"} },
			code: 0},
		{name: "an apt run into another root (RootDir) is not judged against this machine's database", config: "CommandLine::AsString=apt-get%20install%20openwatch\nDir=/\nRootDir=/srv/image/\n",
			lines: upgrade, preflight: 19, code: 0, say: []string{"not checked: this apt run installs into another root (RootDir=/srv/image/)"}},
		{name: "an apt run with another Dir is not judged either", config: "CommandLine::AsString=apt-get%20install%20openwatch\nDir=/srv/image/\n",
			lines: upgrade, preflight: 19, code: 0, say: []string{"not checked: this apt run installs into another root (Dir=/srv/image/)"}},
		{name: "credentials in apt's command line are not shown or passed on", config: "CommandLine::AsString=apt-get%20-o%20Acquire::http::Proxy=http://me:pr0xyS3cret@proxy:3128/%20install%20openwatch\nDir=/\n",
			lines: upgrade, preflight: 19, code: 1, ran: "incoming migrate --preflight recovery=apt-get -o Acquire::http::Proxy=http://me:<redacted>@proxy:3128/ install openwatch dsn= pghost=",
			installed: []string{"openwatch migrate --record gate-refused --message the incoming openwatch 1.1.0-1: migrate --preflight exit 19 --recovery apt-get -o Acquire::http::Proxy=http://me:<redacted>@proxy:3128/ install openwatch"},
			say:       []string{"run again: apt-get -o Acquire::http::Proxy=http://me:<redacted>@proxy:3128/ install openwatch"}, never: []string{"pr0xyS3cret"}},
		{name: "a DSN and PG variables in root's shell do not reach the incoming binary", lines: upgrade, code: 0, ran: ran,
			env: []string{"OPENWATCH_DATABASE_DSN=postgres://other/db", "PGHOST=elsewhere"}, say: []string{"is ready for"}},
		{name: "the operator skips it for one run", lines: upgrade, preflight: 19, env: []string{"OPENWATCH_SKIP_GATE=1"}, code: 0,
			say: []string{"skipped (OPENWATCH_SKIP_GATE=1)"}},
	}
	for _, sh := range shells {
		for _, c := range cases {
			t.Run(shellName(sh)+"/"+c.name, func(t *testing.T) {
				sb := newSandbox(t)
				deb := incomingDeb(t, sb)
				if c.debName != "" {
					deb = incomingDebAt(t, sb, filepath.Join(sb.root, c.debName))
				}
				if c.garbage {
					writeFile(t, deb, "not a package\n", 0o644)
				}
				writeFile(t, filepath.Join(sb.root, "incoming.rc"), strconv.Itoa(c.preflight), 0o644)
				writeFile(t, filepath.Join(sb.root, "incoming.out"), c.out, 0o644)
				tmp := filepath.Join(sb.root, "tmp")
				if err := os.MkdirAll(tmp, 0o755); err != nil {
					t.Fatal(err)
				}
				script := filepath.Join(sb.root, "scripts", "gate")
				writeFile(t, script, string(sb.file("openwatch-gate.sh")), 0o755)
				cmd := exec.Command(sh[0], append(append([]string{}, sh[1:]...), script, "--apt")...)
				cmd.Dir = sb.root
				cmd.Env = append([]string{"PATH=" + filepath.Join(sb.root, "bin") + ":/usr/bin:/bin", "LC_ALL=C", "TMPDIR=" + tmp}, c.env...)
				config := c.config
				if config == "" {
					config = "CommandLine::AsString=apt-get%20-y%20install%20openwatch\nDir=/\n"
				}
				cmd.Stdin = strings.NewReader(aptInputWith(config, c.lines(deb)...))
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
				got := sb.log()
				// The refusal reaches the journal through the installed binary
				// (the real one, see harness_test.go): what it recorded.
				if j := sb.journal(); j["GATE_MESSAGE"] != "" {
					got = append(got, "openwatch migrate --record gate-refused --message "+j["GATE_MESSAGE"]+" --recovery "+j["GATE_RECOVERY"])
				}
				if strings.Join(got, "\n") != strings.Join(c.installed, "\n") {
					t.Errorf("the installed binary and the other stubs ran %q, want %q", got, c.installed)
				}
				for _, s := range c.say {
					if s = strings.ReplaceAll(s, "%BIN%", sb.spec.Paths.Binary); !strings.Contains(string(out), s) {
						t.Errorf("output lacks %q:\n%s", s, out)
					}
				}
				for _, s := range c.never {
					if strings.Contains(string(out), s) {
						t.Errorf("output shows %q:\n%s", s, out)
					}
				}
				if len(c.say) == 0 && len(out) != 0 {
					t.Errorf("want no output, got:\n%s", out)
				}
				if left, _ := filepath.Glob("/run/openwatch-gate.*"); c.garbage && len(left) != 0 {
					t.Errorf("the gate left %v behind", left)
				}
				// The binary ran from a private directory the gate removed.
				if dir, err := os.ReadFile(filepath.Join(sb.root, "incoming.dir")); err == nil {
					d := strings.TrimSpace(string(dir))
					if !strings.Contains(d, "/openwatch-gate.") {
						t.Errorf("the incoming binary ran from %s, not from the gate's own directory", d)
					}
					if _, err := os.Stat(d); err == nil {
						t.Errorf("the gate left %s behind", d)
					}
				}
			})
		}
	}
}
