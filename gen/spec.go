// Package gen holds the typed spec of the openwatch package and renders, from
// it and the embedded templates, every maintainer script, helper, unit file,
// config file and nfpm.yaml. Render is pure; Write and Check touch the disk.
package gen

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode"
)

// Spec is everything the rendered files need to know about the package.
// A path or a unit name is written here once and reaches both formats.
type Spec struct {
	Name        string // package name
	Version     string // default version (make packages overrides it)
	Release     string // default release
	Maintainer  string
	Summary     string // one line, under 80 characters
	Description string // a paragraph; wrapped when rendered
	Homepage    string
	Copyright   string // notice for the Debian copyright file
	License     string
	Vendor      string

	User  string // system user the service runs as
	Group string // system group that may read the config

	Paths Paths
	Units Units

	Backup Backup

	// Gate is the package managers' own check before a transaction that
	// brings a new package (apt's DPkg::Pre-Install-Pkgs hook, the dnf
	// plugin) and the dnf plugin's report after it.
	Gate Gate

	// Package relations.
	DebDepends  []string
	RPMRequires []string

	// BinarySource is the nfpm.yaml source of the binary, relative to the
	// directory holding nfpm.yaml (pkgbuild replaces it with Options.Binary).
	BinarySource string
	// DistDir is where generated files go, relative to the output root.
	DistDir string
	// RunbookSource is the operator runbook, relative to the output root.
	RunbookSource string
}

// Paths are absolute paths on the installed system.
type Paths struct {
	Binary      string // the openwatch binary
	LibDir      string // helper scripts
	ConfigDir   string
	ConfigFile  string // upgrade.conf
	SecretsFile string // written by the operator, not shipped
	StateDir    string // the service account's own directory (it may write there)
	// UpgradeDir is root's state directory: only root writes there (the
	// service's group may read it). Journal and the clone timing live here.
	UpgradeDir    string
	Journal       string // upgrade journal: the last upgrade's phase, outcome, service state and recovery command; in UpgradeDir
	BackupDir     string // restore points
	UnitDir       string // systemd system unit directory
	SystemdRunDir string // exists when systemd is the running init
	LintianDir    string // lintian overrides directory
	DocDir        string // the runbook and, on DEB, the copyright file
	AptConfDir    string // apt's configuration fragments (the gate's hook)
	// Motd is the login message (pam_motd reads /run/motd.d/) the helper
	// writes while an upgrade has failed or is unfinished.
	Motd string
}

// Units are systemd unit names.
type Units struct {
	App      string // the appliance's service (not shipped; we ship a drop-in)
	Database string // the drop-in orders the app after it
	Cleanup  string // base name of the cleanup service and timer
	// Export is the transient service (systemd-run) in which the helper
	// exports a clone restore point to a file once the app runs again.
	Export string
	// Timer schedule for the cleanup.
	OnCalendar      string
	RandomizedDelay string
	// DropIn is the file name of the start guard in App's .d directory.
	DropIn string
}

// Backup holds the defaults written into upgrade.conf.
type Backup struct {
	Auto          bool
	RetentionDays int
	Compression   int    // pg_dump -Z level
	LockTimeout   int    // seconds
	DatabaseWait  int    // seconds to wait for an unreachable database
	LockWait      int    // seconds a migration waits for a table or row lock (MIGRATION_LOCK_WAIT)
	RestorePoint  string // auto, clone or file (RESTORE_POINT)
	// Rehearse: auto, yes or no (REHEARSE): whether migrate --preflight
	// rehearses the migrations on a scratch copy of the database.
	Rehearse string
	// RehearseAutoMaxMB: REHEARSE=auto rehearses a database of at most this
	// many MiB (pg_database_size); a larger one's copy takes too long.
	RehearseAutoMaxMB int
	// MetricsDir (METRICS_DIR): where openwatch.prom is written for
	// node_exporter's textfile collector; empty: not written (the default;
	// upgrade.conf names Debian's directory, MetricsDirExample).
	MetricsDir string
}

// MetricsDirExample is node_exporter's textfile directory on Debian
// (prometheus-node-exporter's --collector.textfile.directory; root:root
// 0755), which upgrade.conf and the docs suggest for METRICS_DIR.
func (s *Spec) MetricsDirExample() string { return "/var/lib/prometheus/node-exporter" }

