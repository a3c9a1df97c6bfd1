package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/progress"
	"github.com/openwatch/openwatch/internal/version"
)

// backup writes a restore point; stdout gets only its path.
func (a *app) backup(ctx context.Context, args []string) int {
	fl := a.flags("backup")
	dir := fl.String("dir", "", "")
	list := fl.Bool("list", false, "")
	prune := fl.Bool("prune", false, "")
	export := fl.Bool("export", false, "")
	var extra []string
	if code, ok := a.parse(fl, args, &extra, help["backup"]); !ok {
		return code
	}
	if len(extra) > 0 {
		return a.usageError("backup: unexpected argument %q", extra[0])
	}
	if *prune {
		return a.pruneRestorePoints(ctx, *dir, *list)
	}
	if *list {
		return a.listRestorePoints(ctx, *dir)
	}
	cfg, d, code := a.connection(true)
	if d == nil {
		return code
	}
	if *dir == "" {
		*dir = cfg.BackupDir
	}
	conn, code := a.connect(ctx, cfg, d) // waits for a database still starting; creates nothing before
	if conn == nil {
		return code
	}
	conn.Close(context.Background())
	if *export {
		if code := a.exportClones(ctx, cfg, d, *dir); code != ExitOK {
			return code
		}
		return a.compressPending(ctx, cfg, *dir, "openwatch backup --export")
	}
	path, err := dump.Backup(ctx, dump.BackupOptions{DSN: d, Dir: *dir, PackageVersion: version.Version,
		Compression: cfg.BackupCompression, Progress: a.Stderr})
	var unreachable *dsn.UnreachableError
	if errors.As(err, &unreachable) {
		return a.unreachable(err, cfg)
	}
	if err != nil {
		a.errorf("could not take a restore point: %v\nFix the cause, then run: openwatch backup", err)
		return ExitBackupFailed
	}
	fmt.Fprintln(a.Stdout, path)
	return ExitOK
}

// listRestorePoints prints the restore points, newest first: the files in
// dir (default BACKUP_DIR) and the clones of the database on its server.
// The files need upgrade.conf only; the clones need the database. When it
// is not configured or not reachable (no wait: a listing should not hang),
// the files are listed all the same and a last line says that the clones
// were not, and why (exit 12).
func (a *app) listRestorePoints(ctx context.Context, dir string) int {
	cfg, dir, ok := a.backupDirConf(dir, "nothing was listed", "openwatch backup --list")
	if !ok {
		return ExitConfig
	}
	rps, err := dump.List(dir)
	if err != nil {
		a.errorf("cannot list restore points: %v", err)
		return ExitError
	}
	d, code, notListed, when := a.optionalDatabase(ctx, cfg, "listed", "openwatch backup --list", 0)
	if code == ExitConfig {
		return code
	}
	if d != nil {
		rps = append(rps, a.clonePoints(ctx, d)...)
		sortNewestFirst(rps)
	}
	switch {
	case len(rps) == 0 && d != nil:
		fmt.Fprintf(a.Stdout, "no restore points in %s or on the database server\n", dir)
	case len(rps) == 0:
		fmt.Fprintf(a.Stdout, "no restore points in %s\n", dir)
	}
	a.printRestorePoints(rps, "")
	a.sayPending(dir, cfg.BackupCompression)
	if d == nil {
		fmt.Fprintf(a.Stderr, "openwatch: warning: clone restore points (on the database server) were not listed: %s. %s, run: openwatch backup --list\n", notListed, when)
		return code
	}
	return ExitOK
}

// compressPending compresses the restore point files an upgrade wrote
// uncompressed while the service was stopped (dump.CompressPending), one
// line each on stdout with its path. On failure the file stays the restore
// point, uncompressed, and the message names rerun, the command to run once
// the cause is fixed.
func (a *app) compressPending(ctx context.Context, cfg config.Config, dir, rerun string) int {
	done, err := dump.CompressPending(ctx, dump.CompressOptions{Dir: dir, Compression: cfg.BackupCompression,
		Progress: a.Stderr, LockTimeout: cfg.MigrateLockTimeout})
	for _, p := range done {
		fmt.Fprintln(a.Stdout, p)
	}
	if err != nil {
		a.errorf("could not compress a restore point: %v\nNothing is lost: the uncompressed file is a complete restore point. Fix the cause, then run: %s", err, rerun)
		return ExitBackupFailed
	}
	return ExitOK
}

// sayPending adds a line for the restore point files written uncompressed
// by an upgrade and not compressed yet.
func (a *app) sayPending(dir, compression string) {
	pending, err := dump.Pending(dir, compression)
	if err != nil || len(pending) == 0 {
		return
	}
	fmt.Fprintf(a.Stdout, "%d restore point file(s) not compressed yet (an upgrade writes its file uncompressed while the service is stopped; "+
		"it is compressed once the service runs): %s; each is a complete restore point as it is; to compress them now, run: openwatch backup --export\n",
		len(pending), pendingNames(pending))
}

func pendingNames(rps []dump.RestorePoint) string {
	names := make([]string, len(rps))
	for i, rp := range rps {
		names[i] = filepath.Base(rp.Name)
	}
	return strings.Join(names, ", ")
}

