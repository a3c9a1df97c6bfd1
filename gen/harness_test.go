package gen

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// shells are the POSIX shells every rendered script must behave the same under.
var shells = [][]string{{"dash"}, {"busybox", "sh"}, {"posh"}, {"bash", "--posix"}}

// stubbed are the commands the scripts may call that the tests replace.
var stubbed = []string{
	"openwatch", "systemctl", "deb-systemd-helper", "deb-systemd-invoke",
	"getent", "groupadd", "useradd", "addgroup", "adduser", "dpkg-query", "systemd-run", "logger",
}

// unlogged are read-only queries the helper makes that the expectations
// leave out; what they answer shows in the behaviour.
var unlogged = []string{"dpkg-query ", "systemctl show ", "logger "}

// stubScript records its argv in $root/log and answers with the exit code
// in $root/rc/<name>_<args joined by _>, default 0; it prints
// $root/out/<same key> if present.
const stubScript = `#!/bin/sh
root=%s
name=${0##*/}
line=$name
key=$name
for a in "$@"; do
	line="$line $a"
	key="${key}_$a"
done
# The journal's writer is the real binary (built by TestMain): its
# decisions are part of what the scripts do.
if [ "$name" = openwatch ] && [ "${1:-}" = migrate ] && [ "${2:-}" = --record ]; then
	exec "$(cat "$root/real-openwatch")" --journal "$(cat "$root/journal-path")" --state-dir "$(cat "$root/state-dir")" "$@"
fi
printf '%%s\n' "$line" >>"$root/log"
key=$(printf '%%s' "$key" | tr '/ ' '__')
[ -f "$root/out/$key" ] && cat "$root/out/$key"
rc=0
if [ -f "$root/rc/$key" ]; then rc=$(cat "$root/rc/$key"); fi
# systemctl remembers what a successful stop or start did to is-active.
if [ "$name" = systemctl ] && [ "$rc" = 0 ] && [ $# -eq 2 ]; then
	case $1 in
	stop) echo 3 >"$root/rc/systemctl_--quiet_is-active_$2" ;;
	start) echo 0 >"$root/rc/systemctl_--quiet_is-active_$2" ;;
	esac
fi
exit "$rc"
`

// sandbox is a temp "root" with stubs on PATH and a spec whose paths point
// into it. The scripts themselves are unchanged: only the spec, PATH and
// the stubs' answers differ from production.
type sandbox struct {
	t     *testing.T
	root  string
	spec  *Spec
	files map[string][]byte
}

func newSandbox(t *testing.T, mutate ...func(s *Spec, root string)) *sandbox {
	t.Helper()
	// Not t.TempDir: the test name would put ',' and '(' into paths that
	// unit files must hold unquoted.
	root, err := os.MkdirTemp("", "owgen")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	for _, d := range []string{"bin", "rc", "out", "var/lib/openwatch", "var/lib/openwatch-upgrade", "var/backups/openwatch", "etc/openwatch", "usr/lib/openwatch"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range stubbed {
		writeFile(t, filepath.Join(root, "bin", name), stubScriptFor(root), 0o755)
	}
	s := Default()
	s.Paths.Binary = filepath.Join(root, "bin", "openwatch")
	s.Paths.LibDir = filepath.Join(root, "usr/lib/openwatch")
	s.Paths.ConfigDir = filepath.Join(root, "etc/openwatch")
	s.Paths.ConfigFile = filepath.Join(root, "etc/openwatch/upgrade.conf")
	s.Paths.SecretsFile = filepath.Join(root, "etc/openwatch/secrets.env")
	s.Paths.StateDir = filepath.Join(root, "var/lib/openwatch")
	s.Paths.UpgradeDir = filepath.Join(root, "var/lib/openwatch-upgrade")
	s.Paths.Journal = filepath.Join(root, "var/lib/openwatch-upgrade/upgrade.state")
	s.Paths.BackupDir = filepath.Join(root, "var/backups/openwatch")
	s.Paths.SystemdRunDir = filepath.Join(root, "run/systemd/system")
	s.Paths.Motd = filepath.Join(root, "run/motd.d/openwatch")
	for _, m := range mutate {
		m(s, root)
	}
	files, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "journal-path"), s.Paths.Journal, 0o644)
	writeFile(t, filepath.Join(root, "state-dir"), s.Paths.StateDir, 0o644)
	writeFile(t, filepath.Join(root, "real-openwatch"), realBinary, 0o644)
	sb := &sandbox{t: t, root: root, spec: s, files: files}
	// Install the helpers where the spec says they are.
	writeFile(t, s.UpgradeHelper(), string(sb.file("openwatch-upgrade.sh")), 0o755)
	return sb
}