// Gate names the pre-transaction gate's pieces.
type Gate struct {
	AptConf   string // file name of the apt hook in Paths.AptConfDir
	DNFPlugin string // the dnf plugin's name: its module <name>.py and what --disableplugin takes
	SkipEnv   string // environment variable that skips the gate for one run when set to 1
	// RPMTargets are the RPMs `make packages` builds, one per dnf the
	// plugin must sit beside: the first is the nfpm.yaml default.
	RPMTargets []RPMTarget
}

// RPMTarget is one RPM build: a dist tag appended to the release (the
// convention EL operators know: 1.el9), the directory from which that
// distribution's dnf 4 loads its plugins (its Python's site-packages) and
// that Python's version, which the RPM requires as python(abi) = X.Y, so
// that dnf refuses the RPM built for another release.
type RPMTarget struct {
	Dist      string // "el9"; empty: no tag
	PluginDir string
	Python    string // "3.9"; empty: no python(abi) requirement
}

// Derived names.

// UpgradeHelper is the installed path of openwatch-upgrade.sh.
func (s *Spec) UpgradeHelper() string { return path.Join(s.Paths.LibDir, "openwatch-upgrade.sh") }

// CleanupService is the cleanup service unit name.
func (s *Spec) CleanupService() string { return s.Units.Cleanup + ".service" }

// CleanupTimer is the cleanup timer unit name.
func (s *Spec) CleanupTimer() string { return s.Units.Cleanup + ".timer" }

// Runbook is the installed path of UPGRADING.md.
func (s *Spec) Runbook() string { return path.Join(s.Paths.DocDir, path.Base(s.RunbookSource)) }

// RestorePointFile is the name pattern of restore point files:
// {package}, {schema} and {time} stand for the package version, the schema
// version and the UTC time (docs/INTERFACES.md).
func (s *Spec) RestorePointFile() string { return s.Name + "_{package}_schema-{schema}_{time}.dump" }

// RestorePointClone is the name pattern of clone restore points (databases):
// a plain lower-case identifier, so the package name's "-" becomes "_";
// {schema} and {time} as in RestorePointFile.
func (s *Spec) RestorePointClone() string {
	return strings.ReplaceAll(s.Name, "-", "_") + "_rp_{schema}_{time}"
}

// GateScript is the installed path of the pre-transaction gate.
func (s *Spec) GateScript() string { return path.Join(s.Paths.LibDir, "openwatch-gate.sh") }

// AptHook is the installed path of the apt configuration that runs the gate.
func (s *Spec) AptHook() string { return path.Join(s.Paths.AptConfDir, s.Gate.AptConf) }

// DNFPluginFile is the plugin's file name.
func (s *Spec) DNFPluginFile() string { return s.Gate.DNFPlugin + ".py" }

// DNFPluginPath is where the plugin goes in nfpm.yaml: the first target's
// directory (internal/pkgbuild moves it for the others).
func (s *Spec) DNFPluginPath() string {
	return path.Join(s.Gate.RPMTargets[0].PluginDir, s.DNFPluginFile())
}

// GuardRecord is where the start guard records a refused start: the guard
// runs as the service's account, so in that account's own directory; root
// reads it as data (internal/journal), never follows or copies it.
func (s *Spec) GuardRecord() string { return path.Join(s.Paths.StateDir, "start-refused") }

// LegacyJournal is where releases before UpgradeDir kept the journal: the
// binary imports it, validated, only when it is root's regular file.
func (s *Spec) LegacyJournal() string { return path.Join(s.Paths.StateDir, "upgrade.state") }

// BackupDirLink is where the maintainer scripts remember an operator's
// symlink at BACKUP_DIR across an upgrade (root's directory).
func (s *Spec) BackupDirLink() string { return path.Join(s.Paths.UpgradeDir, "backup-dir.symlink") }

// DropInPath is the installed path of the start guard drop-in.
func (s *Spec) DropInPath() string {
	return path.Join(s.Paths.UnitDir, s.Units.App+".d", s.Units.DropIn)
}

