package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// machine is a disposable copy of this machine booted with systemd as PID 1:
// the same overlay of / on a tmpfs as root (root_test.go), in a private mount
// namespace, run by systemd-nspawn. Units, the start guard, journald,
// Debian's own postgresql@ unit and `apt-get install ./x.deb` all run for
// real. Commands enter it with nsenter; the test reads its files through
// /proc/<its systemd>/root.
//
// Teardown does not rely on nspawn: killing systemd-nspawn leaves the
// container's systemd running (checked here). The holder shell kills the
// container's init itself, on its stdin's EOF, which comes both from the
// test's cleanup and from the test process dying.
type machine struct {
	t       *testing.T
	holder  *exec.Cmd
	stdin   io.WriteCloser
	console *lockedBuffer // the holder's and nspawn's output (boot messages, errors)
	mnt     string
	init    int           // the container's systemd, as the host sees it
	exited  chan struct{} // closed when the holder is gone
}

// machineScript builds the namespace and boots it. $1 is the mount point, $2
// the package directory (bound read-only at /e2e-pkgs), the rest are paths to
// hide in the copy (see hostLeftovers).
const machineScript = `set -eu
T=$1 pkgs=$2
shift 2
mount -t tmpfs -o mode=0755 e2e-machine "$T"
mkdir "$T/up" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/up,workdir=$T/work" "$T/root"
mountpoint -q "$T/root"
# A container policy that refuses every start; systemd must decide here.
rm -f "$T/root/usr/sbin/policy-rc.d"
for p in "$@"; do rm -rf "$T/root$p"; done
mkdir -p "$T/root/e2e-pkgs"
# A cgroup of its own in systemd's hierarchies: with --keep-unit nspawn roots
# the machine's cgroups where it runs, and two machines sharing a root would
# share /system.slice/openwatch.service, killing and removing each other's.
own=openwatch-e2e-machine-$$
if [ -f /sys/fs/cgroup/cgroup.procs ]; then
	hier="/sys/fs/cgroup:$(sed -n 's/^0:://p' /proc/self/cgroup)"
else
	hier="/sys/fs/cgroup/systemd:$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)"
	[ -f /sys/fs/cgroup/unified/cgroup.procs ] && hier="$hier /sys/fs/cgroup/unified:$(sed -n 's/^0:://p' /proc/self/cgroup)"
fi
made=
for h in $hier; do
	cg=${h%%:*}${h#*:}
	cg=${cg%/}/$own
	mkdir "$cg"
	made="$made $cg"
	echo $$ >"$cg/cgroup.procs"
done
systemd-nspawn -q -D "$T/root" --register=no --keep-unit -b --pipe --private-network \
	--bind-ro="$pkgs:/e2e-pkgs" </dev/null &
nspawn=$!
echo "nspawn $nspawn"
# The test holds stdin open: EOF (its cleanup, or its death) ends the machine.
read -r _ || true
# Killing the container's systemd ends its pid namespace; nspawn then exits
# once it has reaped it, and nothing of the machine is left.
# shellcheck disable=SC2013 # the file is one line of pids
for c in $(cat /proc/"$nspawn"/task/*/children 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
wait "$nspawn" || true
# Leave the machine's cgroups and remove them, deepest first, once empty.
for cg in $made; do
	echo $$ >"${cg%/*}/cgroup.procs" || true
	i=0
	while [ -d "$cg" ] && [ "$i" -lt 100 ]; do
		find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
		i=$((i + 1))
		[ -d "$cg" ] && sleep 0.1
	done
done
# The empty mount point is the only trace on the host, also when the test died.
if umount -l "$T" 2>/dev/null; then rmdir "$T" 2>/dev/null || true; fi
`

// bootMachine boots a machine and waits until systemd reports it is up, with
// the package manager's timers masked and policy-rc.d gone.
func bootMachine(t *testing.T) *machine {
	t.Helper()
	mnt, err := os.MkdirTemp("", "openwatch-e2e-machine-")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", machineScript, "sh", mnt, pkgDir}, hostLeftovers...)
	holder := exec.Command("unshare", args...)
	m := &machine{t: t, holder: holder, mnt: mnt, console: &lockedBuffer{}, exited: make(chan struct{})}
	holder.Stderr = m.console
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if m.stdin, err = holder.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		holder.Wait()
		close(m.exited)
	}()
	t.Cleanup(m.shutdown)

	nspawnPid := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if p, ok := strings.CutPrefix(line, "nspawn "); ok && !sent {
				pid, _ := strconv.Atoi(p)
				nspawnPid <- pid
				sent = true
				continue
			}
			m.console.Write([]byte(line + "\n"))
		}
		if !sent {
			close(nspawnPid)
		}
	}()
	var nspawn int
	select {
	case nspawn = <-nspawnPid:
	case <-time.After(30 * time.Second):
	}
	if nspawn <= 0 {
		t.Fatalf("systemd-nspawn did not start:\n%s", m.console)
	}
	// The container's systemd is nspawn's child; it is up once it listens.
	deadline := time.Now().Add(90 * time.Second)
	for m.init == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the machine's systemd did not come up in 90s:\n%s", m.console)
		}
		select {
		case <-m.exited:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", m.console)
		case <-time.After(100 * time.Millisecond):
		}
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
		for _, f := range strings.Fields(string(kids)) {
			pid, _ := strconv.Atoi(f)
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(comm)) != "systemd" {
				continue
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/systemd/private", pid)); err == nil {
				m.init = pid
			}
		}
	}
	m.mustBeDisposable()
	res := m.run(2*time.Minute, "systemctl", "is-system-running", "--wait")
	if state := strings.TrimSpace(res.out); state != "running" {
		failed := m.run(30*time.Second, "systemctl", "list-units", "--failed", "--no-legend", "--no-pager").out
		t.Logf("the machine booted %q; failed units:\n%s", state, failed)
		if state != "degraded" {
			t.Fatalf("the machine did not boot: %q (exit %d)\n%s", state, res.code, m.console)
		}
	}
	// Nothing may take the dpkg lock or the CPU behind the test's back.
	for _, timer := range []string{"apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer"} {
		m.run(time.Minute, "systemctl", "mask", "--now", timer)
	}
	if m.exists("/usr/sbin/policy-rc.d") {
		t.Fatalf("policy-rc.d is still in the machine")
	}
	return m
}

