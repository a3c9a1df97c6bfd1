package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// root is a disposable copy of this machine: a private mount namespace
// holding an overlay of / whose writes land in a tmpfs, with /proc and /dev
// bound in and fresh /run and /tmp. A holder process chrooted into it keeps
// the namespace alive; commands enter it with nsenter, and the test reads and
// writes its files through /proc/<holder>/root. Nothing reaches the host, and
// everything vanishes when the holder dies.
type root struct {
	t      *testing.T
	holder *exec.Cmd
	mnt    string        // host directory the namespace mounts its tmpfs on
	shell  string        // what /bin/sh is inside: "dash" or "busybox"
	exited chan struct{} // closed when the holder is gone (its pid may be reused)
}

// setupScript builds the namespace; $1 is the mount point, $2 the directory
// holding the packages (bound read-only at /e2e-pkgs).
const setupScript = `set -eu
T=$1
mount -t tmpfs -o mode=0755 e2e-root "$T"
mkdir "$T/up" "$T/work" "$T/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$T/up",workdir="$T/work" "$T/root"
mount --bind /proc "$T/root/proc"
mount --rbind /dev "$T/root/dev"
mount -t tmpfs -o mode=0755 run "$T/root/run"
mount -t tmpfs -o mode=1777 tmp "$T/root/tmp"
mkdir -p "$T/root/run/systemd/system" "$T/root/e2e-pkgs"
mount --bind -o ro "$2" "$T/root/e2e-pkgs"
# "ready" comes from inside the chroot: until then /proc/<holder>/root is the
# host's own root, and a write through it would land on the host.
exec chroot "$T/root" /bin/sh -c 'echo ready && exec sleep infinity'
`

// newRoot starts a disposable root with /bin/sh pointing at shell ("dash" or
// "busybox"), the recording systemctl, the pg_* shims, and the appliance's
// unit enabled and running.
func newRoot(t *testing.T, shell string) *root {
	t.Helper()
	mnt, err := os.MkdirTemp("", "openwatch-e2e-root-")
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", setupScript, "sh", mnt, pkgDir)
	holder.Stderr = &bytes.Buffer{}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	r := &root{t: t, holder: holder, mnt: mnt, shell: shell, exited: make(chan struct{})}
	go func() {
		holder.Wait()
		close(r.exited)
	}()
	t.Cleanup(r.close)
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("disposable root did not come up: %v\n%s", err, holder.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("disposable root did not come up in 30s\n%s", holder.Stderr)
	}
	r.mustBeDisposable()
	r.prepare()
	return r
}

// mustBeDisposable refuses to go on unless the holder's root is the overlay,
// not the host's /: every write the tests make goes through it.
func (r *root) mustBeDisposable() {
	r.t.Helper()
	host, err1 := os.Stat("/")
	inside, err2 := os.Stat(r.path("/"))
	_, err3 := os.Stat(r.path("/e2e-pkgs"))
	if err1 != nil || err2 != nil || err3 != nil || os.SameFile(host, inside) {
		r.holder.Process.Kill()
		r.t.Fatalf("the holder's root is not the disposable overlay (%v %v %v); refusing to touch it", err1, err2, err3)
	}
	var hs, is syscall.Stat_t
	if syscall.Stat("/", &hs) != nil || syscall.Stat(r.path("/"), &is) != nil || hs.Dev == is.Dev {
		r.holder.Process.Kill()
		r.t.Fatalf("the holder's root is on the host's filesystem; refusing to touch it")
	}
}

func (r *root) close() {
	r.holder.Process.Kill()
	<-r.exited
	// The mounts die with the namespace; only the empty mount point is left.
	os.Remove(r.mnt)
}

