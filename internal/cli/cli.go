// Package cli is the openwatch command line: flag parsing, exit codes and the
// messages operators read. The work itself lives in config, dsn, migrate and
// dump.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/version"
	"github.com/openwatch/openwatch/migrations"
)

// Exit codes, stable: the upgrade helper branches on them.
const (
	ExitOK           = 0
	ExitError        = 1
	ExitUsage        = 2
	ExitPending      = 10 // migrate --check: migrations pending
	ExitNewer        = 11 // the database holds versions this binary does not know
	ExitUnreachable  = 12 // database unreachable or not configured
	ExitBackupFailed = 13 // the restore point could not be (or, for --preflight, would not be) taken; nothing applied
	ExitChecksum     = 14 // an applied migration differs from the shipped file; nothing applied
	ExitInterrupted  = 15 // migrate stopped by a signal after the migration in progress
	ExitFailed       = 16 // a migration failed and was rolled back
	ExitFailedPartly = 17 // a transaction:false migration failed; it may have left objects behind
	ExitLockTimeout  = 18 // a lock wait timed out; nothing more was applied
	ExitConfig       = 19 // upgrade.conf, secrets.env or the DSN is invalid
	ExitNoRehearsal  = 20 // the rehearsal could not run (no CREATEDB, no room on the server, the copy failed); nothing changed
)

const exitCodes = `Exit codes:
  0   success; for --check: schema at this binary's head; for --preflight: ready
  1   other error
  2   usage error
  10  --check: migrations pending
  11  the database holds versions this binary does not know (downgrade); nothing applied
  12  database unreachable or not configured
  13  the restore point could not be taken (--preflight: would not be); nothing applied
  14  an applied migration differs from the file this binary ships (named, with
      both checksums); nothing applied
  15  interrupted (SIGTERM/SIGINT/SIGHUP): the migration in progress completed, no later one ran
  16  a migration failed and was rolled back; the ones before it stay applied
      (--rehearse, --preflight: would fail; nothing was changed)
  17  a transaction:false migration failed and may have left objects behind (named)
      (--rehearse, --preflight: would fail so; nothing was changed)
  18  a lock wait timed out (another migrate, or a session holding a table lock:
      MIGRATION_LOCK_WAIT; the blocking session is named)
  19  invalid configuration (upgrade.conf, secrets.env or the DSN)
  20  --rehearse, or --preflight with REHEARSE=yes: the rehearsal could not run
      (no CREATEDB, no room for the copy on the server, the copy failed); nothing
      was changed
  21  migrate --to: a migration on the way down has no way down (an empty down
      section, or none stored); nothing was changed; the restore point is named
`

const commonFlags = `Common flags:
  --config FILE    upgrade settings (default ` + config.DefaultConfigPath + `; missing = defaults)
  --secrets FILE   holds OPENWATCH_DATABASE_DSN (default ` + config.DefaultSecretsPath + `);
                   the OPENWATCH_DATABASE_DSN environment variable wins over the file
  --journal FILE   the upgrade journal (root's; the binary is its only writer)
  --state-dir DIR  the service account's directory (the start guard's record)
                   (default ` + config.DefaultJournalPath + `; shown by migrate --status)
`

const usage = `openwatch applies the appliance's database migrations and makes and restores
restore points.

Usage:
  openwatch migrate [--check | --preflight | --rehearse | --status [--json]] [--backup-dir DIR | --no-backup]
  openwatch backup  [--dir DIR | --list | --prune | --export]
  openwatch restore [--yes] FILE|CLONE
  openwatch --version
  openwatch COMMAND --help

` + commonFlags + `
` + exitCodes

