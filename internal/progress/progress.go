// Package progress reports how far a long step (a clone, a dump, an export,
// a restore) has come, with an estimate of the time left: a live single-line
// bar on a terminal; otherwise (journald, package-manager logs) a start line,
// a plain line every few seconds, and an end line with the duration.
//
// Every estimate is marked as one: a time left reads "about 12s left", a
// total that is itself a guess (the previous restore point's size) reads
// "~1.0 GiB", and the start line says what the estimate rests on.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LogInterval is how often a line is written when the output is not a terminal.
const LogInterval = 5 * time.Second

// ttyInterval is how often the bar is redrawn on a terminal.
const ttyInterval = 200 * time.Millisecond

// Step describes one step for a Reporter.
type Step struct {
	Label string // "backup", "restore", "clone"…
	// Total is the byte count the step will have processed when done; 0 when
	// unknown. Update reports the bytes done so far.
	Total int64
	// TotalIsEstimate marks Total as a guess (e.g. the previous restore
	// point's size), not a known amount.
	TotalIsEstimate bool
	// Expected is, for a step that cannot report bytes as it goes (a
	// CREATE DATABASE), its estimated duration; 0 when there is no estimate.
	// Size is what such a step copies, for the lines (0 if unknown).
	Timed    bool
	Expected time.Duration
	Size     int64
	// Basis says what the estimate rests on (or why there is none), for the
	// start line: "the previous clone copied 390.0 MiB/s".
	Basis string
}

// Reporter prints progress for one step. A nil *Reporter does nothing.
type Reporter struct {
	mu       sync.Mutex
	w        io.Writer
	s        Step
	tty      bool
	start    time.Time
	last     time.Time
	interval time.Duration
	now      func() time.Time
	ended    bool
}

// New returns a reporter for a step of total bytes (0: unknown), writing to
// w; nil when w is nil. On a non-terminal it prints the start line now.
func New(w io.Writer, label string, total int64) *Reporter {
	return Start(w, Step{Label: label, Total: total})
}

// Start returns a reporter for step s writing to w, nil when w is nil, and
// prints the start line when w is not a terminal.
func Start(w io.Writer, s Step) *Reporter {
	if w == nil {
		return nil
	}
	return start(w, s, Live(w), time.Now)
}

func start(w io.Writer, s Step, tty bool, now func() time.Time) *Reporter {
	r := &Reporter{w: w, s: s, tty: tty, now: now, interval: LogInterval}
	if tty {
		r.interval = ttyInterval
	}
	r.start = now()
	r.last = r.start
	if !tty {
		fmt.Fprintln(w, r.startLine())
	}
	return r
}

