package dump

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/progress"
)

// preludeTemplate empties the database inside the restore's transaction
// (giving up after LockTimeout if sessions of the running service hold locks),
// of what the restoring role and the archive's owners own ({{ours}}), except the
// extensions installed on the server that the archive also holds: a DBA may
// have installed them, and the role could not create them again.
//
//   - installed extensions of ours the archive lacks go ({{drop_extensions}});
//   - schemas of ours go with everything in them (so tables added by later
//     migrations are gone), except those holding members of kept extensions
//     ({{kept_schemas}}); pg_restore skips their CREATE SCHEMA;
//   - public goes and comes back as initdb makes it, unless it holds members
//     of kept extensions: then it stays, with its owner, privileges and comment
//     put back as initdb makes them;
//   - what is left that ours own (in kept schemas, or in no schema:
//     publications, servers…) goes, found through the owner dependencies of
//     pg_shdepend, as DROP OWNED BY would find it — DROP OWNED itself would
//     also revoke what was granted to the role, database CONNECT included;
//     extension members and objects internal to another (array and
//     multirange types, columns) go with their owner;
//   - every large object goes.
//
// The archive then recreates everything it holds.
const preludeTemplate = `\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL lock_timeout = '{{lock_timeout_ms}}';
SET LOCAL standard_conforming_strings = on;
DO {{tag}}
DECLARE
	ours oid[] := ARRAY(SELECT oid FROM pg_roles WHERE rolname = current_user OR rolname = ANY ({{ours}}));
	kept text[] := {{kept_schemas}};
	x text;
	r record;
	drops text[];
BEGIN
	FOREACH x IN ARRAY {{drop_extensions}} LOOP
		EXECUTE format('DROP EXTENSION IF EXISTS %I CASCADE', x);
	END LOOP;
	FOR x IN SELECT nspname FROM pg_namespace
		WHERE nspowner = ANY (ours) AND nspname <> ALL (kept) AND nspname <> 'public'
		  AND nspname NOT IN ('pg_catalog', 'information_schema')
		  AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp\_%'
	LOOP
		EXECUTE format('DROP SCHEMA %I CASCADE', x);
	END LOOP;
	IF 'public' <> ALL (kept) THEN
		DROP SCHEMA IF EXISTS public CASCADE;
		CREATE SCHEMA public AUTHORIZATION pg_database_owner;
		GRANT USAGE ON SCHEMA public TO PUBLIC;
		COMMENT ON SCHEMA public IS 'standard public schema';
	END IF;
	SELECT coalesce(array_agg(format('DROP %s IF EXISTS %s CASCADE', CASE o.type
			WHEN 'composite type' THEN 'TYPE'
			WHEN 'statistics object' THEN 'STATISTICS'
			WHEN 'foreign-data wrapper' THEN 'FOREIGN DATA WRAPPER'
			ELSE upper(o.type) END, o.identity)), '{}')
		INTO drops
		FROM pg_shdepend s CROSS JOIN LATERAL pg_identify_object(s.classid, s.objid, s.objsubid) o
		WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND s.deptype = 'o' AND s.refobjid = ANY (ours)
		  AND s.classid NOT IN ('pg_namespace'::regclass, 'pg_largeobject'::regclass,
			'pg_extension'::regclass, 'pg_default_acl'::regclass)
		  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = s.classid AND d.objid = s.objid
			AND (d.deptype = 'e' OR (d.deptype = 'i' AND d.objsubid = 0)));
	FOREACH x IN ARRAY drops LOOP
		EXECUTE x;
	END LOOP;
	FOR r IN SELECT n.nspname, n.nspowner::regrole AS owner, a.grantee
		FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
		WHERE n.nspname = ANY (kept) AND pg_has_role(n.nspowner, 'MEMBER') AND a.grantee <> n.nspowner
	LOOP
		EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %s CASCADE', r.nspname,
			CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
	END LOOP;
	FOR r IN SELECT n.nspname, n.nspowner::regrole AS owner FROM pg_namespace n
		WHERE n.nspname = ANY (kept) AND pg_has_role(n.nspowner, 'MEMBER')
	LOOP
		IF r.nspname = 'public' THEN
			ALTER SCHEMA public OWNER TO pg_database_owner;
			GRANT ALL ON SCHEMA public TO pg_database_owner;
			GRANT USAGE ON SCHEMA public TO PUBLIC;
			COMMENT ON SCHEMA public IS 'standard public schema';
		ELSE
			EXECUTE format('GRANT ALL ON SCHEMA %I TO %s', r.nspname, r.owner);
			EXECUTE format('COMMENT ON SCHEMA %I IS NULL', r.nspname);
		END IF;
	END LOOP;
	PERFORM lo_unlink(oid) FROM pg_largeobject_metadata;
END
{{tag}};
`

