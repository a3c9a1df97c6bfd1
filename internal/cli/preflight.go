package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/progress"
)

// preflight checks, changing nothing, everything `migrate` will need, while
// the service still runs: the configuration (already loaded strictly), the
// database, and for the restore point pg_dump, its compression setting, the
// backup directory, its free space and the role's read privileges; then,
// as REHEARSE says, it rehearses the migrations on a scratch copy. First it
// drops the scratch copies killed rehearsals left.
func (a *app) preflight(ctx context.Context, cfg config.Config, d *dsn.DSN, f migrateFlags) int {
	conn, code := a.connectToChange(ctx, cfg, d, "openwatch migrate --preflight")
	if conn == nil {
		return code
	}
	defer conn.Close(context.Background())
	// Whatever else it finds: a copy a killed rehearsal left never outlives
	// the next run, and takes room the checks below measure.
	a.dropRehearsalLeftovers(ctx, d, "preflight: ")
	s, err := migrate.ReadState(ctx, conn, a.migrations)
	if err != nil {
		a.errorf("%v", d.Redactor.Error(err))
		return ExitError
	}
	switch {
	case s.Newer():
		a.refuseNewer(ctx, cfg, d, s)
		return ExitNewer
	case len(s.Pending) == 0:
		fmt.Fprintf(a.Stdout, "preflight: ready; nothing to migrate (schema at %s)\n", s.Head)
		return ExitOK
	}
	fmt.Fprintf(a.Stdout, "preflight: %d migration(s) pending: %s\n", len(s.Pending), names(s.Pending))
	hasData, err := migrate.HasUserObjects(ctx, conn)
	if err != nil {
		a.errorf("%v", d.Redactor.Error(err))
		return ExitError
	}
	if reason := a.backupPolicy(cfg, f, hasData); reason != "" {
		if code := a.preflightRehearsal(ctx, cfg, d, conn); code != ExitOK {
			return code
		}
		fmt.Fprintf(a.Stdout, "preflight: ready; no restore point will be taken: %s\n", reason)
		return ExitOK
	}
	dir := cfg.BackupDir
	if f.backupDir != "" {
		dir = f.backupDir
	}
	var problems []string
	if p := checkPgDump(ctx, conn, cfg.BackupCompression); p != "" {
		problems = append(problems, p)
	}
	if p := checkUnreadable(ctx, conn); p != "" {
		problems = append(problems, d.Redactor.String(p))
	}
	dirOK := checkBackupDir(dir)
	if dirOK != "" {
		problems = append(problems, dirOK)
	}
	var space dump.SpaceEstimate
	if dirOK == "" {
		if space, err = dump.EstimateNeed(ctx, d, dir); err == nil {
			err = space.Check()
		}
		if err != nil {
			problems = append(problems, d.Redactor.String(err.Error()))
		}
	}
	kind, willClone := "", false
	if mode, err := clone.ParseMode(cfg.RestorePoint); err == nil && mode != clone.ModeFile && f.backupDir == "" {
		// Whether a clone can be taken, but for the sessions the service
		// holds now: RESTORE_POINT=clone that cannot fails here, with the
		// service still running, not after it was stopped.
		dec, err := clone.Eligible(ctx, conn, clone.Options{Mode: mode, Running: true})
		switch {
		case err != nil && mode == clone.ModeClone:
			problems = append(problems, fmt.Sprintf("RESTORE_POINT=clone in %s, but whether a clone can be taken could not be checked: %v", a.configPath, d.Redactor.Error(err)))
		case err != nil:
			kind = fmt.Sprintf("a file (whether a clone is safe could not be checked: %v)", d.Redactor.Error(err))
		case dec.Method != clone.MethodClone && mode == clone.ModeClone:
			problems = append(problems, fmt.Sprintf("RESTORE_POINT=clone in %s, but a clone cannot be taken: %s", a.configPath, dec.Reason))
		case dec.Method != clone.MethodClone:
			kind = "a file, not a clone: " + dec.Reason
		default:
			kind, willClone = "a clone of the database, once the service has stopped and no other session uses it (else a file)", true
		}
	}
	if len(problems) > 0 {
		a.errorf("preflight: the restore point could not be taken:\n  - %s\nNothing was changed. Fix the cause, then run: %s",
			strings.Join(problems, "\n  - "), a.next("openwatch migrate --preflight"))
		return ExitBackupFailed
	}
	if code := a.preflightRehearsal(ctx, cfg, d, conn); code != ExitOK {
		return code
	}
	if cfg.RestorePoint != "file" {
		// A clone forces a checkpoint; most of its cost can be paid now,
		// while the service still runs (superuser or pg_checkpoint only).
		if done, err := clone.Checkpoint(ctx, conn); err == nil && done {
			fmt.Fprintln(a.Stdout, "preflight: checkpoint done, so a clone restore point takes less of the downtime")
		}
	}
	if kind != "" {
		fmt.Fprintf(a.Stdout, "preflight: the restore point will be %s\n", kind)
	}
	what := "the restore point goes to"
	if willClone {
		what = "its file (exported once the service runs again, or taken instead of the clone) goes to"
	}
	fmt.Fprintf(a.Stdout, "preflight: ready; %s %s (about %s needed, %s free)\n",
		what, dir, progress.Bytes(space.Need), progress.Bytes(space.Free))
	return ExitOK
}

