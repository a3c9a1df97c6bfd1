package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/amacneil/dbmate/v2/pkg/dbmate"
	_ "github.com/amacneil/dbmate/v2/pkg/driver/postgres" // registers postgres:// with dbmate
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/openwatch/openwatch/internal/dsn"
)

// LockKey is the pg_advisory_lock key every openwatch migrate run takes.
const LockKey int64 = 0x6f70656e77617463 // "openwatc"

// ErrLockTimeout means another migrate run held the lock for too long.
var ErrLockTimeout = errors.New("another openwatch migrate is still running")

// NewerSchemaError refuses a schema that holds versions this binary does not know.
type NewerSchemaError struct{ State State }

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("the database schema is newer than this binary: it holds version(s) %s, this binary knows migrations up to %s",
		strings.Join(e.State.Unknown, ", "), e.State.Head)
}

// BackupError wraps a failure of the restore point taken before migrating.
type BackupError struct{ Err error }

func (e *BackupError) Error() string { return "could not take a restore point: " + e.Err.Error() }
func (e *BackupError) Unwrap() error { return e.Err }

// FailedError reports a migration that failed after others may have been applied.
type FailedError struct {
	Applied    []Migration // applied by this run, before the failure
	Failed     Migration
	NotApplied []Migration // after the failed one
	Err        error       // the database's error, password redacted
}

func (e *FailedError) Error() string {
	if e.Failed.Name == "" {
		return fmt.Sprintf("applying migrations failed: %v", e.Err)
	}
	return fmt.Sprintf("migration %s failed: %v", e.Failed.Name, e.Err)
}

func (e *FailedError) Unwrap() error { return e.Err }

// Options configure Run.
type Options struct {
	DSN         *dsn.DSN
	FS          fs.FS     // migrations at the root
	Out         io.Writer // progress lines
	LockTimeout time.Duration
	// BeforeApply runs under the lock when migrations are pending, before any
	// is applied; hasData tells whether the schema holds anything. An error
	// aborts the run with nothing applied.
	BeforeApply func(ctx context.Context, s State, hasData bool) error
}

// Result tells what Run did.
type Result struct {
	Before  State
	Applied []Migration
}

// Run applies the pending migrations: it refuses a newer schema, takes the
// advisory lock (waiting at most LockTimeout), re-reads the state, calls
// BeforeApply, then lets dbmate apply each migration in its own transaction.
func Run(ctx context.Context, o Options) (Result, error) {
	conn, err := o.DSN.Connect(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close(context.Background())

	s, err := ReadState(ctx, conn, o.FS)
	if err != nil {
		return Result{}, o.DSN.Redactor.Error(err)
	}
	if s.Newer() {
		return Result{Before: s}, &NewerSchemaError{State: s}
	}
	if len(s.Pending) == 0 {
		return Result{Before: s}, nil
	}
	if err := Lock(ctx, conn, o.LockTimeout, func() {
		fmt.Fprintf(o.Out, "waiting up to %s for another openwatch migrate to finish…\n", o.LockTimeout)
	}); err != nil {
		return Result{Before: s}, o.DSN.Redactor.Error(err)
	}
	// Released when the session closes, also if we are killed.
	if s, err = ReadState(ctx, conn, o.FS); err != nil {
		return Result{}, o.DSN.Redactor.Error(err)
	}
	if s.Newer() {
		return Result{Before: s}, &NewerSchemaError{State: s}
	}
	if len(s.Pending) == 0 {
		fmt.Fprintln(o.Out, "another run applied the pending migrations; nothing left to do")
		return Result{Before: s}, nil
	}
	if o.BeforeApply != nil {
		hasData, err := HasUserObjects(ctx, conn)
		if err != nil {
			return Result{Before: s}, o.DSN.Redactor.Error(err)
		}
		if err := o.BeforeApply(ctx, s, hasData); err != nil {
			return Result{Before: s}, &BackupError{Err: err}
		}
	}
	applyErr := Apply(o.DSN, o.FS, o.Out)
	after, err := ReadState(ctx, conn, o.FS)
	if err != nil {
		return Result{Before: s}, errors.Join(applyErr, o.DSN.Redactor.Error(err))
	}
	res := Result{Before: s, Applied: newlyApplied(s, after)}
	if applyErr != nil {
		return res, failure(res.Applied, after, applyErr)
	}
	return res, nil
}

func newlyApplied(before, after State) []Migration {
	still := map[string]bool{}
	for _, m := range after.Pending {
		still[m.Version] = true
	}
	var done []Migration
	for _, m := range before.Pending {
		if !still[m.Version] {
			done = append(done, m)
		}
	}
	return done
}

func failure(applied []Migration, after State, err error) error {
	f := &FailedError{Applied: applied, Err: err}
	if len(after.Pending) > 0 {
		f.Failed, f.NotApplied = after.Pending[0], after.Pending[1:]
	}
	return f
}

// Lock takes the migration advisory lock on conn, calling onWait once if it
// has to wait, and gives up after timeout.
func Lock(ctx context.Context, conn *pgx.Conn, timeout time.Duration, onWait func()) error {
	var got bool
	if err := conn.QueryRow(ctx, "select pg_try_advisory_lock($1)", LockKey).Scan(&got); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	if got {
		return nil
	}
	onWait()
	ms := timeout.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("set lock_timeout = %d", ms)); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	_, err := conn.Exec(ctx, "select pg_advisory_lock($1)", LockKey)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		return fmt.Errorf("%w (waited %s, MIGRATE_LOCK_TIMEOUT in upgrade.conf); wait for it to finish, then run: openwatch migrate", ErrLockTimeout, timeout)
	}
	if err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	_, err = conn.Exec(ctx, "reset lock_timeout")
	return err
}

// Apply runs dbmate: strict ordering, no schema dump (which would put the
// password on pg_dump's command line), one transaction per migration. dbmate
// connects through lib/pq with the URL built by the dsn package.
func Apply(d *dsn.DSN, fsys fs.FS, out io.Writer) error {
	log := d.Redactor.Writer(out)
	defer log.Flush()
	db := dbmate.New(d.DbmateURL())
	db.FS = fsys
	db.MigrationsDir = []string{"."}
	db.AutoDumpSchema = false
	db.Strict = true
	held := &holdApplied{w: log}
	db.Log = held
	err := db.Migrate()
	held.finish(err != nil)
	return d.Redactor.Error(err)
}

// holdApplied passes dbmate's log through but holds each "Applied:" line
// until dbmate goes on: dbmate prints it even for a migration that failed and
// was rolled back, and an operator must not read "Applied" for that one.
type holdApplied struct {
	w    io.Writer
	held []byte // the last "Applied:" line, not yet written
	part []byte // an unfinished line
}

func (h *holdApplied) Write(p []byte) (int, error) {
	h.part = append(h.part, p...)
	for {
		i := bytes.IndexByte(h.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := h.part[:i+1]
		h.w.Write(h.held)
		h.held = nil
		if bytes.HasPrefix(line, []byte("Applied: ")) {
			h.held = append([]byte(nil), line...)
		} else {
			h.w.Write(line)
		}
		h.part = h.part[i+1:]
	}
}

// finish writes what is left; the held line only if the run succeeded.
func (h *holdApplied) finish(failed bool) {
	if !failed {
		h.w.Write(h.held)
	}
	h.w.Write(h.part)
}