// prelude fills in the template for plan. The names it holds come from the
// archive and the server; the DO block's dollar quote is one none contains.
func prelude(plan *restorePlan, lockTimeout time.Duration) string {
	ours, kept, drop := sqlArray(plan.ours), sqlArray(plan.keptSchemas), sqlArray(plan.dropExtensions)
	tag := "$openwatch$"
	for i := 0; strings.Contains(ours+kept+drop, tag); i++ {
		tag = "$openwatch" + strconv.Itoa(i) + "$"
	}
	return strings.NewReplacer(
		"{{lock_timeout_ms}}", strconv.FormatInt(lockTimeout.Milliseconds(), 10),
		"{{ours}}", ours,
		"{{kept_schemas}}", kept,
		"{{drop_extensions}}", drop,
		"{{tag}}", tag,
	).Replace(preludeTemplate)
}

// DefaultRestoreLockTimeout is how long a restore waits for other sessions'
// locks before giving up with nothing changed.
const DefaultRestoreLockTimeout = time.Minute

// RestoreOptions configure Restore.
type RestoreOptions struct {
	DSN         *dsn.DSN
	File        string
	Progress    io.Writer     // nil for none
	LockTimeout time.Duration // 0 means DefaultRestoreLockTimeout
}

// Restore replaces the database's contents with the archive, all or nothing.
//
// First, changing nothing, it compares the archive with the server and
// refuses with a *RefusedError when the restore could not complete: an
// extension the archive needs is missing and the role cannot create it, a
// role the archive names does not exist, or the role may not own what the
// archive's objects are owned by.
//
// Then one psql session runs, in one transaction, the prelude (which empties
// the database of what the role owns) and the SQL pg_restore makes of the
// archive, and commits only after pg_restore has finished successfully.
//
// Large objects: without --single-transaction, pg_restore wraps their data in
// its own BEGIN/COMMIT, and that COMMIT would commit the prelude and half the
// restore. With --single-transaction it writes no transaction control but one
// BEGIN first (a warning inside our transaction) and one COMMIT last, after
// every entry; copyHoldingFinalCommit keeps that last COMMIT from psql, and
// finish sends COMMIT only once pg_restore has exited successfully. Anything
// else (psql or pg_restore failing, the input ending early) closes the
// session without COMMIT, and PostgreSQL rolls everything back.
func Restore(ctx context.Context, o RestoreOptions) error {
	// The children's parent-death signal fires when the thread that started
	// them exits: keep this goroutine on one thread until they are waited for.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, err := Verify(ctx, o.DSN, o.File); err != nil {
		return err
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultRestoreLockTimeout
	}
	plan, err := checkRestore(ctx, o.DSN, o.File)
	if err != nil {
		return err
	}
	list, err := writeTemp(plan.list)
	if err != nil {
		return err
	}
	defer os.Remove(list)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := startPipeline(ctx, o, list)
	if err != nil {
		return err
	}
	return p.finish(o, prelude(plan, o.LockTimeout))
}

// pipeline is pg_restore's output piped, after the prelude, into psql.
type pipeline struct {
	restore, psql       *exec.Cmd
	restoreErr, psqlErr *tail
	sql                 io.Reader      // pg_restore's stdout
	psqlIn              io.WriteCloser // psql's stdin
}

func startPipeline(ctx context.Context, o RestoreOptions, list string) (*pipeline, error) {
	var p pipeline
	var err error
	if p.restore, p.restoreErr, err = command(ctx, o.DSN, "pg_restore", "--single-transaction", "--use-list="+list, "--file=-", "--", o.File); err != nil {
		return nil, err
	}
	if p.psql, p.psqlErr, err = command(ctx, o.DSN, "psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-f", "-"); err != nil {
		return nil, err
	}
	if p.sql, err = p.restore.StdoutPipe(); err != nil {
		return nil, err
	}
	if p.psqlIn, err = p.psql.StdinPipe(); err != nil {
		return nil, err
	}
	p.psql.Stdout = io.Discard
	if err := p.psql.Start(); err != nil {
		return nil, fmt.Errorf("start psql: %w", err)
	}
	if err := p.restore.Start(); err != nil {
		p.psqlIn.Close()
		p.psql.Wait()
		return nil, fmt.Errorf("start pg_restore: %w", err)
	}
	return &p, nil
}

