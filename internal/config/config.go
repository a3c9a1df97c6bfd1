// Package config loads upgrade.conf and the database DSN
// (OPENWATCH_DATABASE_DSN from the environment, else secrets.env; their
// installed paths are DefaultConfigPath and DefaultSecretsPath),
// both with systemd EnvironmentFile= rules.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/envfile"
	"github.com/openwatch/openwatch/internal/version"
)

// Default paths and values, from gen's spec (rendered into package
// defaults; the same values reach upgrade.conf and the units).
// DefaultBackupCompression is chosen by measurement (docs/BENCHMARKS.md).
const (
	DefaultConfigPath         = defaults.ConfigPath
	DefaultSecretsPath        = defaults.SecretsPath
	DefaultBackupDir          = defaults.BackupDir
	DefaultAutoBackup         = defaults.AutoBackup
	DefaultRetentionDays      = defaults.RetentionDays
	DefaultBackupCompression  = defaults.BackupCompression
	DefaultMigrateLockTimeout = defaults.MigrateLockTimeoutSeconds * time.Second
	DefaultDatabaseWait       = defaults.DatabaseWaitSeconds * time.Second
	DefaultMigrationLockWait  = defaults.MigrationLockWaitSeconds * time.Second
	DefaultRestorePoint       = defaults.RestorePoint
	DefaultRehearse           = defaults.Rehearse
	// RehearseAutoMaxBytes is the largest database REHEARSE=auto rehearses.
	RehearseAutoMaxBytes = defaults.RehearseAutoMaxBytes
	DefaultJournalPath   = defaults.JournalPath
	DefaultUpgradeHelper = defaults.UpgradeHelper
	DSNVar               = "OPENWATCH_DATABASE_DSN"
)

// Keys are the settings upgrade.conf may hold. A key close to one of them is
// refused as a typo, naming the closest; another key of the settings' form
// is a later version's setting and is ignored with a warning (Misspelt).
// Keys are only ever added, each far from every other (TestSettingsAreFarApart).
var Keys = []string{"AUTO_BACKUP", "BACKUP_DIR", "BACKUP_RETENTION_DAYS", "BACKUP_COMPRESSION", "MIGRATE_LOCK_TIMEOUT", "DATABASE_WAIT_TIMEOUT", "MIGRATION_LOCK_WAIT", "RESTORE_POINT", "REHEARSE", "METRICS_DIR"}

// SecretsError means secrets.env exists but cannot be read.
type SecretsError struct{ Err error }

func (e *SecretsError) Error() string { return e.Err.Error() }
func (e *SecretsError) Unwrap() error { return e.Err }

// Config is upgrade.conf plus the DSN.
type Config struct {
	AutoBackup         bool
	BackupDir          string
	RetentionDays      int
	BackupCompression  string // pg_dump --compress value: 0-9, or method[:level]
	MigrateLockTimeout time.Duration
	DatabaseWait       time.Duration // how long to wait for an unreachable database
	// MigrationLockWait bounds each wait of a migration for a table or row
	// lock another session holds (lock_timeout), not its run time.
	MigrationLockWait time.Duration
	// RestorePoint chooses the kind of restore point: auto (a clone of the
	// database when that is safe, else a file), clone, or file.
	RestorePoint string
	// Rehearse chooses whether migrate --preflight rehearses the migrations
	// on a scratch copy of the database: auto (when the database is at most
	// RehearseAutoMaxBytes and the rehearsal can run), yes, or no.
	Rehearse string
	// MetricsDir is where openwatch.prom is written for node_exporter's
	// textfile collector (internal/metrics); "" (the default): not written.
	MetricsDir string

	DSN         string // empty when not configured
	SecretsPath string // where the DSN was looked for, for messages
	// DSNSource says where the DSN came from, for messages: the environment
	// variable or the secrets file.
	DSNSource string
	Warnings  []string
}

