// Package metrics writes the upgrade's state for monitoring: a file in the
// Prometheus text exposition format (version 0.0.4) that node_exporter's
// textfile collector reads from its directory (METRICS_DIR in upgrade.conf;
// Debian's is /var/lib/prometheus/node-exporter).
//
// The format is rendered here, not with client_golang: a dozen gauges with
// fixed names and a few validated label values need no registry, and the
// file must be written by root with the care of Write, which no library
// does. `promtool check metrics` checks the output in the tests.
//
// Nothing secret goes in: no DSN, host, user or message text, only states,
// versions, counts and times.
package metrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// FileName is the file written in the directory.
const FileName = "openwatch.prom"

// State is what the binary knows, gathered by its caller.
type State struct {
	// Written is when the state was gathered: openwatch_metrics_updated_timestamp_seconds,
	// which a staleness alert compares with time().
	Written time.Time
	// PackageVersion and BinaryHead describe this binary: its package
	// version and the newest migration it ships.
	PackageVersion, BinaryHead string
	// Upgrade is the last upgrade the journal records; nil: none.
	Upgrade *Upgrade
	// DatabaseReachable says whether the schema could be read: without it
	// SchemaVersion and Pending are unknown and left out.
	DatabaseReachable bool
	SchemaVersion     string // "" when nothing is applied
	Pending           int    // migrations this binary would apply
	// SchemaNewer: the database holds migrations this binary does not know.
	SchemaNewer bool
	// RestorePoints lists every restore point (files and clones) known.
	RestorePoints []RestorePoint
	// RestorePointsKnown is false when they could not be listed at all.
	RestorePointsKnown bool
}

// Upgrade is the journal's last upgrade.
type Upgrade struct {
	Outcome, Phase string
	Updated        time.Time // zero when the journal gives no time
	// Failed: the upgrade failed and a recovery command is pending.
	Failed bool
	// LeftStopped: it failed after stopping the service, which stays
	// stopped until the recovery command succeeds.
	LeftStopped bool
}

// RestorePoint is one restore point.
type RestorePoint struct {
	Kind    string // file or clone
	Created time.Time
	Size    int64
}

