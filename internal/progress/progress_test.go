package progress

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// clock is a time the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// wantLines fails the test unless out is exactly the lines of want.
func wantLines(t *testing.T, out string, want []string) {
	t.Helper()
	if strings.Join(lines(out), "\n") != strings.Join(want, "\n") {
		t.Fatalf("output:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
}

func TestANonTerminalGetsAStartLineAPlainLineEveryIntervalAndAnEndLine(t *testing.T) {
	var sb strings.Builder
	c := &clock{time.Unix(0, 0)}
	r := start(&sb, Step{Label: "backup"}, false, c.now)
	r.Update(1 << 20) // not due yet
	c.advance(LogInterval)
	r.Update(10 << 20)
	c.advance(5 * time.Second)
	if got := r.Done(20 << 20); got != 10*time.Second {
		t.Errorf("Done returned %s, want 10s", got)
	}
	want := []string{
		"backup: started",
		"backup: 10.0 MiB, 2.0 MiB/s, 5s elapsed",
		"backup: done in 10s, 20.0 MiB, 2.0 MiB/s",
	}
	wantLines(t, sb.String(), want)
	r.Fail(0) // a second end prints nothing
	if strings.Contains(sb.String(), "\r") || len(lines(sb.String())) != 3 {
		t.Fatalf("output %q", sb.String())
	}
}

func TestAKnownTotalDrawsABarWithTheTimeLeft(t *testing.T) {
	var sb strings.Builder
	c := &clock{time.Unix(0, 0)}
	r := start(&sb, Step{Label: "restore", Total: 100 << 20}, true, c.now)
	if sb.Len() != 0 {
		t.Fatalf("a terminal got a start line: %q", sb.String())
	}
	c.advance(20 * time.Second)
	r.Update(25 << 20) // a quarter in 20s: 60s left at that rate
	if want := "\r\033[Krestore: [======                  ]  25%, 25.0 MiB, 1.2 MiB/s, 20s elapsed, about 1m0s left"; sb.String() != want {
		t.Fatalf("got  %q\nwant %q", sb.String(), want)
	}
	sb.Reset()
	c.advance(time.Second)
	r.Fail(30 << 20)
	if want := "\r\033[Krestore: failed after 21s, 30.0 MiB, 1.4 MiB/s\n"; sb.String() != want {
		t.Fatalf("got  %q\nwant %q", sb.String(), want)
	}
}

// The previous restore point's size is a guess: the output marks it, and
// says so instead of a time left once the guess is exceeded.
func TestAnEstimatedTotalIsMarkedAsOne(t *testing.T) {
	var sb strings.Builder
	c := &clock{time.Unix(0, 0)}
	r := start(&sb, Step{Label: "backup", Total: 40 << 20, TotalIsEstimate: true, Basis: "the previous restore point's size"}, false, c.now)
	c.advance(LogInterval)
	r.Update(10 << 20)
	c.advance(LogInterval)
	r.Update(50 << 20)
	want := []string{
		"backup: started, about 40.0 MiB expected (the previous restore point's size)",
		"backup: ~25% of ~40.0 MiB, 10.0 MiB, 2.0 MiB/s, 5s elapsed, about 15s left",
		"backup: ~100% of ~40.0 MiB, 50.0 MiB, 5.0 MiB/s, 10s elapsed, more than estimated",
	}
	wantLines(t, sb.String(), want)
}

// A clone reports no bytes: its bar is the time against the estimate from
// the previous clone's rate, or the elapsed time alone without one.
func TestATimedStepEstimatesFromThePreviousRate(t *testing.T) {
	var sb strings.Builder
	c := &clock{time.Unix(0, 0)}
	expected := Estimate(1<<30, 512<<20, 2*time.Second) // twice the bytes of a clone that took 2s
	if expected != 4*time.Second {
		t.Fatalf("Estimate = %s, want 4s", expected)
	}
	r := start(&sb, Step{Label: "clone", Timed: true, Size: 1 << 30, Expected: expected, Basis: "the previous clone: 512.0 MiB in 2s"}, false, c.now)
	r.interval = time.Second
	c.advance(time.Second)
	r.Update(0)
	c.advance(4 * time.Second)
	r.Update(0)
	r.Done(0)
	want := []string{
		"clone: started, 1.0 GiB; estimated time: about 4s (the previous clone: 512.0 MiB in 2s)",
		"clone: ~25%, 1s elapsed, about 3s left",
		"clone: ~100%, 5s elapsed, longer than the 4s estimated",
		"clone: done in 5s, 1.0 GiB, 204.8 MiB/s",
	}
	wantLines(t, sb.String(), want)

	sb.Reset()
	r = start(&sb, Step{Label: "clone", Timed: true, Size: 1 << 30, Basis: "no earlier clone was timed"}, false, c.now)
	c.advance(LogInterval)
	r.Update(0)
	want = []string{
		"clone: started, 1.0 GiB; no time estimate (no earlier clone was timed)",
		"clone: 5s elapsed",
	}
	wantLines(t, sb.String(), want)
}

func TestETAArithmetic(t *testing.T) {
	for _, tc := range []struct {
		n, total int64
		elapsed  time.Duration
		left     time.Duration
		ok       bool
	}{
		{25, 100, 20 * time.Second, 60 * time.Second, true},
		{50, 100, 3 * time.Second, 3 * time.Second, true},
		{99, 100, 99 * time.Second, time.Second, true},
		{0, 100, 5 * time.Second, 0, false},   // nothing done: no rate yet
		{100, 100, 5 * time.Second, 0, false}, // done
		{150, 100, 5 * time.Second, 0, false}, // past an estimated total
		{10, 0, 5 * time.Second, 0, false},    // no total
		{10, 100, 0, 0, false},
	} {
		left, ok := ETA(tc.n, tc.total, tc.elapsed)
		if left != tc.left || ok != tc.ok {
			t.Errorf("ETA(%d, %d, %s) = %s, %v; want %s, %v", tc.n, tc.total, tc.elapsed, left, ok, tc.left, tc.ok)
		}
	}
	if left, ok := TimedLeft(10*time.Second, 4*time.Second); left != 6*time.Second || !ok {
		t.Errorf("TimedLeft(10s, 4s) = %s, %v", left, ok)
	}
	if _, ok := TimedLeft(10*time.Second, 11*time.Second); ok {
		t.Error("TimedLeft past the estimate")
	}
	if _, ok := TimedLeft(0, time.Second); ok {
		t.Error("TimedLeft without an estimate")
	}
	if got := Estimate(3<<30, 1<<30, 2*time.Second); got != 6*time.Second {
		t.Errorf("Estimate = %s", got)
	}
	if got := Estimate(3<<30, 0, 2*time.Second); got != 0 {
		t.Errorf("Estimate without a previous size = %s", got)
	}
}

func TestANilReporterDoesNothing(t *testing.T) {
	r := Start(nil, Step{Label: "x"})
	r.Update(1)
	r.Done(1)
	Watch(r, nil)(true)
}

func TestBytesUsesBinaryUnits(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{2345 * time.Millisecond: "2.3s", 83 * time.Second: "1m23s", 0: "0s"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}

// openPTY opens a pseudo-terminal pair; the test reads nothing from it.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return slave
}

// dpkg runs maintainer scripts on apt's pseudo-terminal and apt logs it to
// term.log; unattended-upgrades sends it to a file it mails. Neither may get
// escape codes or a bar: only a terminal someone reads does.
func TestOnlyATerminalNoPackageManagerLogsGetsTheLiveBar(t *testing.T) {
	pty := openPTY(t)
	file, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name       string
		w          any
		term, dpkg string
		live       bool
	}{
		{"a terminal", pty, "xterm-256color", "", true},
		{"a terminal under dpkg (apt's pseudo-terminal, logged to term.log)", pty, "xterm-256color", "postinst", false},
		{"a terminal with TERM=dumb", pty, "dumb", "", false},
		{"a terminal without TERM", pty, "", "", false},
		{"a file (unattended-upgrades' dpkg log)", file, "xterm-256color", "", false},
		{"not a file", &strings.Builder{}, "xterm-256color", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TERM", tc.term)
			t.Setenv("DPKG_MAINTSCRIPT_NAME", tc.dpkg)
			if got := Live(tc.w); got != tc.live {
				t.Errorf("Live = %v, want %v", got, tc.live)
			}
		})
	}
}

func TestPlainLinesHoldNoEscapeCodesNorBar(t *testing.T) {
	for _, step := range []Step{
		{Label: "backup", Total: 40 << 20, TotalIsEstimate: true},
		{Label: "restore", Total: 40 << 20},
		{Label: "clone", Timed: true, Size: 1 << 30, Expected: 4 * time.Second},
	} {
		var sb strings.Builder
		c := &clock{time.Unix(0, 0)}
		r := start(&sb, step, false, c.now)
		for i := 0; i < 3; i++ {
			c.advance(LogInterval)
			r.Update(int64(i+1) * 10 << 20)
		}
		r.Fail(0)
		if out := sb.String(); strings.ContainsAny(out, "\x1b\r[]") || strings.Contains(out, "==") {
			t.Errorf("%s: plain lines hold escape codes or a bar:\n%q", step.Label, out)
		}
	}
}
