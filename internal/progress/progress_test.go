package progress

import (
	"strings"
	"testing"
	"time"
)

func TestANonTerminalGetsAPlainLineEveryInterval(t *testing.T) {
	var sb strings.Builder
	clock := time.Unix(0, 0)
	r := New(&sb, "backup", 0)
	r.now = func() time.Time { return clock }
	r.start, r.last = clock, clock
	r.Update(1 << 20) // not due yet
	clock = clock.Add(LogInterval)
	r.Update(10 << 20)
	r.Done(20 << 20)
	lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "backup: 10.0 MiB, 2.0 MiB/s") || strings.Contains(sb.String(), "\r") {
		t.Fatalf("output %q", sb.String())
	}
}

func TestAKnownTotalDrawsABar(t *testing.T) {
	var sb strings.Builder
	New(&sb, "restore", 100).Done(50)
	if !strings.Contains(sb.String(), "[============            ]  50%") {
		t.Fatalf("output %q", sb.String())
	}
}

func TestBytesUsesBinaryUnits(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