var (
	wordRE    = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9.+~_:-]{1,128}$`)
)

// word is v when it is a plain lower-case word (an outcome, a phase, a
// kind), else "unknown": a label value read from a file is validated, not
// copied.
func word(v string) string {
	if wordRE.MatchString(v) {
		return v
	}
	return "unknown"
}

func version(v string) string {
	if versionRE.MatchString(v) {
		return v
	}
	if v == "" {
		return "none"
	}
	return "unknown"
}

// Render returns the exposition text for s.
func Render(s State) []byte {
	var b strings.Builder
	gauge := func(name, help string, samples ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		for _, sm := range samples {
			b.WriteString(name + sm + "\n")
		}
	}
	bool01 := func(v bool) string {
		if v {
			return " 1"
		}
		return " 0"
	}
	seconds := func(t time.Time) string { return fmt.Sprintf(" %d", t.Unix()) }

	gauge("openwatch_metrics_updated_timestamp_seconds",
		"When openwatch last wrote this file (each upgrade, recovery and daily restore point cleanup).",
		seconds(s.Written))
	gauge("openwatch_build_info", "The installed openwatch package version and the newest migration its binary ships.",
		labels("version", version(s.PackageVersion), "schema_head", version(s.BinaryHead))+" 1")

	if u := s.Upgrade; u != nil {
		gauge("openwatch_upgrade_last_info", "The last package upgrade's outcome and the phase it reached (the upgrade journal).",
			labels("outcome", word(u.Outcome), "phase", word(u.Phase))+" 1")
		if !u.Updated.IsZero() {
			gauge("openwatch_upgrade_last_timestamp_seconds", "When the last package upgrade's journal was last written.", seconds(u.Updated))
		}
	}
	u := s.Upgrade
	gauge("openwatch_upgrade_failed", "1 when the last package upgrade failed and its recovery command has not succeeded yet.",
		bool01(u != nil && u.Failed))
	gauge("openwatch_service_left_stopped", "1 when a failed upgrade stopped the service and left it stopped until the recovery command succeeds.",
		bool01(u != nil && u.LeftStopped))

	gauge("openwatch_database_reachable", "1 when openwatch could read the schema state when it wrote this file.", bool01(s.DatabaseReachable))
	if s.DatabaseReachable {
		gauge("openwatch_schema_info", "The newest migration applied to the database.",
			labels("version", version(s.SchemaVersion))+" 1")
		gauge("openwatch_migrations_pending", "Migrations this binary would apply (openwatch migrate --status).",
			fmt.Sprintf(" %d", s.Pending))
		gauge("openwatch_schema_newer", "1 when the database holds migrations this binary does not know (a downgrade).", bool01(s.SchemaNewer))
	}

	if s.RestorePointsKnown {
		counts := map[string]int{"file": 0, "clone": 0}
		var newest *RestorePoint
		for i, rp := range s.RestorePoints {
			counts[word(rp.Kind)]++
			if newest == nil || rp.Created.After(newest.Created) {
				newest = &s.RestorePoints[i]
			}
		}
		kinds := make([]string, 0, len(counts))
		for k := range counts {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var samples []string
		for _, k := range kinds {
			samples = append(samples, labels("kind", k)+fmt.Sprintf(" %d", counts[k]))
		}
		gauge("openwatch_restore_points", "Restore points kept: pg_dump files in BACKUP_DIR and clones on the database server.", samples...)
		if newest != nil {
			gauge("openwatch_restore_point_newest_timestamp_seconds", "When the newest restore point was taken.",
				labels("kind", word(newest.Kind))+seconds(newest.Created))
			gauge("openwatch_restore_point_newest_size_bytes", "The newest restore point's size (a file's bytes, or a clone's database size).",
				labels("kind", word(newest.Kind))+fmt.Sprintf(" %d", newest.Size))
		}
	}
	return []byte(b.String())
}

// labels renders {k="v",...}; values are escaped as the format requires.
func labels(kv ...string) string {
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+`="`+esc.Replace(kv[i+1])+`"`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// Errors Write returns, wrapped with the directory.
var (
	ErrNotAbsolute = errors.New("is not an absolute path")
	ErrSymlink     = errors.New("is a symbolic link")
	ErrUntrusted   = errors.New("may be written by another account than root")
	ErrNotDir      = errors.New("is not a directory")
)

// Write replaces dir/openwatch.prom with content atomically: a temporary
// file created in dir (O_EXCL, so never through a link), synced, renamed
// over the old file, and the directory synced, so node_exporter reads the
// old file or the new one, never a part. dir itself must be a directory
// (not a symbolic link: name the directory it points to) owned by root and
// writable by no one else, since root writes there: a directory another
// account can write is refused, as the rest of openwatch refuses one for
// its restore points. Debian's /var/lib/prometheus/node-exporter is
// root:root 0755. Every operation goes through an os.Root opened on dir and
// checked to be the directory inspected, so no link is followed out of it.
func Write(dir string, content []byte) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("METRICS_DIR %s %w", dir, ErrNotAbsolute)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("METRICS_DIR %s %w: set it to the directory the link points to", dir, ErrSymlink)
	}
	if err := trusted(dir, fi); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	opened, err := root.Stat(".")
	if err != nil {
		return err
	}
	if !os.SameFile(fi, opened) {
		return fmt.Errorf("METRICS_DIR %s was replaced while it was being opened; nothing was written", dir)
	}
	if err := trusted(dir, opened); err != nil {
		return err
	}

	tmp, f, err := createTemp(root)
	if err != nil {
		return fmt.Errorf("METRICS_DIR %s: %w", dir, err)
	}
	defer root.Remove(tmp) // gone after the rename; removes a partial file otherwise
	_, werr := f.Write(content)
	if werr == nil {
		werr = f.Chmod(0o644) // node_exporter runs as its own user
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("METRICS_DIR %s: writing %s: %w", dir, tmp, werr)
	}
	if err := root.Rename(tmp, FileName); err != nil {
		return fmt.Errorf("METRICS_DIR %s: %w", dir, err)
	}
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("METRICS_DIR %s: syncing the directory: %w", dir, err)
	}
	return nil
}

// createTemp creates .openwatch.prom.<random> exclusively in root. The
// textfile collector reads only names ending in .prom.
func createTemp(root *os.Root) (string, *os.File, error) {
	for i := 0; ; i++ {
		name := fmt.Sprintf(".%s.%d.%d.tmp", FileName, os.Getpid(), time.Now().UnixNano())
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil || !errors.Is(err, os.ErrExist) || i == 10 {
			return name, f, err
		}
	}
}

// trusted refuses a directory that is not root's alone.
func trusted(dir string, fi os.FileInfo) error {
	if !fi.IsDir() {
		return fmt.Errorf("METRICS_DIR %s %w", dir, ErrNotDir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("METRICS_DIR %s: cannot read its owner", dir)
	}
	if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("METRICS_DIR %s %w (owner uid %d, mode %04o): root writes there, so it must be root's alone; fix it with: chown root: %s && chmod go-w %s (node_exporter only reads it)",
			dir, ErrUntrusted, st.Uid, fi.Mode().Perm(), dir, dir)
	}
	return nil
}
