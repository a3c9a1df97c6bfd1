package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteNeverFollowsALinkAndReadBackIsValidated(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	path := filepath.Join(dir, "upgrade.state")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Read through a link: %v, want a refusal naming the link", err)
	}
	if err := Write(path, map[string]string{Outcome: "succeeded", Message: "ok"}, ""); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
		t.Fatalf("journal: %v %v, want a regular file, 0640", fi, err)
	}
	got, err := Read(path)
	if err != nil || got[Outcome] != "succeeded" || got[Message] != "ok" {
		t.Errorf("read back %v, %v", got, err)
	}

	// Lines nobody may write are dropped on read.
	os.WriteFile(path, []byte("OUTCOME=x;rm -rf /\nRECOVERY=\"dpkg --configure -a\"\nSTOPPED_AT=12ab\nEVIL=1\nRESTORE_POINT=/var/backups/../../etc/passwd\nBOOT_ID=0123456789abcdef0123456789abcdef\n"), 0o600)
	got, _ = Read(path)
	if len(got) != 2 || got[Recovery] != "dpkg --configure -a" || got[BootID] == "" {
		t.Errorf("read %v, want only RECOVERY and BOOT_ID", got)
	}
	if err := Write(path, map[string]string{Message: "two\nlines"}, ""); err == nil {
		t.Error("a two-line message was written")
	}
}

func TestImportLegacyTakesOnlyRootsRegularFile(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "upgrade.state")
	os.WriteFile(old, []byte("OUTCOME=migration-failed\nPHASE=migrate\nRECOVERY='dpkg --configure -a'\nRESTORE_POINT=\"/etc/shadow\"\n"), 0o600)
	got, err := ImportLegacy(old)
	if os.Geteuid() == 0 {
		if err != nil || got[Outcome] != "migration-failed" || got[RestorePoint] != "" {
			t.Errorf("root's legacy journal: %v, %v (want its outcome, never its restore point)", got, err)
		}
		os.Chown(old, 12345, 12345)
		if got, err := ImportLegacy(old); got != nil || err == nil {
			t.Errorf("a legacy journal owned by another user was imported: %v, %v", got, err)
		}
	}
	os.Remove(old)
	os.Symlink(filepath.Join(dir, "elsewhere"), old)
	if got, _ := ImportLegacy(old); got != nil {
		t.Errorf("a link was imported: %v", got)
	}
}

func TestGuardInvocationTakesOnlyAnInvocationID(t *testing.T) {
	for rec, want := range map[string]string{
		"INVOCATION_ID=0123456789abcdef0123456789abcdef\nEXIT=10\n": "0123456789abcdef0123456789abcdef",
		"INVOCATION_ID=$(reboot)\n":                                 "",
		"INVOCATION_ID=\n":                                          "",
		"":                                                          "",
	} {
		if got := GuardInvocation([]byte(rec)); got != want {
			t.Errorf("GuardInvocation(%q) = %q, want %q", rec, got, want)
		}
	}
	dir := t.TempDir()
	os.Symlink("/etc/machine-id", filepath.Join(dir, "start-refused"))
	if got := ReadGuardRecord(filepath.Join(dir, "start-refused")); got != "" {
		t.Errorf("a record read through a link: %q", got)
	}
}

func TestDecide(t *testing.T) {
	const unit, inv, boot = "openwatch.service", "0123456789abcdef0123456789abcdef", "b0b0b0b0-0000-4000-8000-000000000000"
	failed := map[string]string{Outcome: "migration-failed", ServiceBefore: "running", StoppedAt: "111", UnitFileState: "enabled", BootID: boot}
	with := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{}
		for a, b := range m {
			c[a] = b
		}
		c[k] = v
		return c
	}
	stopped := Observed{Systemd: true, InactiveSince: "111", UnitFileState: "enabled", BootID: boot}
	o := func(f func(*Observed)) Observed { c := stopped; f(&c); return c }
	for _, tc := range []struct {
		name        string
		prev        map[string]string
		obs         Observed
		guard       string
		running     bool
		resuming    bool
		noteContain string
	}{
		{"a service running now runs again", nil, o(func(o *Observed) { o.Active = true }), "", true, false, ""},
		{"a new upgrade of a stopped service leaves it stopped", nil, stopped, "", false, false, ""},
		{"after a succeeded upgrade nothing is resumed", map[string]string{Outcome: "succeeded"}, stopped, "", false, false, ""},
		{"our stop is still the last: started again", failed, stopped, "", true, true, ""},
		{"masked since", failed, o(func(o *Observed) { o.UnitFileState = "masked-runtime" }), "", false, true, "masked"},
		{"disabled since", failed, o(func(o *Observed) { o.UnitFileState = "disabled" }), "", false, true, "disabled"},
		{"started and stopped since", failed, o(func(o *Observed) { o.InactiveSince = "222" }), "", false, true, "started or stopped"},
		{"the guard refused the last start", failed, o(func(o *Observed) { o.InactiveSince = "222"; o.InvocationID = inv }), inv, true, true, "start guard's refusal"},
		{"the guard's record names an older invocation", failed, o(func(o *Observed) { o.InactiveSince = "222"; o.InvocationID = "fedcba9876543210fedcba9876543210" }), inv, false, true, "started or stopped"},
		{"another boot since", failed, o(func(o *Observed) { o.BootID = "c1c1c1c1-0000-4000-8000-000000000000" }), "", false, true, "restarted"},
		{"the earlier attempt never stopped it", with(failed, StoppedAt, ""), stopped, "", false, true, "stopped after the earlier attempt"},
		{"our stop's time unknown: started again", with(failed, StoppedAt, "unknown"), o(func(o *Observed) { o.InactiveSince = "999" }), "", true, true, ""},
		{"it was stopped before the earlier attempt", with(failed, ServiceBefore, "stopped"), stopped, "", false, true, ""},
		{"no systemd: nothing to start", failed, o(func(o *Observed) { o.Systemd = false }), "", false, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := tc.prev
			if prev == nil {
				prev = map[string]string{}
			}
			got := Decide(prev, tc.obs, unit, tc.guard)
			if got.Running != tc.running || got.Resuming != tc.resuming || !strings.Contains(got.Note, tc.noteContain) {
				t.Errorf("Decide = %+v, want running %v, resuming %v, a note with %q", got, tc.running, tc.resuming, tc.noteContain)
			}
		})
	}
}
