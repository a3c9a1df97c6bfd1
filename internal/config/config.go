// Package config loads /etc/openwatch/upgrade.conf and the database DSN
// (OPENWATCH_DATABASE_DSN from the environment, else /etc/openwatch/secrets.env),
// both with systemd EnvironmentFile= rules.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/openwatch/openwatch/internal/envfile"
)

// Default paths and values. DefaultBackupCompression is chosen by measurement
// (docs/BENCHMARKS.md); gen's spec renders the same values into upgrade.conf.
const (
	DefaultConfigPath         = "/etc/openwatch/upgrade.conf"
	DefaultSecretsPath        = "/etc/openwatch/secrets.env"
	DefaultBackupDir          = "/var/backups/openwatch"
	DefaultRetentionDays      = 30
	DefaultBackupCompression  = "1"
	DefaultMigrateLockTimeout = 300 * time.Second
	DSNVar                    = "OPENWATCH_DATABASE_DSN"
)

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

	DSN         string // empty when not configured
	SecretsPath string // where the DSN was looked for, for messages
	Warnings    []string
}

// Defaults returns the configuration used when upgrade.conf is absent.
func Defaults() Config {
	return Config{
		AutoBackup:         true,
		BackupDir:          DefaultBackupDir,
		RetentionDays:      DefaultRetentionDays,
		BackupCompression:  DefaultBackupCompression,
		MigrateLockTimeout: DefaultMigrateLockTimeout,
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
	c := Defaults()
	c.SecretsPath = secretsPath
	confErr := c.loadConf(confPath)
	if err := c.loadDSN(secretsPath); err != nil {
		return c, err
	}
	return c, confErr
}

func (c *Config) loadConf(path string) error {
	vars, ignored, err := envfile.Read(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &ConfError{Err: err}
	}
	c.warnIgnored(path, ignored)
	if err := c.apply(vars); err != nil {
		return &ConfError{Err: fmt.Errorf("%s: %w", path, err)}
	}
	return nil
}

func (c *Config) loadDSN(secretsPath string) error {
	if dsn := os.Getenv(DSNVar); dsn != "" {
		c.DSN = dsn
		return nil
	}
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
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: ignoring %q: %s (systemd ignores it too)", path, ig.Line, ig.Key, ig.Reason))
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
	if v, ok := vars["MIGRATE_LOCK_TIMEOUT"]; ok && v != "" {
		secs, err := parseInt(v, 1, 86400)
		if err != nil {
			return fmt.Errorf("MIGRATE_LOCK_TIMEOUT=%q: %w (seconds)", v, err)
		}
		c.MigrateLockTimeout = time.Duration(secs) * time.Second
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
