package dump

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openwatch/openwatch/internal/dsn"
)

// prelude empties the database inside the restore's transaction (giving up
// after LockTimeout if sessions of the running service hold locks): every
// non-system schema goes (so tables added by later migrations are gone), the
// public schema comes back as initdb makes it, and large objects are removed.
// The archive then recreates everything it holds.
const prelude = `\set ON_ERROR_STOP 1
BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL lock_timeout = 'LOCK_TIMEOUT_MS';
DO $openwatch$
DECLARE s name;
BEGIN
	FOR s IN SELECT nspname FROM pg_namespace
		WHERE nspname NOT IN ('pg_catalog', 'information_schema')
		  AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp\_%'
	LOOP
		EXECUTE format('DROP SCHEMA %I CASCADE', s);
	END LOOP;
	PERFORM lo_unlink(oid) FROM pg_largeobject_metadata;
END
$openwatch$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
COMMENT ON SCHEMA public IS 'standard public schema';
`

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

// Restore replaces the database's contents with the archive, all or nothing:
// pg_restore turns the archive into SQL that psql runs in one transaction,
// which is committed only after pg_restore has finished successfully.
func Restore(ctx context.Context, o RestoreOptions) error {
	if _, err := Verify(ctx, o.DSN, o.File); err != nil {
		return err
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultRestoreLockTimeout
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := startPipeline(ctx, o)
	if err != nil {
		return err
	}
	return p.finish(o)
}

// pipeline is pg_restore's output piped, after the prelude, into psql.
type pipeline struct {
	restore, psql       *exec.Cmd
	restoreErr, psqlErr *tail
	sql                 io.Reader      // pg_restore's stdout
	psqlIn              io.WriteCloser // psql's stdin
}

func startPipeline(ctx context.Context, o RestoreOptions) (*pipeline, error) {
	var p pipeline
	var err error
	if p.restore, p.restoreErr, err = command(ctx, o.DSN, "pg_restore", "--file=-", "--", o.File); err != nil {
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
func (p *pipeline) finish(o RestoreOptions) error {
	var complete atomic.Bool
	offset, total := readOffset(p.restore.Process.Pid, o.File), FileSize(o.File)
	stop := watch(o.Progress, "restore", total, func() int64 {
		if complete.Load() {
			return total
		}
		return offset()
	})
	copyErr := stream(p.psqlIn, p.sql, o.LockTimeout)
	complete.Store(copyErr == nil)
	stop()
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

// stream writes the prelude and then the archive's SQL to psql.
func stream(dst io.Writer, src io.Reader, lockTimeout time.Duration) error {
	p := strings.Replace(prelude, "LOCK_TIMEOUT_MS", strconv.FormatInt(lockTimeout.Milliseconds(), 10), 1)
	if _, err := io.WriteString(dst, p); err != nil {
		return err
	}
	_, err := io.Copy(dst, src)
	return err
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