// Default returns the spec of the openwatch package as shipped.
func Default() *Spec {
	return &Spec{
		Name:       "openwatch",
		Version:    "1.0.0",
		Release:    "1",
		Maintainer: "openwatch maintainers <maintainers@openwatch.example>",
		Summary:    "Safe database upgrades and restore points for the appliance",
		Description: "Ships the openwatch binary (dbmate schema migrations and pg_dump restore points), " +
			"the helper that package upgrades run to back up, migrate and restart the service, " +
			"a daily timer that prunes old restore points, and a drop-in that keeps " +
			"openwatch.service from starting against a schema it does not match.",
		Homepage:  "https://openwatch.example",
		Copyright: "2026 openwatch maintainers",
		License:   "Apache-2.0",
		Vendor:    "openwatch",
		User:      "openwatch",
		Group:     "openwatch",
		Paths: Paths{
			Binary:        "/usr/bin/openwatch",
			LibDir:        "/usr/lib/openwatch",
			ConfigDir:     "/etc/openwatch",
			ConfigFile:    "/etc/openwatch/upgrade.conf",
			SecretsFile:   "/etc/openwatch/secrets.env",
			StateDir:      "/var/lib/openwatch",
			UpgradeDir:    "/var/lib/openwatch-upgrade",
			Journal:       "/var/lib/openwatch-upgrade/upgrade.state",
			BackupDir:     "/var/backups/openwatch",
			UnitDir:       "/usr/lib/systemd/system",
			SystemdRunDir: "/run/systemd/system",
			LintianDir:    "/usr/share/lintian/overrides",
			DocDir:        "/usr/share/doc/openwatch",
			AptConfDir:    "/etc/apt/apt.conf.d",
			Motd:          "/run/motd.d/openwatch",
		},
		Units: Units{
			App:             "openwatch.service",
			Database:        "postgresql.service",
			Cleanup:         "openwatch-backup-cleanup",
			Export:          "openwatch-export.service",
			OnCalendar:      "daily",
			RandomizedDelay: "1h",
			DropIn:          "50-schema-guard.conf",
		},
		Backup: Backup{
			Auto:          true,
			RetentionDays: 30,
			Compression:   1,
			LockTimeout:   300,
			DatabaseWait:  30,
			LockWait:      30,
			RestorePoint:  "auto",
			Rehearse:      "auto",
			// pg_dump | pg_restore copied 266 MB in 8 s here
			// (docs/BENCHMARKS.md, the 261MB run): 2 GiB, about a minute
			// here, stays a copy of minutes, not hours, on slower disks.
			RehearseAutoMaxMB: 2048,
		},
		Gate: Gate{
			AptConf:   "50openwatch-gate",
			DNFPlugin: "openwatch",
			SkipEnv:   "OPENWATCH_SKIP_GATE",
			// dnf 4 runs on the platform Python: EL 8 3.6, EL 9 3.9, EL 10 3.12.
			RPMTargets: []RPMTarget{
				{Dist: "el9", PluginDir: "/usr/lib/python3.9/site-packages/dnf-plugins", Python: "3.9"},
				{Dist: "el8", PluginDir: "/usr/lib/python3.6/site-packages/dnf-plugins", Python: "3.6"},
				{Dist: "el10", PluginDir: "/usr/lib/python3.12/site-packages/dnf-plugins", Python: "3.12"},
			},
		},
		// init-system-helpers: deb-systemd-helper and deb-systemd-invoke,
		// which the DEB systemd snippets call (dh_installsystemd adds the
		// same dependency through ${misc:Depends}).
		DebDepends: []string{"postgresql-client | postgresql-client-15 | postgresql-client-16 | postgresql-client-17", "init-system-helpers (>= 1.54~)"},
		// cpio: the gate unpacks the incoming package's binary with rpm2cpio | cpio.
		RPMRequires:   []string{"postgresql", "cpio"},
		BinarySource:  "build/openwatch",
		DistDir:       "dist",
		RunbookSource: "docs/UPGRADING.md",
	}
}

// Validation errors. Errors returned by Validate wrap one of these and name
// the field.
var (
	ErrEmpty       = errors.New("must not be empty")
	ErrControlChar = errors.New("must not contain newlines or other control characters")
	ErrNotAbsolute = errors.New("must be an absolute, clean path")
	ErrBadUnitName = errors.New("is not a systemd unit name")
	ErrBadName     = errors.New("is not a valid name")
	ErrOutOfRange  = errors.New("is out of range")
	// ErrNotInUpgradeDir: root's state must be in a directory of its own,
	// apart from the service account's.
	ErrNotInUpgradeDir = errors.New("must be in Paths.UpgradeDir, which must be apart from Paths.StateDir")
)