// path is where a file inside the root is seen from the host.
func (r *root) path(p string) string {
	select {
	case <-r.exited:
		// The pid could now be any host process: never resolve through it.
		panic("e2e: the disposable root's holder has exited")
	default:
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", r.holder.Process.Pid), p)
}

func (r *root) writeFile(p string, data string, mode os.FileMode) {
	r.t.Helper()
	writeInside(r.t, r.path, p, data, mode)
}

// writeInside writes data to p inside a sandbox (the disposable root or the
// machine) whose path maps p to where the host sees it, creating p's
// directory, with exactly mode (not masked by the umask).
func writeInside(t *testing.T, path func(string) string, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path(p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path(p), []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path(p), mode); err != nil {
		t.Fatal(err)
	}
}

// readFile returns a file's content inside the root, "" when it is absent.
func (r *root) readFile(p string) string {
	b, err := os.ReadFile(r.path(p))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	return string(b)
}

func (r *root) exists(p string) bool {
	_, err := os.Lstat(r.path(p))
	return err == nil
}

// glob matches a pattern inside the root and returns paths as seen inside.
func (r *root) glob(pattern string) []string {
	r.t.Helper()
	return globInside(r.t, r.path, pattern)
}

// globInside matches a pattern inside a sandbox whose path maps a path
// inside it to where the host sees it, and returns paths as seen inside.
func globInside(t *testing.T, path func(string) string, pattern string) []string {
	t.Helper()
	got, err := filepath.Glob(path(pattern))
	if err != nil {
		t.Fatal(err)
	}
	prefix := path("/")
	var out []string
	for _, p := range got {
		out = append(out, "/"+strings.TrimLeft(strings.TrimPrefix(p, prefix), "/"))
	}
	return out
}

// hostLeftovers are openwatch's paths. A root starts as a copy of the host,
// so anything of openwatch's there (a payload unpacked by hand, another
// tool's experiment) would make a "fresh" install meet files it does not
// expect; the root hides them (the overlay records the deletion, the host
// keeps its files).
var hostLeftovers = []string{
	binaryPath, filepath.Dir(helperPath), filepath.Dir(upgradeConfPath), filepath.Dir(journalPath), "/var/lib/openwatch", backupDir,
	"/usr/share/doc/openwatch", "/usr/share/lintian/overrides/openwatch",
	"/usr/lib/systemd/system/" + cleanupService, "/usr/lib/systemd/system/" + cleanupTimer, dropInDir,
	"/etc/systemd/system/" + applianceUnit, "/etc/systemd/system/timers.target.wants/" + cleanupTimer,
}

// prepare installs the stand-ins and the appliance unit.
func (r *root) prepare() {
	r.t.Helper()
	var found []string
	for _, p := range hostLeftovers {
		if r.exists(p) {
			found = append(found, p)
			if err := os.RemoveAll(r.path(p)); err != nil {
				r.t.Fatalf("hiding the host's %s in the root: %v", p, err)
			}
		}
	}
	if len(found) > 0 {
		r.t.Logf("the host has openwatch files outside any package (hidden in this root): %v", found)
	}
	if r.shell == "busybox" {
		// RPM runs scriptlets with /bin/sh, dpkg runs #!/bin/sh scripts: both
		// now get busybox's ash.
		os.Remove(r.path("/usr/bin/sh"))
		if err := os.Symlink("busybox", r.path("/usr/bin/sh")); err != nil {
			r.t.Fatal(err)
		}
	}
	for _, p := range []string{"/usr/bin/systemctl", "/usr/local/sbin/systemctl"} {
		os.Remove(r.path(p))
		r.writeFile(p, systemctlStub, 0o755)
	}
	// systemd-run must never reach a systemd outside the root: the stand-in
	// records the call and runs the command at once, in the foreground.
	os.Remove(r.path("/usr/bin/systemd-run"))
	r.writeFile("/usr/bin/systemd-run", systemdRunStub, 0o755)
	for _, tool := range []string{"pg_dump", "pg_restore", "psql"} {
		p := "/usr/bin/" + tool
		os.Remove(r.path(p))
		r.writeFile(p, pgShim(tool, filepath.Join(pgBinDir, tool)), 0o755)
	}
	r.writeFile("/etc/systemd/system/"+applianceUnit, applianceUnitFile, 0o644)
	// Machine-wide things a fresh container would not have from this host.
	r.writeFile("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 0\n", 0o755)
	if res := r.run(time.Minute, "sh", "-c", "rpm --initdb && systemctl enable "+applianceUnit+" && systemctl start "+applianceUnit); res.err != nil {
		r.t.Fatalf("preparing the root: %v\n%s", res.err, res.out)
	}
	if got := r.run(10*time.Second, "readlink", "-f", "/bin/sh").out; !strings.Contains(got, r.shell) {
		r.t.Fatalf("/bin/sh is %q inside the root, want %s", got, r.shell)
	}
	r.resetEvents()
}

// resetEvents forgets the recorded calls, keeping the unit state.
func (r *root) resetEvents() {
	r.writeFile(eventsLog, "", 0o666)
}

func (r *root) events() string { return r.readFile(eventsLog) }

// result is what a command inside the root did.
type result struct {
	cmd  string
	out  string // stdout and stderr, interleaved
	code int    // exit code; -1 when it did not run to completion
	err  error
	argv []string // argv of every process seen while it ran (see run)
}

// baseEnv is the environment of every command in the root: what an operator's
// root shell would have, and nothing from the test process.
var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "LANG=C.UTF-8", "TERM=dumb", "DEBIAN_FRONTEND=noninteractive",
}