// Live reports whether w gets the live bar: a terminal, with a TERM that
// understands it, that no package manager logs. dpkg runs maintainer scripts
// on apt's pseudo-terminal and apt copies everything written there into
// /var/log/apt/term.log, so under dpkg (DPKG_MAINTSCRIPT_NAME set) the output
// gets plain lines, as does any other output that is not a terminal.
func Live(w any) bool {
	if !IsTerminal(w) {
		return false
	}
	if t := os.Getenv("TERM"); t == "" || t == "dumb" {
		return false
	}
	return os.Getenv("DPKG_MAINTSCRIPT_NAME") == ""
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Update records that n bytes are done (ignored for a timed step), printing
// when a report is due.
func (r *Reporter) Update(n int64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); !r.ended && now.Sub(r.last) >= r.interval {
		r.last = now
		line := r.line(n, now.Sub(r.start), r.tty)
		if r.tty {
			fmt.Fprintf(r.w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(r.w, line)
		}
	}
}

// Done prints the end line of a step that succeeded, n bytes done (for a
// timed step: what it copied, 0 if unknown), and returns how long it took.
func (r *Reporter) Done(n int64) time.Duration { return r.end(n, true) }

// Fail prints the end line of a step that failed.
func (r *Reporter) Fail(n int64) time.Duration { return r.end(n, false) }

func (r *Reporter) end(n int64, ok bool) time.Duration {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	elapsed := r.now().Sub(r.start)
	if r.ended {
		return elapsed
	}
	r.ended = true
	if ok && n == 0 && r.s.Timed {
		n = r.s.Size // a timed step copied what it was to copy
	}
	verb := "done in"
	if !ok {
		verb = "failed after"
	}
	text := fmt.Sprintf("%s: %s %s", r.s.Label, verb, Duration(elapsed))
	if n > 0 {
		text += fmt.Sprintf(", %s, %s/s", Bytes(n), Bytes(rate(n, elapsed)))
	}
	if r.tty {
		fmt.Fprintf(r.w, "\r\033[K%s\n", text)
	} else {
		fmt.Fprintln(r.w, text)
	}
	return elapsed
}

// startLine says what the step expects and what that rests on.
func (r *Reporter) startLine() string {
	s := r.s
	text := s.Label + ": started"
	basis := ""
	if s.Basis != "" {
		basis = " (" + s.Basis + ")"
	}
	switch {
	case s.Timed && s.Size > 0 && s.Expected > 0:
		text += fmt.Sprintf(", %s; estimated time: about %s%s", Bytes(s.Size), Duration(s.Expected), basis)
	case s.Timed && s.Expected > 0:
		text += fmt.Sprintf("; estimated time: about %s%s", Duration(s.Expected), basis)
	case s.Timed && s.Size > 0:
		text += fmt.Sprintf(", %s; no time estimate%s", Bytes(s.Size), basis)
	case s.Timed:
		text += "; no time estimate" + basis
	case s.Total > 0 && s.TotalIsEstimate:
		text += fmt.Sprintf(", about %s expected%s", Bytes(s.Total), basis)
	case s.Total > 0:
		text += fmt.Sprintf(", %s to process%s", Bytes(s.Total), basis)
	case s.Basis != "":
		text += "; no size estimate" + basis
	}
	return text
}

// line is one progress report after elapsed, n bytes done; with a bar on a
// terminal only (a log gets words and numbers).
func (r *Reporter) line(n int64, elapsed time.Duration, withBar bool) string {
	bar, num := bar, "%3.0f" // a fixed width keeps the bar still
	if !withBar {
		bar, num = func(float64) string { return "" }, "%.0f"
	}
	s := r.s
	if s.Timed {
		text := fmt.Sprintf("%s: %s elapsed", s.Label, Duration(elapsed))
		if s.Expected <= 0 {
			return text
		}
		frac := min(float64(elapsed)/float64(s.Expected), 1)
		text = fmt.Sprintf("%s: %s~"+num+"%%, %s elapsed", s.Label, bar(frac), frac*100, Duration(elapsed))
		if left, ok := TimedLeft(s.Expected, elapsed); ok {
			return text + fmt.Sprintf(", about %s left", Duration(left))
		}
		return text + fmt.Sprintf(", longer than the %s estimated", Duration(s.Expected))
	}
	done := fmt.Sprintf("%s, %s/s, %s elapsed", Bytes(n), Bytes(rate(n, elapsed)), Duration(elapsed))
	if s.Total <= 0 {
		return s.Label + ": " + done
	}
	frac := min(float64(n)/float64(s.Total), 1)
	approx, pct := "", "%"
	if s.TotalIsEstimate {
		approx, pct = "~", "% of ~"+Bytes(s.Total)
	}
	text := fmt.Sprintf("%s: %s%s"+num+"%s, %s", s.Label, bar(frac), approx, frac*100, pct, done)
	if left, ok := ETA(n, s.Total, elapsed); ok {
		return text + fmt.Sprintf(", about %s left", Duration(left))
	}
	if n > s.Total && s.TotalIsEstimate {
		return text + ", more than estimated"
	}
	return text
}

// ETA is the time left for a step that has done n of total bytes after
// elapsed, at the average rate so far; ok is false when it cannot be told
// (nothing done yet, no total, or n already at or past the total).
func ETA(n, total int64, elapsed time.Duration) (left time.Duration, ok bool) {
	if n <= 0 || total <= 0 || n >= total || elapsed <= 0 {
		return 0, false
	}
	return time.Duration(float64(elapsed) * float64(total-n) / float64(n)), true
}

// TimedLeft is the time left of a step estimated to take expected after
// elapsed; ok is false without an estimate or once it has been exceeded.
func TimedLeft(expected, elapsed time.Duration) (left time.Duration, ok bool) {
	if expected <= 0 || elapsed >= expected {
		return 0, false
	}
	return expected - elapsed, true
}

// Estimate is the time size bytes take at the rate of an earlier step that
// did prevBytes in prevTime; 0 when that earlier step gives no rate.
func Estimate(size, prevBytes int64, prevTime time.Duration) time.Duration {
	if size <= 0 || prevBytes <= 0 || prevTime <= 0 {
		return 0
	}
	return time.Duration(float64(prevTime) * float64(size) / float64(prevBytes))
}

func rate(n int64, elapsed time.Duration) int64 {
	return int64(float64(n) / max(elapsed.Seconds(), 0.001))
}

func bar(frac float64) string {
	const width = 24
	full := int(frac * width)
	return "[" + strings.Repeat("=", full) + strings.Repeat(" ", width-full) + "] "
}

// Duration formats a duration for people: tenths of a second below 10s,
// whole seconds above.
func Duration(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Bytes formats a byte count for people.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Watch calls r.Update(poll()) until stop is called (poll nil: Update(0), for
// a timed step), then prints the end line: Done(poll()) when ok, else Fail.
func Watch(r *Reporter, poll func() int64) (stop func(ok bool)) {
	if r == nil {
		return func(bool) {}
	}
	if poll == nil {
		poll = func() int64 { return 0 }
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(ttyInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				r.Update(poll())
			}
		}
	}()
	return func(ok bool) {
		close(quit)
		<-finished
		if ok {
			r.Done(poll())
		} else {
			r.Fail(poll())
		}
	}
}