// finish streams everything, commits only if pg_restore succeeded, and
// reports the first failure.
func (p *pipeline) finish(o RestoreOptions, prelude string) error {
	var complete atomic.Bool
	offset, total := readOffset(p.restore.Process.Pid, o.File), FileSize(o.File)
	// pg_restore reports no progress of its own; its read position in the
	// archive is the measure (see readOffset), and the time left is
	// extrapolated from it. Index builds come last in the archive but take
	// long for little of it: the estimate does not foresee them.
	stop := progress.Watch(progress.Start(o.Progress, progress.Step{Label: "restore", Total: total,
		Basis: "measured by pg_restore's position in the archive; index builds at the end are not foreseen"}), func() int64 {
		if complete.Load() {
			return total
		}
		return offset()
	})
	_, copyErr := io.WriteString(p.psqlIn, prelude)
	if copyErr == nil {
		copyErr = copyHoldingFinalCommit(p.psqlIn, p.sql)
	}
	complete.Store(copyErr == nil)
	if copyErr != nil {
		p.restore.Process.Kill() // psql has stopped reading
	}
	restoreErr := p.restore.Wait()
	if copyErr == nil && restoreErr == nil {
		_, copyErr = io.WriteString(p.psqlIn, "\nCOMMIT;\n")
	}
	// Without COMMIT, closing psql's input ends the session and PostgreSQL
	// rolls the transaction back.
	p.psqlIn.Close()
	psqlErr := p.psql.Wait()
	stop(copyErr == nil && restoreErr == nil && psqlErr == nil)
	switch {
	case psqlErr != nil:
		return fmt.Errorf("nothing was changed: %w", childError(o.DSN, "psql", psqlErr, p.psqlErr))
	case restoreErr != nil:
		return fmt.Errorf("nothing was changed: %w", childError(o.DSN, "pg_restore", restoreErr, p.restoreErr))
	case copyErr != nil:
		return fmt.Errorf("nothing was changed: feeding psql: %w", copyErr)
	}
	return nil
}

// copyHoldingFinalCommit copies pg_restore --single-transaction's SQL from
// src to dst, except its final COMMIT: a line "COMMIT;" followed by nothing
// but blank lines, comments and psql's \unrestrict up to the end. Such a line
// is held back until a line of any other kind follows (then it was not the
// last: data of a COPY, a function body…, and it is written unchanged); at the
// end of the input it is dropped. Every other byte passes unchanged, lines of
// any length included.
func copyHoldingFinalCommit(dst io.Writer, src io.Reader) error {
	r := bufio.NewReaderSize(src, 64<<10)
	var held []byte // "COMMIT;\n" and the trailer lines after it
	holding, lineStart := false, true
	for {
		chunk, err := r.ReadSlice('\n')
		whole := lineStart && err == nil // chunk is one complete line
		switch {
		case len(chunk) == 0:
		case whole && string(chunk) == "COMMIT;\n":
			if holding {
				if _, werr := dst.Write(held); werr != nil {
					return werr
				}
			}
			held, holding = append(held[:0], chunk...), true
		case holding && whole && isTrailer(chunk):
			held = append(held, chunk...)
		default:
			if holding {
				if _, werr := dst.Write(held); werr != nil {
					return werr
				}
				held, holding = held[:0], false
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return werr
			}
		}
		if len(chunk) > 0 {
			lineStart = err == nil
		}
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			if holding { // the final COMMIT: write what followed it
				_, err := dst.Write(held[len("COMMIT;\n"):])
				return err
			}
			return nil
		default:
			return err
		}
	}
}

// isTrailer reports whether line is what pg_restore writes after its final
// COMMIT: blank lines, comments, \unrestrict.
func isTrailer(line []byte) bool {
	s := string(line)
	return s == "\n" || strings.HasPrefix(s, "--") || strings.HasPrefix(s, "\\unrestrict ")
}

// readOffset returns how far process pid has read into file, from
// /proc/PID/fdinfo: the position of pg_restore in the archive, for the bar.
func readOffset(pid int, file string) func() int64 {
	last := int64(0)
	return func() int64 {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if target, _ := os.Readlink(filepath.Join(dir, fd.Name())); target != file {
				continue
			}
			info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
			for _, line := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(line, "pos:"); ok {
					if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > last {
						last = n
					}
				}
			}
		}
		return last
	}
}

// FileSize returns the size of a restore point, for messages.
func FileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