// Defaults returns the configuration used when upgrade.conf is absent.
func Defaults() Config {
	return Config{
		AutoBackup:         DefaultAutoBackup,
		BackupDir:          DefaultBackupDir,
		RetentionDays:      DefaultRetentionDays,
		BackupCompression:  DefaultBackupCompression,
		MigrateLockTimeout: DefaultMigrateLockTimeout,
		DatabaseWait:       DefaultDatabaseWait,
		MigrationLockWait:  DefaultMigrationLockWait,
		RestorePoint:       DefaultRestorePoint,
		Rehearse:           DefaultRehearse,
	}
}

// ConfError means upgrade.conf cannot be read or holds an invalid value.
type ConfError struct{ Err error }

func (e *ConfError) Error() string { return e.Err.Error() }
func (e *ConfError) Unwrap() error { return e.Err }

// Load reads upgrade.conf at confPath (missing means defaults) and the DSN:
// the environment variable wins over secrets.env at secretsPath. The DSN is
// loaded even when upgrade.conf is broken; that is reported as a *ConfError,
// an unreadable secrets.env as a *SecretsError.
func Load(confPath, secretsPath string) (Config, error) {
	return LoadOptions{ConfPath: confPath, SecretsPath: secretsPath}.Load()
}

// LoadOptions say where the files are; ConfRequired makes a missing
// upgrade.conf an error (the operator named the file with --config).
type LoadOptions struct {
	ConfPath, SecretsPath string
	ConfRequired          bool
	NoDSN                 bool // read upgrade.conf only
}

// Load is Load with options.
func (o LoadOptions) Load() (Config, error) {
	confPath, secretsPath := o.ConfPath, o.SecretsPath
	c := Defaults()
	c.SecretsPath = secretsPath
	confErr := c.loadConf(confPath, o.ConfRequired)
	if o.NoDSN {
		return c, confErr
	}
	if err := c.loadDSN(secretsPath); err != nil {
		return c, err
	}
	return c, confErr
}

// loadConf reads upgrade.conf. Lines systemd would ignore and misspelt keys
// are errors here: a typo must not silently turn a setting back to its
// default. A key that is no typo of a known one belongs to a later version
// (a gate of version N runs this binary of version M < N with N's
// upgrade.conf): it is ignored with a warning naming it.
func (c *Config) loadConf(path string, required bool) error {
	vars, ignored, err := envfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		if required {
			return &ConfError{Err: fmt.Errorf("%s does not exist", path)}
		}
		return nil
	}
	if err != nil {
		return &ConfError{Err: err}
	}
	var problems []error
	for _, ig := range ignored {
		problems = append(problems, fmt.Errorf("%s:%d: %q: %s", path, ig.Line, ig.Key, ig.Reason))
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if slices.Contains(Keys, k) {
			continue
		}
		near := closest(k, Keys)
		if Misspelt(k, near) || !settingNameRE.MatchString(k) {
			problems = append(problems, fmt.Errorf("%s: unknown setting %s (did you mean %s?)", path, k, near))
			continue
		}
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: ignoring %s: not a setting of openwatch %s (a later version's setting, or a typo too far from %s to tell)", path, k, version.Version, near))
		delete(vars, k)
	}
	if err := c.apply(vars); err != nil {
		problems = append(problems, fmt.Errorf("%s: %w", path, err))
	}
	if len(problems) > 0 {
		return &ConfError{Err: errors.Join(problems...)}
	}
	return nil
}

func (c *Config) loadDSN(secretsPath string) error {
	if dsn := os.Getenv(DSNVar); dsn != "" {
		c.DSN = dsn
		c.DSNSource = "the environment"
		return nil
	}
	c.DSNSource = secretsPath
	secrets, ignored, err := envfile.Read(secretsPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &SecretsError{Err: err}
	}
	c.warnIgnored(secretsPath, ignored)
	c.DSN = secrets[DSNVar]
	if fi, err := os.Stat(secretsPath); err == nil && fi.Mode().Perm()&0o007 != 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s is readable by everyone (mode %04o); fix it with: chmod 0640 %s", secretsPath, fi.Mode().Perm(), secretsPath))
	}
	return nil
}

func (c *Config) warnIgnored(path string, ignored []envfile.Ignored) {
	for _, ig := range ignored {
		also := " (systemd ignores it too)"
		if ig.StricterThanSystemd {
			also = " (systemd would read on to the end of the file)"
		}
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: ignoring %q: %s%s", path, ig.Line, ig.Key, ig.Reason, also))
	}
}