func stubScriptFor(root string) string {
	s := strings.Replace(stubScript, "%s", shQuote(root), 1)
	return strings.ReplaceAll(s, "%%", "%")
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// file returns the rendered file at dist/<name>.
func (sb *sandbox) file(name string) []byte {
	b, ok := sb.files[filepath.ToSlash(filepath.Join(sb.spec.DistDir, name))]
	if !ok {
		sb.t.Fatalf("nothing rendered as %s", name)
	}
	return b
}

// systemd makes the sandbox look as if systemd were the running init.
func (sb *sandbox) systemd() {
	if err := os.MkdirAll(sb.spec.Paths.SystemdRunDir, 0o755); err != nil {
		sb.t.Fatal(err)
	}
}

// answer makes the stub command (name and args, space-separated) exit rc.
func (sb *sandbox) answer(cmd string, rc int) {
	key := strings.NewReplacer("/", "_", " ", "_").Replace(cmd)
	writeFile(sb.t, filepath.Join(sb.root, "rc", key), strconv.Itoa(rc), 0o644)
}

// log returns the recorded commands and clears the log.
func (sb *sandbox) log() []string {
	name := filepath.Join(sb.root, "log")
	b, err := os.ReadFile(name)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		sb.t.Fatal(err)
	}
	os.Remove(name)
	var lines []string
	// The root is a temp dir; show it as ROOT so expectations read well.
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if !slices.ContainsFunc(unlogged, func(p string) bool { return strings.HasPrefix(l, p) }) {
			lines = append(lines, strings.ReplaceAll(l, sb.root, "ROOT"))
		}
	}
	return lines
}

// output makes the stub command (name and args, space-separated) print text.
func (sb *sandbox) output(cmd, text string) {
	key := strings.NewReplacer("/", "_", " ", "_").Replace(cmd)
	writeFile(sb.t, filepath.Join(sb.root, "out", key), text+"\n", 0o644)
}

// journal returns the upgrade journal's settings (nil when there is none).
func (sb *sandbox) journal() map[string]string {
	b, err := os.ReadFile(sb.spec.Paths.Journal)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			m[k] = strings.Trim(v, `"'`)
		}
	}
	return m
}

func (sb *sandbox) mode(p string) os.FileMode {
	fi, err := os.Stat(p)
	if err != nil {
		sb.t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// run runs the rendered script dist/<name> under shell with args and env
// (KEY=value), and returns its exit code and combined output.
func (sb *sandbox) run(shell []string, name string, env []string, args ...string) (int, string) {
	sb.t.Helper()
	script := filepath.Join(sb.root, "scripts", strings.ReplaceAll(name, "/", "_"))
	writeFile(sb.t, script, string(sb.file(name)), 0o755)
	return sb.exec(shell, script, env, args...)
}

func (sb *sandbox) exec(shell []string, script string, env []string, args ...string) (int, string) {
	sb.t.Helper()
	argv := append(append(append([]string{}, shell[1:]...), script), args...)
	cmd := exec.Command(shell[0], argv...)
	cmd.Dir = sb.root
	cmd.Env = append([]string{
		// No sbin: a missing stub must not fall through to the real groupadd.
		"PATH=" + filepath.Join(sb.root, "bin") + ":/usr/bin:/bin",
		"LC_ALL=C",
		"HOME=" + sb.root,
	}, env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return 0, string(out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	sb.t.Fatalf("run %v: %v", argv, err)
	return -1, ""
}

func (sb *sandbox) exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func shellName(sh []string) string { return strings.Join(sh, "-") }
