package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAMissingUpgradeConfMeansDefaults(t *testing.T) {
	t.Setenv(DSNVar, "")
	c, err := Load(filepath.Join(t.TempDir(), "absent.conf"), filepath.Join(t.TempDir(), "absent.env"))
	if err != nil {
		t.Fatal(err)
	}
	c.SecretsPath = ""
	if d := Defaults(); c.AutoBackup != d.AutoBackup || c.BackupDir != d.BackupDir || c.MigrateLockTimeout != d.MigrateLockTimeout || c.DSN != "" {
		t.Fatalf("got %+v, want defaults %+v", c, d)
	}
}

func TestUpgradeConfValuesAreRead(t *testing.T) {
	t.Setenv(DSNVar, "")
	conf := write(t, "upgrade.conf", "# comment\nAUTO_BACKUP=no\nBACKUP_DIR='/srv/ow backups'\nBACKUP_RETENTION_DAYS=7\nBACKUP_COMPRESSION=zstd:3\nMIGRATE_LOCK_TIMEOUT=5\n")
	c, err := Load(conf, "/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if c.AutoBackup || c.BackupDir != "/srv/ow backups" || c.RetentionDays != 7 || c.BackupCompression != "zstd:3" || c.MigrateLockTimeout != 5*time.Second {
		t.Fatalf("got %+v", c)
	}
}

func TestInvalidUpgradeConfValuesAreRefusedByName(t *testing.T) {
	t.Setenv(DSNVar, "")
	for _, line := range []string{"AUTO_BACKUP=maybe", "BACKUP_DIR=relative/dir", "MIGRATE_LOCK_TIMEOUT=5m", "BACKUP_COMPRESSION=11"} {
		_, err := Load(write(t, "upgrade.conf", line+"\n"), "/nonexistent")
		key := strings.SplitN(line, "=", 2)[0]
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: err = %v, want an error naming %s", line, err, key)
		}
	}
}

func TestTheEnvironmentDSNWinsOverSecretsEnv(t *testing.T) {
	secrets := write(t, "secrets.env", "OPENWATCH_DATABASE_DSN=host=file\n")
	t.Setenv(DSNVar, "host=env")
	c, err := Load("/nonexistent", secrets)
	if err != nil || c.DSN != "host=env" {
		t.Fatalf("DSN = %q, %v; want the environment's", c.DSN, err)
	}
	t.Setenv(DSNVar, "")
	c, err = Load("/nonexistent", secrets)
	if err != nil || c.DSN != "host=file" {
		t.Fatalf("DSN = %q, %v; want the file's", c.DSN, err)
	}
}

func TestSecretsEnvQuotingYieldsTheExactDSN(t *testing.T) {
	t.Setenv(DSNVar, "")
	want := `host=/run/postgresql dbname=ow user=ow password='p a$s\'w"o\\r:d@/?#%'`
	secrets := write(t, "secrets.env", "OPENWATCH_DATABASE_DSN=\""+strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(want)+"\"\n")
	c, err := Load("/nonexistent", secrets)
	if err != nil || c.DSN != want {
		t.Fatalf("DSN = %q, %v; want %q", c.DSN, err, want)
	}
}

func TestAnExportLineIsReportedNotSilentlyDropped(t *testing.T) {
	t.Setenv(DSNVar, "")
	c, err := Load("/nonexistent", write(t, "secrets.env", "export OPENWATCH_DATABASE_DSN=host=x\n"))
	if err != nil || c.DSN != "" || len(c.Warnings) != 1 || strings.Contains(c.Warnings[0], "host=x") {
		t.Fatalf("DSN %q warnings %q err %v", c.DSN, c.Warnings, err)
	}
}

func TestAWorldReadableSecretsFileIsReported(t *testing.T) {
	t.Setenv(DSNVar, "")
	p := write(t, "secrets.env", "OPENWATCH_DATABASE_DSN=host=x\n")
	os.Chmod(p, 0o644)
	c, err := Load("/nonexistent", p)
	if err != nil || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "chmod 0640") {
		t.Fatalf("warnings %q, err %v", c.Warnings, err)
	}
	os.Chmod(p, 0o640)
	if c, _ := Load("/nonexistent", p); len(c.Warnings) != 0 {
		t.Fatalf("warnings for a private file: %q", c.Warnings)
	}
}

// The upgrade.conf the packages ship (rendered by gen) must load cleanly.
func TestTheShippedUpgradeConfLoadsWithoutWarnings(t *testing.T) {
	t.Setenv(DSNVar, "host=x")
	if _, err := os.Stat("../../dist/upgrade.conf"); err != nil {
		t.Fatal(err)
	}
	c, err := Load("../../dist/upgrade.conf", "/nonexistent")
	if err != nil || len(c.Warnings) != 0 {
		t.Fatalf("err %v, warnings %q", err, c.Warnings)
	}
	want := Defaults()
	want.DSN, want.SecretsPath, want.DSNSource, want.Warnings = c.DSN, c.SecretsPath, c.DSNSource, c.Warnings
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("the shipped upgrade.conf differs from the binary's defaults (change gen/spec.go or config's constants so they agree):\n shipped %+v\n default %+v", c, want)
	}
}