var compressionRE = regexp.MustCompile(`^([0-9]|(none|gzip|lz4|zstd)(:[0-9]+)?)$`)

func (c *Config) apply(vars map[string]string) error {
	var err error
	if v, ok := vars["AUTO_BACKUP"]; ok {
		if c.AutoBackup, err = parseBool(v); err != nil {
			return fmt.Errorf("AUTO_BACKUP=%q: %w", v, err)
		}
	}
	if v := vars["BACKUP_DIR"]; v != "" {
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("BACKUP_DIR=%q: must be an absolute path", v)
		}
		c.BackupDir = v
	}
	if v, ok := vars["BACKUP_RETENTION_DAYS"]; ok {
		if c.RetentionDays, err = parseInt(v, 0, 36500); err != nil {
			return fmt.Errorf("BACKUP_RETENTION_DAYS=%q: %w", v, err)
		}
	}
	if v, ok := vars["BACKUP_COMPRESSION"]; ok && v != "" {
		if !compressionRE.MatchString(v) {
			return fmt.Errorf("BACKUP_COMPRESSION=%q: want a level 0-9 or method[:level] (gzip, lz4, zstd, none)", v)
		}
		c.BackupCompression = v
	}
	for _, s := range []struct {
		key      string
		min, max int
		dst      *time.Duration
	}{
		{"MIGRATE_LOCK_TIMEOUT", 1, 86400, &c.MigrateLockTimeout},
		{"DATABASE_WAIT_TIMEOUT", 0, 3600, &c.DatabaseWait},
		{"MIGRATION_LOCK_WAIT", 1, 86400, &c.MigrationLockWait},
	} {
		if v, ok := vars[s.key]; ok && v != "" {
			secs, err := parseInt(v, s.min, s.max)
			if err != nil {
				return fmt.Errorf("%s=%q: %w (seconds)", s.key, v, err)
			}
			*s.dst = time.Duration(secs) * time.Second
		}
	}
	if v, ok := vars["RESTORE_POINT"]; ok && v != "" {
		switch v {
		case "auto", "clone", "file":
			c.RestorePoint = v
		default:
			return fmt.Errorf("RESTORE_POINT=%q: want auto, clone or file", v)
		}
	}
	if v := vars["METRICS_DIR"]; v != "" {
		if !strings.HasPrefix(v, "/") || filepath.Clean(v) != v || v == "/" {
			return fmt.Errorf("METRICS_DIR=%q: must be an absolute path to a directory, such as /var/lib/prometheus/node-exporter (or empty: off)", v)
		}
		c.MetricsDir = v
	}
	if v, ok := vars["REHEARSE"]; ok && v != "" {
		switch v {
		case "auto", "yes", "no":
			c.Rehearse = v
		default:
			return fmt.Errorf("REHEARSE=%q: want auto, yes or no", v)
		}
	}
	return nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "y", "true", "1", "on":
		return true, nil
	case "no", "n", "false", "0", "off":
		return false, nil
	}
	return false, errors.New("want yes or no")
}

func parseInt(v string, min, max int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("want a whole number from %d to %d", min, max)
	}
	return n, nil
}

// settingNameRE is the form every setting's name has: a key of another form
// is a typo, never a later version's setting.
var settingNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)

// Misspelt reports whether key, which is not a known setting, is a
// misspelling of the known setting near (its closest): it differs from it
// only in case, or by at most a third of near's length in edits (at least
// 2). A key farther from every known setting is one of a later version's
// settings and is ignored with a warning. Every two known settings are
// farther apart than that (TestSettingsAreFarApart), so a setting a later
// version adds is never taken by an earlier one for a typo.
func Misspelt(key, near string) bool {
	return strings.EqualFold(key, near) || distance(strings.ToUpper(key), near) <= misspeltWithin(near)
}

func misspeltWithin(known string) int { return max(2, len(known)/3) }

// closest returns the candidate with the smallest edit distance to s.
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := distance(strings.ToUpper(s), c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