// help is each command's --help text.
var help = map[string]string{
	"migrate": `Usage: openwatch migrate [--check | --preflight | --rehearse | --status [--json] | --to VERSION] [--backup-dir DIR | --no-backup]

Without flags: take a restore point when migrations are pending and the schema
is not empty (AUTO_BACKUP=yes in upgrade.conf, or --backup-dir DIR), then apply
the pending migrations, one at a time, under a database lock. SIGTERM or SIGINT
stops it after the migration in progress (exit 15).

  --check          only report, by exit code, whether migrations are pending
                   (the service's start guard runs this)
  --preflight      check, without changing anything, everything the migration
                   needs: both config files, the database and the role's
                   privileges, pg_dump and its compression setting, the backup
                   directory and its free space, and (REHEARSE in upgrade.conf)
                   the rehearsal (the upgrade helper runs this before it stops
                   the service)
  --rehearse       while the service runs, apply the pending migrations to a
                   scratch copy of the database (pg_dump | pg_restore into a new
                   database, dropped afterwards, also on SIGTERM/SIGINT/SIGHUP) and
                   report each one's success or the database's error, and its
                   time; the live database is only read. Needs CREATEDB and
                   room for the copy on the database server
  --status         show the schema version, pending and unknown migrations, the
                   restore points and the last upgrade's outcome
  --json           with --status: the same as one JSON object (an "error"
                   object on failure)
` + toHelp + `  --backup-dir DIR take the restore point in DIR (overrides BACKUP_DIR)
  --no-backup      apply without a restore point
  --guard          with --check: as the service's start guard (ExecStartPre=),
                   log a refusal at priority err with the command that
                   recovers, and record it for the upgrade helper
  --attempt KIND   the upgrade helper's run: new or retry (retry-stopped: as
                   retry); records the restore point, what the database looks
                   like after a failure, and the failure in the upgrade
                   journal; a retry reuses the earlier restore point only while
                   the database is unchanged since
  --record EVENT   keep the upgrade journal for the helper and the gate:
                   begin, stopping, stopped, migrating, succeeded, failed,
                   unfinished (with --outcome, --phase, --message), gate-refused;
                   --recovery CMD, --observed KEY=VALUE (docs/INTERFACES.md)

` + commonFlags + `
` + exitCodes,
	"backup": `Usage: openwatch backup [--dir DIR | --list | --prune | --export]

Write a restore point (a verified pg_dump archive) and print its path.

  --dir DIR   directory (default BACKUP_DIR from upgrade.conf)
  --list      list the restore points in BACKUP_DIR (or --dir), newest first;
              needs no database
  --prune     remove the restore point files in BACKUP_DIR (or --dir) older
              than BACKUP_RETENTION_DAYS, always keeping the newest, and drop
              every clone restore point but the newest, and that one too once
              its file exists (the daily cleanup timer runs this). Without a
              reachable database the files are pruned, the clones are not
              checked, and the exit code is 12
  --export    write each clone restore point (RESTORE_POINT in upgrade.conf)
              to a verified file in BACKUP_DIR (or --dir), then drop the clone;
              and compress each restore point file an upgrade wrote
              uncompressed (BACKUP_COMPRESSION), replacing it under the same
              name once verified (the upgrade helper runs this once the
              service is back)

` + commonFlags + `
` + exitCodes,
	"restore": `Usage: openwatch restore [--yes] FILE|CLONE

Replace the database with the restore point FILE, in one transaction: it either
completes or changes nothing. Stop the service first. A CLONE (a name
openwatch_rp_..., listed by migrate --status) is swapped in by renaming, in
seconds; the database it replaces is kept under a name the output gives.

  --yes   do not ask for confirmation (required when stdin is not a terminal)

` + commonFlags + `
` + exitCodes,
}

// IO is where a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// app carries what every command needs.
type app struct {
	IO
	configPath, secretsPath, journalPath string
	stateDir                             string // the service account's directory: the start guard's record
	configGiven                          bool   // --config named a file: it must exist
	commandLine                          string // how this command was run, for "run it again"
	migrations                           fs.FS
	messages                             []string // what errorf printed, for --json's error object
	reusedRestorePoint                   bool     // migrate took the earlier attempt's restore point
}

// Main runs the command line and returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	return Run(ctx, args, IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
}

// Run runs the command line with the embedded migrations.
func Run(ctx context.Context, args []string, stdio IO) int {
	a := &app{IO: stdio, migrations: migrations.FS, configPath: config.DefaultConfigPath,
		secretsPath: config.DefaultSecretsPath, journalPath: config.DefaultJournalPath,
		stateDir: filepath.Dir(defaults.GuardRecord)}
	return a.run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	a.commandLine = strings.Join(append([]string{"openwatch"}, args...), " ")
	top := a.flags("openwatch")
	showVersion := top.Bool("version", false, "print the version")
	if code, ok := a.parse(top, args, nil, usage); !ok {
		return code
	}
	if *showVersion {
		return a.version()
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(a.Stderr, usage)
		return ExitUsage
	}
	switch rest[0] {
	case "migrate":
		return a.migrate(ctx, rest[1:])
	case "backup":
		return a.backup(ctx, rest[1:])
	case "restore":
		return a.restore(ctx, rest[1:])
	case "help":
		if len(rest) > 1 && help[rest[1]] != "" {
			fmt.Fprint(a.Stdout, help[rest[1]])
		} else {
			fmt.Fprint(a.Stdout, usage)
		}
		return ExitOK
	}
	return a.usageError("unknown command %q", rest[0])
}

func (a *app) version() int {
	head := ""
	if known, err := migrate.Known(a.migrations); err == nil && len(known) > 0 {
		head = known[len(known)-1].Version
	}
	fmt.Fprintf(a.Stdout, "openwatch %s\nschema head %s\n", version.Version, head)
	return ExitOK
}

// flags returns a flag set with the common flags.
func (a *app) flags(name string) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.Func("config", "", func(v string) error {
		a.configPath, a.configGiven = v, true
		return nil
	})
	fl.StringVar(&a.secretsPath, "secrets", a.secretsPath, "")
	fl.StringVar(&a.journalPath, "journal", a.journalPath, "")
	fl.StringVar(&a.stateDir, "state-dir", a.stateDir, "")
	return fl
}