// run runs argv inside the root with a bounded time, in its own process
// group so a timeout kills the whole tree.
func (r *root) run(timeout time.Duration, argv ...string) result {
	return r.runEnv(timeout, nil, argv...)
}

func (r *root) runEnv(timeout time.Duration, env []string, argv ...string) result {
	r.path("/") // refuses when the holder is gone
	return nsenter(timeout, []string{"-t", fmt.Sprint(r.holder.Process.Pid), "-m", "-r", "-w"}, append(append([]string{}, env...), argv...), strings.Join(argv, " "))
}

// nsenter runs `nsenter NS… -- env -i baseEnv… cmdline…` with a bounded
// time, in its own process group so a timeout kills the whole tree; name is
// how the result names the command.
func nsenter(timeout time.Duration, ns, cmdline []string, name string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append(append(append(append([]string{}, ns...), "--", "env", "-i"), baseEnv...), cmdline...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	var buf lockedBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	res := result{cmd: name, out: buf.String(), code: -1, err: err}
	if cmd.ProcessState != nil {
		res.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		res.err = fmt.Errorf("%s: timed out after %v", res.cmd, timeout)
		res.code = -1
	}
	return res
}

// runWatched is run while another goroutine reads every process's argv from
// /proc many times a second, so a password passed on any command line during
// the run is caught even when the process lives briefly.
func (r *root) runWatched(timeout time.Duration, argv ...string) result {
	return watchArgv(func() result { return r.run(timeout, argv...) })
}

// watchArgv calls run while every process's argv is collected into the
// result.
func watchArgv(run func() result) result {
	stop := make(chan struct{})
	seen := make(chan []string)
	go func() {
		set := map[string]bool{}
		for {
			scanArgv(set)
			select {
			case <-stop:
				scanArgv(set)
				var out []string
				for a := range set {
					out = append(out, a)
				}
				seen <- out
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	res := run()
	close(stop)
	res.argv = <-seen
	return res
}

func scanArgv(set map[string]bool) {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		set[strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")] = true
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// active reports the recorded state of a unit.
func (r *root) active(unit string) bool { return r.exists(systemctlState + "/" + unit + ".active") }

// enabled reports whether a unit has an enablement link, as systemd decides.
func (r *root) enabled(unit string) bool {
	return len(r.glob("/etc/systemd/system/*.wants/"+unit)) > 0
}

// mode is a file's permission bits inside the root, 0 when it is absent.
func (r *root) mode(p string) os.FileMode {
	fi, err := os.Lstat(r.path(p))
	if err != nil {
		return 0
	}
	return fi.Mode().Perm()
}