// restore replaces the database with a restore point after confirmation.
func (a *app) restore(ctx context.Context, args []string) int {
	fl := a.flags("restore")
	yes := fl.Bool("yes", false, "")
	var files []string
	if code, ok := a.parse(fl, args, &files, help["restore"]); !ok {
		return code
	}
	if len(files) != 1 {
		return a.usageError("restore needs exactly one restore point, a FILE or a clone's NAME (openwatch migrate --status lists them)")
	}
	if clone.IsName(files[0]) {
		cfg, d, code := a.connection(true)
		if d == nil {
			return code
		}
		return a.restoreClone(ctx, cfg, d, files[0], *yes)
	}
	file, err := filepath.Abs(files[0])
	if err != nil {
		return a.usageError("restore: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		a.errorf("%v\nList the restore points with: openwatch migrate --status", err)
		return ExitError
	}
	cfg, d, code := a.connection(true)
	if d == nil {
		return code
	}
	// Restore points are written by a pg_dump at least the server's
	// version, which an older pg_restore cannot read.
	if conn, err := d.Connect(ctx); err == nil {
		_, _, problem := checkClient(ctx, conn, "pg_restore", "it cannot read a restore point written by the server's pg_dump")
		conn.Close(context.Background())
		if problem != "" {
			a.errorf("%s.\nNothing was changed. Install it, then run: openwatch restore --yes %s", problem, file)
			return ExitError
		}
	}
	archive, err := dump.Verify(ctx, d, file)
	if err != nil {
		a.errorf("%v\nNothing was changed. Pick another restore point.", err)
		return ExitError
	}
	if !*yes {
		if code, ok := a.confirm(d, file, archive, "Changes made since then are lost."); !ok {
			return code
		}
	}
	conn, code := a.connectToChange(ctx, cfg, d, "openwatch restore --yes "+file)
	if conn == nil {
		return code
	}
	defer conn.Close(context.Background())
	// No migrate may run while the database is replaced.
	if err := migrate.Lock(ctx, conn, cfg.MigrateLockTimeout, func() {
		fmt.Fprintf(a.Stderr, "waiting up to %s for a running openwatch migrate or restore to finish…\n", cfg.MigrateLockTimeout)
	}); err != nil {
		a.errorf("%v\nNothing was changed. Wait for it to finish, then run: openwatch restore --yes %s", d.Redactor.Error(err), file)
		if errors.Is(err, migrate.ErrLockTimeout) {
			return ExitLockTimeout
		}
		return ExitError
	}
	fmt.Fprintf(a.Stderr, "restoring %s (%s) into %s…\n", file, progress.Bytes(dump.FileSize(file)), d.Describe())
	err = dump.Restore(ctx, dump.RestoreOptions{DSN: d, File: file, Progress: a.Stderr})
	var refused *dump.RefusedError
	switch {
	case errors.As(err, &refused):
		a.errorf("%v\nThen run: openwatch restore --yes %s", err, file)
		return ExitError
	case err != nil:
		a.errorf("restore failed, %v\nIf sessions still use the database (lock timeout), stop the service first: systemctl stop openwatch\nThen run: openwatch restore --yes %s", err, file)
		return ExitError
	}
	a.afterRestore(ctx, conn, file, dump.PackageVersionOf(file))
	return ExitOK
}

// confirm asks on the terminal; without one it refuses.
// since says what becomes of the database as it is now.
func (a *app) confirm(d *dsn.DSN, file string, archive dump.Archive, since string) (int, bool) {
	if !progress.IsTerminal(a.Stdin) {
		a.errorf("refusing to restore without confirmation: stdin is not a terminal.\nTo replace %s with %s, run:\n  openwatch restore --yes %s", d.Describe(), file, file)
		return ExitUsage, false
	}
	fmt.Fprintf(a.Stderr, "This replaces everything in %s with the restore point\n  %s\n"+
		"taken from database %q at %s. %s\nType the database name (%s) or y to continue: ",
		d.Describe(), file, archive.Database, archive.Created, since, d.Config.Database)
	answer, _ := bufio.NewReader(a.Stdin).ReadString('\n')
	answer = strings.TrimSpace(answer)
	if answer == d.Config.Database || strings.EqualFold(answer, "y") || strings.EqualFold(answer, "yes") {
		return 0, true
	}
	a.errorf("not confirmed; nothing was changed")
	return ExitError, false
}

// afterRestore says where the restored schema stands relative to this binary.
// pkgVersion is the version of the package that took the restore point, ""
// when it is not known.
func (a *app) afterRestore(ctx context.Context, conn *pgx.Conn, file, pkgVersion string) {
	s, err := migrate.ReadState(ctx, conn, a.migrations)
	if err != nil {
		fmt.Fprintf(a.Stdout, "restored %s\n", file)
		return
	}
	fmt.Fprintf(a.Stdout, "restored %s; schema now at %s\n", file, orNone(s.Current))
	switch {
	case s.Newer():
		took := "the package version that took the restore point"
		if pkgVersion != "" {
			took = "openwatch " + pkgVersion + ", the version that took the restore point"
		}
		fmt.Fprintf(a.Stdout, "This schema is newer than this binary (openwatch %s); install %s.\n", version.Version, took)
	case len(s.Pending) > 0:
		fmt.Fprintf(a.Stdout, "%d migration(s) of this binary are pending; apply them with: openwatch migrate\n", len(s.Pending))
	}
}