// parse parses args; with positional != nil, flags and positional arguments
// may be interleaved and the positional ones are collected.
func (a *app) parse(fl *flag.FlagSet, args []string, positional *[]string, helpText string) (int, bool) {
	for {
		err := fl.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(a.Stdout, helpText)
			return ExitOK, false
		}
		if err != nil {
			return a.usageError("%v", err), false
		}
		if positional == nil || fl.NArg() == 0 {
			return 0, true
		}
		*positional = append(*positional, fl.Arg(0))
		args = fl.Args()[1:]
	}
}

func (a *app) usageError(format string, args ...any) int {
	a.errorf(format+"\nRun 'openwatch --help' for usage.", args...)
	return ExitUsage
}

func (a *app) errorf(format string, args ...any) {
	msg := dedupLines(fmt.Sprintf(format, args...))
	a.messages = append(a.messages, msg)
	fmt.Fprintf(a.Stderr, "openwatch: %s\n", msg)
}

// RecoveryVar names the environment variable through which the upgrade
// helper tells the binary the one command that recovers from this run, so
// every message names the same command.
const RecoveryVar = "OPENWATCH_RECOVERY_COMMAND"

// next is the command a message names as the next step: the upgrade
// helper's recovery command when the helper runs us, else def.
func (a *app) next(def string) string {
	if c := os.Getenv(RecoveryVar); c != "" {
		return c
	}
	return def
}

// dedupLines drops a line equal to the one before it: drivers repeat the
// same failure once per connection attempt (TLS, then plain).
func dedupLines(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for i, l := range lines {
		if i > 0 && l == lines[i-1] && strings.TrimSpace(l) != "" {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// connection loads upgrade.conf and the DSN. On failure it prints why and
// returns the exit code. Commands that only read the schema state (needConf
// false) warn about a broken upgrade.conf instead of failing: the service's
// start guard runs migrate --check and must not be stopped by a typo there.
func (a *app) connection(needConf bool) (config.Config, *dsn.DSN, int) {
	cfg, err := config.LoadOptions{ConfPath: a.configPath, SecretsPath: a.secretsPath, ConfRequired: a.configGiven}.Load()
	var secretsErr *config.SecretsError
	var confErr *config.ConfError
	switch {
	case errors.As(err, &secretsErr):
		a.errorf("%v\nThe database is not configured for this user: run as root or as a member of the openwatch group.", err)
		return cfg, nil, ExitUnreachable
	case errors.As(err, &confErr) && !needConf:
		fmt.Fprintf(a.Stderr, "openwatch: warning: %v (not needed for this command)\n", err)
	case err != nil:
		a.errorf("invalid configuration: %v\nNothing was changed. Fix the file, then run: %s", err, a.next(a.commandLine))
		return cfg, nil, ExitConfig
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(a.Stderr, "openwatch: warning:", w)
	}
	if cfg.DSN == "" {
		a.errorf("no database configured: %s is not set in the environment or in %s.\n"+
			"Write the connection string there (as root), for example:\n"+
			"  OPENWATCH_DATABASE_DSN='postgres://openwatch:PASSWORD@localhost:5432/openwatch?sslmode=prefer'\n"+
			"keep the file private (chmod 0640 %s; chgrp openwatch %s), then run: %s",
			config.DSNVar, cfg.SecretsPath, cfg.SecretsPath, cfg.SecretsPath, a.next("openwatch migrate --check"))
		return cfg, nil, ExitUnreachable
	}
	d, err := dsn.Parse(cfg.DSN)
	if err != nil {
		a.errorf("%v\nFix it (OPENWATCH_DATABASE_DSN is in %s), then run: %s", err, cfg.DSNSource, a.next("openwatch migrate --check"))
		return cfg, nil, ExitConfig
	}
	clearLibpqEnv()
	return cfg, d, ExitOK
}

// clearLibpqEnv removes PG* variables once the DSN has absorbed them, so
// lib/pq (inside dbmate) sees exactly the settings in the URL it is given.
func clearLibpqEnv() {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PG") {
			os.Unsetenv(k)
		}
	}
}

// connect opens a session, waiting up to DATABASE_WAIT_TIMEOUT for a
// database that is not reachable yet.
func (a *app) connect(ctx context.Context, cfg config.Config, d *dsn.DSN) (*pgx.Conn, int) {
	conn, err := d.ConnectWait(ctx, cfg.DatabaseWait, func(err error) {
		fmt.Fprintf(a.Stderr, "openwatch: the database is not reachable yet (%v); waiting up to %s for it (DATABASE_WAIT_TIMEOUT in %s)…\n",
			err, cfg.DatabaseWait, a.configPath)
	})
	if err != nil {
		return nil, a.unreachable(err, cfg)
	}
	return conn, ExitOK
}

// unreachable prints a connection failure and returns ExitUnreachable.
func (a *app) unreachable(err error, cfg config.Config) int {
	a.errorf("%v\nCheck that PostgreSQL is running and that OPENWATCH_DATABASE_DSN in %s is right, then run: %s", err, cfg.DSNSource, a.next("openwatch migrate --check"))
	return ExitUnreachable
}