func TestAnUnreadableSecretsFileIsASecretsError(t *testing.T) {
	t.Setenv(DSNVar, "")
	dir := filepath.Join(t.TempDir(), "secrets.env")
	os.Mkdir(dir, 0o700) // reading a directory fails even for root
	_, err := Load("/nonexistent", dir)
	var se *SecretsError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SecretsError", err)
	}
}

func TestABrokenUpgradeConfStillYieldsTheDSN(t *testing.T) {
	t.Setenv(DSNVar, "host=env")
	c, err := Load(write(t, "upgrade.conf", "AUTO_BACKUP=perhaps\n"), "/nonexistent")
	var ce *ConfError
	if !errors.As(err, &ce) || c.DSN != "host=env" {
		t.Fatalf("DSN %q, err %v; want the DSN and a *ConfError", c.DSN, err)
	}
}

func TestAnUnknownKeyIsAnErrorNamingTheClosestKnownOne(t *testing.T) {
	t.Setenv(DSNVar, "host=x")
	_, err := Load(write(t, "upgrade.conf", "BACKUP_RETENTON_DAYS=3\nauto_backup=no\n"), "/nonexistent")
	var ce *ConfError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConfError", err)
	}
	for _, want := range []string{"unknown setting BACKUP_RETENTON_DAYS (did you mean BACKUP_RETENTION_DAYS?)", "unknown setting auto_backup (did you mean AUTO_BACKUP?)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
}

func TestALaterVersionsSettingIsIgnoredWithAWarningNamingIt(t *testing.T) {
	t.Setenv(DSNVar, "host=x")
	c, err := Load(write(t, "upgrade.conf", "REHEARSE=no\nMETRICS_EXPORT_DIR=/srv/m\nBACKUP_ENCRYPTION_KEYFILE=/k\n"), "/nonexistent")
	if err != nil {
		t.Fatalf("err = %v, want a later version's settings ignored", err)
	}
	if c.Rehearse != "no" {
		t.Errorf("REHEARSE = %q, want the known setting still read", c.Rehearse)
	}
	got := strings.Join(c.Warnings, "\n")
	for _, k := range []string{"ignoring BACKUP_ENCRYPTION_KEYFILE: not a setting of openwatch", "ignoring METRICS_EXPORT_DIR: not a setting of openwatch"} {
		if !strings.Contains(got, k) {
			t.Errorf("warnings %q, want one saying %q", got, k)
		}
	}
}

func TestAMisspeltSettingStaysAnErrorEvenBesideALaterVersionsOne(t *testing.T) {
	t.Setenv(DSNVar, "host=x")
	for line, want := range map[string]string{
		"REHERSE=no":            "unknown setting REHERSE (did you mean REHEARSE?)",
		"BACKUP_RETENTION=3":    "unknown setting BACKUP_RETENTION (did you mean BACKUP_RETENTION_DAYS?)",
		"Rehearse=no":           "unknown setting Rehearse (did you mean REHEARSE?)",
		"AUTOBACKUP=no":         "unknown setting AUTOBACKUP (did you mean AUTO_BACKUP?)",
		"MIGRATE_LOCK_TIMEOT=5": "unknown setting MIGRATE_LOCK_TIMEOT (did you mean MIGRATE_LOCK_TIMEOUT?)",
		"backup_encryption=yes": "unknown setting backup_encryption", // not a setting's form: never a later version's
	} {
		_, err := Load(write(t, "upgrade.conf", "METRICS_EXPORT_DIR=/srv/m\n"+line+"\n"), "/nonexistent")
		var ce *ConfError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want a *ConfError saying %q", line, err, want)
		}
	}
}

// TestSettingsAreFarApart keeps the cross-version contract (docs/INTERFACES.md):
// a setting added later must not be taken by an earlier binary for a typo of
// one it knows, so every two settings are farther apart than Misspelt allows.
// A new key that fails this needs another name.
func TestSettingsAreFarApart(t *testing.T) {
	for i, a := range Keys {
		for _, b := range Keys[i+1:] {
			if Misspelt(a, b) || Misspelt(b, a) {
				t.Errorf("settings %s and %s are close enough to be taken for each other's typo (edit distance %d): rename the newer one", a, b, distance(a, b))
			}
		}
		if !settingNameRE.MatchString(a) {
			t.Errorf("setting %s does not have a setting's form %s", a, settingNameRE)
		}
	}
}

func TestAnUpgradeConfNamedExplicitlyMustExist(t *testing.T) {
	t.Setenv(DSNVar, "host=x")
	missing := filepath.Join(t.TempDir(), "upgrade.conf")
	if _, err := (LoadOptions{ConfPath: missing, SecretsPath: "/nonexistent", ConfRequired: true}).Load(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v, want one naming %s", err, missing)
	}
	if _, err := Load(missing, "/nonexistent"); err != nil {
		t.Fatalf("the default upgrade.conf may be missing: %v", err)
	}
}