// mustBeDisposable refuses to go on unless the machine's root is the overlay.
func (m *machine) mustBeDisposable() {
	m.t.Helper()
	var hs, is syscall.Stat_t
	if syscall.Stat("/", &hs) != nil || syscall.Stat(m.path("/"), &is) != nil || hs.Dev == is.Dev {
		m.t.Fatalf("the machine's root is on the host's filesystem; refusing to touch it")
	}
	if _, err := os.Stat(m.path("/e2e-pkgs")); err != nil {
		m.t.Fatalf("the machine has no /e2e-pkgs: %v", err)
	}
}

// shutdown ends the machine and its namespace; it runs even when the test
// failed or panicked.
func (m *machine) shutdown() {
	m.stdin.Close()
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		// The holder did not end it: kill the container's systemd (nspawn
		// still waits for it, so the pid is not reused), then the holder.
		if m.init > 0 {
			syscall.Kill(m.init, syscall.SIGKILL)
		}
		m.holder.Process.Kill()
		<-m.exited
		m.t.Errorf("the machine did not shut down on request; killed it")
	}
	if m.init > 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", m.init)); err == nil {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", m.init))
			if strings.TrimSpace(string(comm)) == "systemd" {
				m.t.Errorf("the machine's systemd (pid %d) outlived its machine", m.init)
			}
		}
	}
	os.Remove(m.mnt)
}

// path is where a file inside the machine is seen from the host.
func (m *machine) path(p string) string {
	select {
	case <-m.exited:
		panic("e2e: the machine has shut down")
	default:
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", m.init), p)
}

func (m *machine) exists(p string) bool {
	_, err := os.Lstat(m.path(p))
	return err == nil
}

func (m *machine) writeFile(p, data string, mode os.FileMode) {
	m.t.Helper()
	writeInside(m.t, m.path, p, data, mode)
}

// glob matches a pattern inside the machine, returning paths as seen inside.
func (m *machine) glob(pattern string) []string {
	m.t.Helper()
	return globInside(m.t, m.path, pattern)
}

// run runs argv inside the machine (all its namespaces: it sees the
// machine's systemd, network and processes) with an operator's environment.
func (m *machine) run(timeout time.Duration, argv ...string) result {
	m.path("/") // refuses when the machine is gone
	return nsenter(timeout, []string{"-t", strconv.Itoa(m.init), "-a"}, argv, strings.Join(argv, " "))
}

// runWatched is run while every process's argv is read many times a second
// (the machine's processes are the host's too), as root.runWatched.
func (m *machine) runWatched(timeout time.Duration, argv ...string) result {
	return watchArgv(func() result { return m.run(timeout, argv...) })
}

// unitState is `systemctl is-active`'s answer: active, inactive, failed…
func (m *machine) unitState(unit string) string {
	return strings.TrimSpace(m.run(30*time.Second, "systemctl", "is-active", unit).out)
}

// journalEntry is one record of the machine's journal.
type journalEntry struct {
	Time      int64 // µs since the epoch, the host's clock too
	MessageID string
	Message   string
}

// The catalog's message IDs for a unit's job results (systemd's
// sd-messages.h): these are what "Started"/"Stopped"/"Failed" lines carry.
const (
	msgUnitStarting = "7d4958e842da4a758f6c1cdc7b36dcc5"
	msgUnitStarted  = "39f53479d3a045ac8e11786248231fbf"
	msgUnitStopped  = "9d1aaa27d60140bd96365438aad20286"
)

// journal returns a unit's journal (its own output and systemd's messages
// about it) from since (µs, 0 for all).
func (m *machine) journal(unit string, since int64) []journalEntry {
	m.t.Helper()
	m.run(30*time.Second, "journalctl", "--sync")
	res := m.run(time.Minute, "journalctl", "-o", "json", "--no-pager", "-u", unit)
	if res.code != 0 {
		m.t.Fatalf("journalctl -u %s: exit %d\n%s", unit, res.code, res.out)
	}
	var out []journalEntry
	for _, line := range strings.Split(res.out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			m.t.Fatalf("journal line %q: %v", line, err)
		}
		var e journalEntry
		var ts string
		json.Unmarshal(raw["__REALTIME_TIMESTAMP"], &ts)
		e.Time, _ = strconv.ParseInt(ts, 10, 64)
		json.Unmarshal(raw["MESSAGE_ID"], &e.MessageID)
		if json.Unmarshal(raw["MESSAGE"], &e.Message) != nil {
			var b []byte
			json.Unmarshal(raw["MESSAGE"], &b)
			e.Message = string(b)
		}
		if e.Time >= since {
			out = append(out, e)
		}
	}
	return out
}

// now is the machine's clock (the kernel's, shared with the host) in µs.
func now() int64 { return time.Now().UnixMicro() }