// FieldError says which spec field failed validation and why.
type FieldError struct {
	Field string
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("spec field %s (%q) %v", e.Field, e.Value, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

var (
	pkgNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// A clone restore point's name: a plain lower-case SQL identifier.
	cloneNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*_rp_\{schema\}_\{time\}$`)
	userRE      = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	versionRE   = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	releaseRE   = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	unitRE      = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+\.(service|socket|target|timer|mount|path)$`)
	unitBaseRE  = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+$`)
	dropInRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]+\.conf$`)
	calendarRE  = regexp.MustCompile(`^[A-Za-z0-9 :*,./~-]+$`)
	timespanRE  = regexp.MustCompile(`^[0-9]+ ?(us|ms|s|sec|m|min|h|hr|d|day|w)?$`)
	aptConfRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`) // apt reads only such names from apt.conf.d
	pyModuleRE  = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	envNameRE   = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	distRE      = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	pythonRE    = regexp.MustCompile(`^3\.[0-9]+$`)
	relRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 |().,:=<>+~-]*$`)
)

// Validate checks every field. Each problem is a *FieldError wrapping one of
// the sentinel errors; all of them are returned, joined.
func (s *Spec) Validate() error {
	var errs []error
	text := func(field, v string) {
		if v == "" {
			errs = append(errs, &FieldError{field, v, ErrEmpty})
			return
		}
		if strings.IndexFunc(v, unicode.IsControl) >= 0 {
			errs = append(errs, &FieldError{field, v, ErrControlChar})
		}
	}
	match := func(field, v string, re *regexp.Regexp, err error) {
		if v == "" {
			errs = append(errs, &FieldError{field, v, ErrEmpty})
		} else if !re.MatchString(v) {
			errs = append(errs, &FieldError{field, v, err})
		}
	}
	abs := func(field, v string) {
		text(field, v)
		if v != "" && (!path.IsAbs(v) || path.Clean(v) != v || v == "/") {
			errs = append(errs, &FieldError{field, v, ErrNotAbsolute})
		}
	}
	rel := func(field, v string) {
		text(field, v)
		if v != "" && (path.IsAbs(v) || path.Clean(v) != v || strings.HasPrefix(v, "..")) {
			errs = append(errs, &FieldError{field, v, ErrNotAbsolute})
		}
	}
	positive := func(field string, v, max int) {
		if v < 1 || v > max {
			errs = append(errs, &FieldError{field, fmt.Sprint(v), ErrOutOfRange})
		}
	}

	match("Name", s.Name, pkgNameRE, ErrBadName)
	if !cloneNameRE.MatchString(s.RestorePointClone()) {
		// The clone restore point is a database an operator names unquoted.
		errs = append(errs, &FieldError{"Name", s.Name, ErrBadName})
	}
	match("Version", s.Version, versionRE, ErrBadName)
	match("Release", s.Release, releaseRE, ErrBadName)
	text("Maintainer", s.Maintainer)
	text("Summary", s.Summary)
	if len(s.Summary) > 79 {
		errs = append(errs, &FieldError{"Summary", s.Summary, ErrOutOfRange})
	}
	text("Description", s.Description)
	text("Homepage", s.Homepage)
	text("Copyright", s.Copyright)
	text("License", s.License)
	text("Vendor", s.Vendor)
	match("User", s.User, userRE, ErrBadName)
	match("Group", s.Group, userRE, ErrBadName)

	p := s.Paths
	abs("Paths.Binary", p.Binary)
	abs("Paths.LibDir", p.LibDir)
	abs("Paths.ConfigDir", p.ConfigDir)
	abs("Paths.ConfigFile", p.ConfigFile)
	abs("Paths.SecretsFile", p.SecretsFile)
	abs("Paths.StateDir", p.StateDir)
	abs("Paths.UpgradeDir", p.UpgradeDir)
	abs("Paths.Journal", p.Journal)
	if p.Journal != "" && path.Dir(p.Journal) != p.UpgradeDir {
		errs = append(errs, &FieldError{"Paths.Journal", p.Journal, ErrNotInUpgradeDir})
	}
	if p.UpgradeDir != "" && (p.UpgradeDir == p.StateDir || strings.HasPrefix(p.UpgradeDir+"/", p.StateDir+"/") || strings.HasPrefix(p.StateDir+"/", p.UpgradeDir+"/")) {
		errs = append(errs, &FieldError{"Paths.UpgradeDir", p.UpgradeDir, ErrNotInUpgradeDir})
	}
	abs("Paths.BackupDir", p.BackupDir)
	abs("Paths.UnitDir", p.UnitDir)
	abs("Paths.SystemdRunDir", p.SystemdRunDir)
	abs("Paths.LintianDir", p.LintianDir)
	abs("Paths.DocDir", p.DocDir)
	abs("Paths.AptConfDir", p.AptConfDir)

	g := s.Gate
	match("Gate.AptConf", g.AptConf, aptConfRE, ErrBadName)
	match("Gate.DNFPlugin", g.DNFPlugin, pyModuleRE, ErrBadName)
	match("Gate.SkipEnv", g.SkipEnv, envNameRE, ErrBadName)
	if len(g.RPMTargets) == 0 {
		errs = append(errs, &FieldError{"Gate.RPMTargets", "", ErrEmpty})
	}
	for i, t := range g.RPMTargets {
		if t.Dist != "" && !distRE.MatchString(t.Dist) {
			errs = append(errs, &FieldError{fmt.Sprintf("Gate.RPMTargets[%d].Dist", i), t.Dist, ErrBadName})
		}
		abs(fmt.Sprintf("Gate.RPMTargets[%d].PluginDir", i), t.PluginDir)
		if t.Python != "" && !pythonRE.MatchString(t.Python) {
			errs = append(errs, &FieldError{fmt.Sprintf("Gate.RPMTargets[%d].Python", i), t.Python, ErrBadName})
		}
	}

	abs("Paths.Motd", p.Motd)

	u := s.Units
	match("Units.App", u.App, unitRE, ErrBadUnitName)
	match("Units.Database", u.Database, unitRE, ErrBadUnitName)
	match("Units.Cleanup", u.Cleanup, unitBaseRE, ErrBadUnitName)
	match("Units.Export", u.Export, unitRE, ErrBadUnitName)
	match("Units.OnCalendar", u.OnCalendar, calendarRE, ErrBadName)
	match("Units.RandomizedDelay", u.RandomizedDelay, timespanRE, ErrBadName)
	match("Units.DropIn", u.DropIn, dropInRE, ErrBadName)

	positive("Backup.RetentionDays", s.Backup.RetentionDays, 36500)
	if s.Backup.Compression < 0 || s.Backup.Compression > 9 {
		errs = append(errs, &FieldError{"Backup.Compression", fmt.Sprint(s.Backup.Compression), ErrOutOfRange})
	}
	positive("Backup.LockTimeout", s.Backup.LockTimeout, 86400)
	positive("Backup.LockWait", s.Backup.LockWait, 86400)
	switch s.Backup.RestorePoint {
	case "auto", "clone", "file":
	default:
		errs = append(errs, &FieldError{"Backup.RestorePoint", s.Backup.RestorePoint, ErrBadName})
	}
	switch s.Backup.Rehearse {
	case "auto", "yes", "no":
	default:
		errs = append(errs, &FieldError{"Backup.Rehearse", s.Backup.Rehearse, ErrBadName})
	}
	positive("Backup.RehearseAutoMaxMB", s.Backup.RehearseAutoMaxMB, 1<<30)
	if s.Backup.MetricsDir != "" { // empty: off
		abs("Backup.MetricsDir", s.Backup.MetricsDir)
	}
	if s.Backup.DatabaseWait < 0 || s.Backup.DatabaseWait > 3600 {
		errs = append(errs, &FieldError{"Backup.DatabaseWait", fmt.Sprint(s.Backup.DatabaseWait), ErrOutOfRange})
	}

	for i, d := range s.DebDepends {
		match(fmt.Sprintf("DebDepends[%d]", i), d, relRE, ErrBadName)
	}
	for i, d := range s.RPMRequires {
		match(fmt.Sprintf("RPMRequires[%d]", i), d, relRE, ErrBadName)
	}
	rel("BinarySource", s.BinarySource)
	rel("DistDir", s.DistDir)
	rel("RunbookSource", s.RunbookSource)
	return errors.Join(errs...)
}