var pgDumpVersionRE = regexp.MustCompile(`\(PostgreSQL\) ([0-9]+)`)

// checkPgDump says what is wrong with pg_dump for this server and
// BACKUP_COMPRESSION, or "".
func checkPgDump(ctx context.Context, conn *pgx.Conn, compression string) string {
	path, client, msg := checkClient(ctx, conn, "pg_dump", "pg_dump refuses to dump a newer server")
	if msg != "" {
		return msg
	}
	if msg := compressionProblem(compression, client); msg != "" {
		return fmt.Sprintf("BACKUP_COMPRESSION=%s: %s (the installed %s is version %d)", compression, msg, path, client)
	}
	return ""
}

// checkClient finds the PostgreSQL client program name on PATH and its
// major version, and says what is wrong with it for the server conn is
// connected to ("" when nothing): missing, or older than the server (why
// says what that breaks), naming the package that brings the right one.
func checkClient(ctx context.Context, conn *pgx.Conn, name, why string) (path string, client int, problem string) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", 0, name + " is not installed (install the PostgreSQL client package, e.g. postgresql-client)"
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	m := pgDumpVersionRE.FindSubmatch(out)
	if err != nil || m == nil {
		return path, 0, fmt.Sprintf("%s --version did not say its version", path)
	}
	client, _ = strconv.Atoi(string(m[1]))
	var serverNum int
	if err := conn.QueryRow(ctx, "select current_setting('server_version_num')::int").Scan(&serverNum); err == nil && serverNum/10000 > client {
		major := serverNum / 10000
		return path, client, fmt.Sprintf("%s is version %d, older than the server (%d): %s;"+
			" install the PostgreSQL %d client (Debian, Ubuntu: postgresql-client-%d; RHEL: postgresql from the postgresql:%d module stream, or postgresql%d from the PGDG repository)",
			path, client, major, why, major, major, major, major)
	}
	return path, client, ""
}

// compressionProblem says why pg_dump of major version client would refuse
// --compress=value, or "".
func compressionProblem(value string, client int) string {
	method, level, hasLevel := strings.Cut(value, ":")
	if _, err := strconv.Atoi(method); err == nil {
		return "" // a bare 0-9 level: every version
	}
	if client < 16 {
		return "pg_dump before version 16 takes only a level 0-9"
	}
	max := map[string]int{"gzip": 9, "lz4": 12, "zstd": 22, "none": 0}[method]
	if !hasLevel {
		return ""
	}
	n, err := strconv.Atoi(level)
	if err != nil || n < 1 && method != "none" || n > max {
		return fmt.Sprintf("%s takes a level from 1 to %d", method, max)
	}
	return ""
}

// checkUnreadable names the tables, sequences and schemas pg_dump would fail
// to read as this role, or "".
func checkUnreadable(ctx context.Context, conn *pgx.Conn) string {
	rows, err := conn.Query(ctx, `
		select format('%I.%I', n.nspname, c.relname)
		from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where c.relkind in ('r', 'p', 'm', 'S')
		  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\_toast%'
		  and not exists (select 1 from pg_depend e where e.classid = 'pg_class'::regclass and e.objid = c.oid and e.deptype = 'e')
		  and not (has_schema_privilege(n.oid, 'USAGE') and has_table_privilege(c.oid, 'SELECT'))
		order by 1 limit 20`)
	if err != nil {
		return fmt.Sprintf("cannot check the role's privileges: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Sprintf("cannot check the role's privileges: %v", err)
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("the database role cannot read %s, so pg_dump would fail; grant it SELECT (as the owner or a superuser)",
		strings.Join(names, ", "))
}

// checkBackupDir says why a restore point could not be written into dir, or
// "". It creates nothing: a missing dir needs a writable existing parent.
// A symlink to a directory is followed (the operator's choice of where
// restore points live), as Backup and the cleanup follow it.
func checkBackupDir(dir string) string {
	_, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(dir)
		for {
			if _, err := os.Stat(parent); err == nil || parent == "/" {
				break
			}
			parent = filepath.Dir(parent)
		}
		if err := unix.Access(parent, unix.W_OK); err != nil {
			return fmt.Sprintf("backup directory %s does not exist and cannot be created in %s: %v", dir, parent, err)
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("backup directory: %v", err)
	}
	if err := dump.CheckDir(dir); err != nil {
		return err.Error()
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Sprintf("backup directory %s is not writable: %v", dir, err)
	}
	return ""
}
