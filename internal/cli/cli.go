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
	"strings"
	"syscall"

	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/version"
	"github.com/openwatch/openwatch/migrations"
)

// Exit codes, stable: the package scriptlets branch on them.
const (
	ExitOK           = 0
	ExitError        = 1
	ExitUsage        = 2
	ExitPending      = 10 // migrate --check: migrations pending
	ExitNewer        = 11 // the database holds versions this binary does not know
	ExitUnreachable  = 12 // database unreachable or not configured
	ExitBackupFailed = 13 // migrate/backup: restore point could not be taken; nothing applied
)

const usage = `openwatch applies the appliance's database migrations and makes and restores
restore points.

Usage:
  openwatch migrate [--check | --status [--json]] [--backup-dir DIR | --no-backup]
  openwatch backup  [--dir DIR]
  openwatch restore [--yes] FILE
  openwatch --version

Common flags:
  --config FILE    upgrade settings (default /etc/openwatch/upgrade.conf; missing = defaults)
  --secrets FILE   holds OPENWATCH_DATABASE_DSN (default /etc/openwatch/secrets.env);
                   the OPENWATCH_DATABASE_DSN environment variable wins over the file

migrate            take a restore point when migrations are pending and the schema is
                   not empty (AUTO_BACKUP=yes in upgrade.conf, or --backup-dir DIR),
                   then apply the pending migrations under a database lock
  --check          only report, by exit code, whether migrations are pending
  --status         show the schema version, pending and unknown migrations (--json for machines)
  --backup-dir DIR take the restore point in DIR (overrides BACKUP_DIR)
  --no-backup      apply without a restore point
backup             write a restore point and print its path
  --dir DIR        directory (default BACKUP_DIR from upgrade.conf)
restore FILE       replace the database with a restore point, in one transaction
  --yes            do not ask for confirmation (required when stdin is not a terminal)

Exit codes:
  0   success; for --check: schema at this binary's head
  1   other error (a failed migration names the restore point and the restore command)
  2   usage error
  10  --check: migrations pending
  11  the database holds versions this binary does not know (downgrade); nothing applied
  12  database unreachable or not configured
  13  the restore point could not be taken; nothing applied
`

// IO is where a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// app carries what every command needs.
type app struct {
	IO
	configPath, secretsPath string
	migrations              fs.FS
}

// Main runs the command line and returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
}

// Run runs the command line with the embedded migrations.
func Run(ctx context.Context, args []string, stdio IO) int {
	a := &app{IO: stdio, migrations: migrations.FS,
		configPath: config.DefaultConfigPath, secretsPath: config.DefaultSecretsPath}
	return a.run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	top := a.flags("openwatch")
	showVersion := top.Bool("version", false, "print the version")
	if code, ok := a.parse(top, args, nil); !ok {
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
		fmt.Fprint(a.Stdout, usage)
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
	fl.StringVar(&a.configPath, "config", a.configPath, "")
	fl.StringVar(&a.secretsPath, "secrets", a.secretsPath, "")
	return fl
}

// parse parses args; with positional != nil, flags and positional arguments
// may be interleaved and the positional ones are collected.
func (a *app) parse(fl *flag.FlagSet, args []string, positional *[]string) (int, bool) {
	for {
		err := fl.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(a.Stdout, usage)
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
	fmt.Fprintf(a.Stderr, "openwatch: "+format+"\nRun 'openwatch --help' for usage.\n", args...)
	return ExitUsage
}

func (a *app) errorf(format string, args ...any) {
	fmt.Fprintf(a.Stderr, "openwatch: "+format+"\n", args...)
}

// connection loads upgrade.conf and the DSN. On failure it prints why and
// returns the exit code. Commands that only read the schema state (needConf
// false) warn about a broken upgrade.conf instead of failing: the service's
// start guard runs migrate --check and must not be stopped by a typo there.
func (a *app) connection(needConf bool) (config.Config, *dsn.DSN, int) {
	cfg, err := config.Load(a.configPath, a.secretsPath)
	var secretsErr *config.SecretsError
	var confErr *config.ConfError
	switch {
	case errors.As(err, &secretsErr):
		a.errorf("%v\nThe database is not configured for this user: run as root or as a member of the openwatch group.", err)
		return cfg, nil, ExitUnreachable
	case errors.As(err, &confErr) && !needConf:
		fmt.Fprintf(a.Stderr, "openwatch: warning: %v (not needed for this command)\n", err)
	case err != nil:
		a.errorf("%v\nFix the file, then run the command again.", err)
		return cfg, nil, ExitError
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(a.Stderr, "openwatch: warning:", w)
	}
	if cfg.DSN == "" {
		a.errorf("no database configured: %s is not set in the environment or in %s.\n"+
			"Write the connection string there (as root), for example:\n"+
			"  OPENWATCH_DATABASE_DSN='postgres://openwatch:PASSWORD@localhost:5432/openwatch?sslmode=prefer'\n"+
			"keep the file private (chmod 0640 %s; chgrp openwatch %s), then run: openwatch migrate --check",
			config.DSNVar, cfg.SecretsPath, cfg.SecretsPath, cfg.SecretsPath)
		return cfg, nil, ExitUnreachable
	}
	d, err := dsn.Parse(cfg.DSN)
	if err != nil {
		a.errorf("%v\nFix OPENWATCH_DATABASE_DSN in %s, then run: openwatch migrate --check", err, cfg.SecretsPath)
		return cfg, nil, ExitUnreachable
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

// unreachable prints a connection failure and returns ExitUnreachable.
func (a *app) unreachable(err error, secretsPath string) int {
	a.errorf("%v\nCheck that PostgreSQL is running and that OPENWATCH_DATABASE_DSN in %s is right, then run: openwatch migrate --check", err, secretsPath)
	return ExitUnreachable
}