func TestTheDatabaseWaitIsRead(t *testing.T) {
	t.Setenv(DSNVar, "host=x")
	c, err := Load(write(t, "upgrade.conf", "DATABASE_WAIT_TIMEOUT=0\n"), "/nonexistent")
	if err != nil || c.DatabaseWait != 0 {
		t.Fatalf("DatabaseWait %v, err %v", c.DatabaseWait, err)
	}
	if _, err := Load(write(t, "upgrade.conf", "DATABASE_WAIT_TIMEOUT=soon\n"), "/nonexistent"); err == nil || !strings.Contains(err.Error(), "DATABASE_WAIT_TIMEOUT") {
		t.Fatalf("err = %v", err)
	}
}

func TestMessagesCanNameWhereTheDSNCameFrom(t *testing.T) {
	secrets := write(t, "secrets.env", "OPENWATCH_DATABASE_DSN=host=file\n")
	t.Setenv(DSNVar, "")
	if c, _ := Load("/nonexistent", secrets); c.DSNSource != secrets {
		t.Errorf("DSNSource = %q, want %s", c.DSNSource, secrets)
	}
	t.Setenv(DSNVar, "host=env")
	if c, _ := Load("/nonexistent", secrets); c.DSNSource != "the environment" {
		t.Errorf("DSNSource = %q, want the environment", c.DSNSource)
	}
}

func TestTheMigrationLockWaitIsRead(t *testing.T) {
	if c := Defaults(); c.MigrationLockWait != 30*time.Second {
		t.Fatalf("default MigrationLockWait %v, want 30s", c.MigrationLockWait)
	}
	c, err := Load(write(t, "upgrade.conf", "MIGRATION_LOCK_WAIT=5\n"), "/nonexistent")
	if err != nil || c.MigrationLockWait != 5*time.Second {
		t.Fatalf("MigrationLockWait %v, err %v", c.MigrationLockWait, err)
	}
	for _, bad := range []string{"0", "soon", "86401"} {
		if _, err := Load(write(t, "upgrade.conf", "MIGRATION_LOCK_WAIT="+bad+"\n"), "/nonexistent"); err == nil || !strings.Contains(err.Error(), "MIGRATION_LOCK_WAIT") {
			t.Fatalf("MIGRATION_LOCK_WAIT=%s: err %v", bad, err)
		}
	}
}

func TestRehearseIsReadStrictly(t *testing.T) {
	t.Setenv(DSNVar, "")
	if c := Defaults(); c.Rehearse != "auto" {
		t.Fatalf("default Rehearse %q, want auto", c.Rehearse)
	}
	for _, v := range []string{"auto", "yes", "no"} {
		c, err := Load(write(t, "upgrade.conf", "REHEARSE="+v+"\n"), "/nonexistent")
		if err != nil || c.Rehearse != v {
			t.Fatalf("REHEARSE=%s: Rehearse %q, err %v", v, c.Rehearse, err)
		}
	}
	for _, bad := range []string{"maybe", "Yes", "true"} {
		_, err := Load(write(t, "upgrade.conf", "REHEARSE="+bad+"\n"), "/nonexistent")
		var ce *ConfError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), `REHEARSE="`+bad+`": want auto, yes or no`) {
			t.Fatalf("REHEARSE=%s: err %v", bad, err)
		}
	}
	_, err := Load(write(t, "upgrade.conf", "REHERSE=yes\n"), "/nonexistent")
	if err == nil || !strings.Contains(err.Error(), "did you mean REHEARSE?") {
		t.Fatalf("a misspelt REHEARSE: %v", err)
	}
}

func TestMetricsDirIsOffByDefaultAndMustBeAbsolute(t *testing.T) {
	if c, err := Load("/nonexistent", "/nonexistent"); err != nil || c.MetricsDir != "" {
		t.Fatalf("defaults: MetricsDir %q, err %v", c.MetricsDir, err)
	}
	for _, v := range []string{"", "''"} {
		if c, err := Load(write(t, "upgrade.conf", "METRICS_DIR="+v+"\n"), "/nonexistent"); err != nil || c.MetricsDir != "" {
			t.Fatalf("METRICS_DIR=%s: MetricsDir %q, err %v", v, c.MetricsDir, err)
		}
	}
	c, err := Load(write(t, "upgrade.conf", "METRICS_DIR=/var/lib/prometheus/node-exporter\n"), "/nonexistent")
	if err != nil || c.MetricsDir != "/var/lib/prometheus/node-exporter" {
		t.Fatalf("MetricsDir %q, err %v", c.MetricsDir, err)
	}
	for _, bad := range []string{"node-exporter", "/var/lib/../tmp", "/", "/var/lib/prometheus/node-exporter/"} {
		_, err := Load(write(t, "upgrade.conf", "METRICS_DIR="+bad+"\n"), "/nonexistent")
		var ce *ConfError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), `METRICS_DIR="`+bad+`": must be an absolute path`) {
			t.Errorf("METRICS_DIR=%s: err %v", bad, err)
		}
	}
	if _, err := Load(write(t, "upgrade.conf", "METRIC_DIR=/x\n"), "/nonexistent"); err == nil || !strings.Contains(err.Error(), "did you mean METRICS_DIR?") {
		t.Errorf("a misspelt METRICS_DIR: %v", err)
	}
}
