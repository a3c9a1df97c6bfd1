// Package progress reports how far a long dump or restore has come: a live
// single-line bar on a terminal, a plain line every few seconds otherwise
// (journald, package-manager logs).
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

// Reporter prints progress for one operation.
type Reporter struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	total    int64 // 0 when unknown
	tty      bool
	start    time.Time
	last     time.Time
	interval time.Duration
	now      func() time.Time
}

// New returns a reporter writing to w; total is the expected byte count, or 0.
func New(w io.Writer, label string, total int64) *Reporter {
	r := &Reporter{w: w, label: label, total: total, tty: IsTerminal(w), now: time.Now}
	r.start, r.last = r.now(), r.now()
	r.interval = LogInterval
	if r.tty {
		r.interval = 200 * time.Millisecond
	}
	return r
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

// Update records that n bytes are done, printing when a report is due.
func (r *Reporter) Update(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.last) >= r.interval {
		r.last = now
		r.print(n, false)
	}
}

// Done prints the final state.
func (r *Reporter) Done(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.print(n, true)
}

func (r *Reporter) print(n int64, final bool) {
	elapsed := r.now().Sub(r.start)
	rate := float64(n) / max(elapsed.Seconds(), 0.001)
	text := fmt.Sprintf("%s: %s, %s/s, %s", r.label, Bytes(n), Bytes(int64(rate)), elapsed.Round(time.Second))
	if r.total > 0 {
		text = fmt.Sprintf("%s %s", bar(n, r.total), text)
	}
	switch {
	case r.tty && final:
		fmt.Fprintf(r.w, "\r\033[K%s\n", text)
	case r.tty:
		fmt.Fprintf(r.w, "\r\033[K%s", text)
	default:
		fmt.Fprintln(r.w, text)
	}
}

func bar(n, total int64) string {
	const width = 24
	frac := min(float64(n)/float64(total), 1)
	full := int(frac * width)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("=", full), strings.Repeat(" ", width-full), frac*100)
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
