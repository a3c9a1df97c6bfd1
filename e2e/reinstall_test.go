package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Where the real deb-systemd-helper keeps its state, inside the root.
const (
	dshEnabled = "/var/lib/systemd/deb-systemd-helper-enabled"
	dshMasked  = "/var/lib/systemd/deb-systemd-helper-masked"
)

// `dpkg -r` keeps the cleanup timer's enablement for a reinstall, as
// dh_installsystemd (debhelper 13.10 and later) does, and installing the
// package again must leave the timer enabled, unmasked and running: a timer
// left masked never prunes, and restore points pile up until an upgrade
// fails for lack of space. The root has the host's real deb-systemd-helper,
// so the assertions read the files it and systemd go by. A timer that an
// older release masked on remove is unmasked by the next install.
func TestReinstallAfterRemoveKeepsTheCleanupTimerEnabled(t *testing.T) {
	e := newEnv(t, formats[0], "dash")
	nw := e.vs["new"]
	e.installAndInitialise(nw)
	e.timerEnabledAndUnmasked("after the first install")

	if res := e.pm(e.f.remove...); res.code != 0 {
		t.Fatalf("dpkg -r: exit %d\n%s", res.code, res.out)
	}
	if e.r.active(cleanupTimer) {
		t.Errorf("%s is still active after dpkg -r", cleanupTimer)
	}
	if masked, how := e.timerMasked(); masked {
		t.Errorf("dpkg -r masked %s (%s)", cleanupTimer, how)
	}

	if res := e.pm(e.f.install(e.f.pkg(nw))...); res.code != 0 {
		t.Fatalf("dpkg -i after dpkg -r: exit %d\n%s", res.code, res.out)
	}
	e.timerEnabledAndUnmasked("after dpkg -r and dpkg -i")
	if !e.r.active(cleanupTimer) {
		t.Errorf("%s is not running after dpkg -r and dpkg -i", cleanupTimer)
	}

	// Releases before this one masked the timer on remove, as debhelper
	// before 13.10 did: installing this one over that must unmask it.
	if res := e.pm(e.f.remove...); res.code != 0 {
		t.Fatalf("second dpkg -r: exit %d\n%s", res.code, res.out)
	}
	// What such a postrm ran: deb-systemd-helper insists on being run by dpkg.
	olderPostrm := []string{"DPKG_MAINTSCRIPT_PACKAGE=openwatch", "DPKG_MAINTSCRIPT_NAME=postrm"}
	if res := e.r.runEnv(30*time.Second, olderPostrm, "deb-systemd-helper", "mask", cleanupTimer); res.code != 0 {
		t.Fatalf("deb-systemd-helper mask: %s", res.out)
	}
	if masked, _ := e.timerMasked(); !masked {
		t.Fatalf("deb-systemd-helper mask did not mask %s: this case proves nothing", cleanupTimer)
	}
	if res := e.pm(e.f.install(e.f.pkg(nw))...); res.code != 0 {
		t.Fatalf("dpkg -i after an older release's remove: exit %d\n%s", res.code, res.out)
	}
	e.timerEnabledAndUnmasked("after an older release's remove (which masked the timer) and dpkg -i")
	if !e.r.active(cleanupTimer) {
		t.Errorf("%s is not running after an older release's remove and dpkg -i", cleanupTimer)
	}
}

// timerMasked reports whether the cleanup timer is masked the way
// deb-systemd-helper masks (a /dev/null symlink in /etc/systemd/system, and
// its own record of having done so), and which of the two says so.
func (e *env) timerMasked() (bool, string) {
	var how []string
	if l, err := os.Readlink(e.r.path("/etc/systemd/system/" + cleanupTimer)); err == nil && l == "/dev/null" {
		how = append(how, "/etc/systemd/system/"+cleanupTimer+" -> /dev/null")
	}
	if e.r.exists(dshMasked + "/" + cleanupTimer) {
		how = append(how, dshMasked+"/"+cleanupTimer+" exists")
	}
	return len(how) > 0, strings.Join(how, ", ")
}

func (e *env) timerEnabledAndUnmasked(when string) {
	e.t.Helper()
	if masked, how := e.timerMasked(); masked {
		e.t.Errorf("%s: %s is masked (%s)", when, cleanupTimer, how)
	}
	if want := "/etc/systemd/system/timers.target.wants/" + cleanupTimer; !e.r.exists(want) {
		e.t.Errorf("%s: %s is missing: %s is not enabled", when, want, cleanupTimer)
	}
	if state := dshEnabled + "/" + cleanupTimer + ".dsh-also"; !e.r.exists(state) {
		e.t.Errorf("%s: deb-systemd-helper has no state for %s (%s is missing)", when, cleanupTimer, state)
	}
}
