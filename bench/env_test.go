package main

import (
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/clone"
)

// The lines the benchmark reads from the binary's output, with names made
// by internal/clone as the binary makes them (internal/cli prints them).
func TestOutputPatternsFindTheNamesTheBinaryPrints(t *testing.T) {
	at := time.Date(2026, 11, 24, 15, 1, 2, 0, time.UTC)
	name, err := clone.Name("20260101000002", at)
	if err != nil {
		t.Fatal(err)
	}
	kept := clone.KeptName(dbName, at)
	for _, c := range []struct {
		line, want string
		got        func(string) []string
	}{
		{"restore point: " + name + ", a clone of the database taken in 2.53s", name, cloneLineRE.FindStringSubmatch},
		{"exporting the clone restore point " + name + " to /var/backups/openwatch…", name, exportLineRE.FindStringSubmatch},
		{"restore point: /var/backups/openwatch/x.dump", "/var/backups/openwatch/x.dump", fileLineRE.FindStringSubmatch},
		{`Drop it once you no longer need it: DROP DATABASE "` + kept + `";`, kept, keptRE.FindStringSubmatch},
		{`Drop it once you no longer need it: DROP DATABASE ` + kept + `;`, kept, keptRE.FindStringSubmatch},
	} {
		if m := c.got(c.line); m == nil || m[1] != c.want {
			t.Errorf("%q: got %q, want %q", c.line, m, c.want)
		}
	}
	if m := fileLineRE.FindStringSubmatch("restore point: a file, not a clone: RESTORE_POINT=file"); m != nil {
		t.Errorf("a file restore point's reason read as a path: %q", m)
	}
	if m := cloneLineRE.FindStringSubmatch("restore point: a file, the clone failed: x"); m != nil {
		t.Errorf("a failed clone read as a clone: %q", m)
	}
}
