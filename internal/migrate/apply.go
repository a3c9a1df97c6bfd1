package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"regexp"
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

// ErrLockTimeout means another openwatch migrate or restore held the
// migration lock for longer than the timeout. Lock's error wraps it.
var ErrLockTimeout = errors.New("another openwatch migrate or restore is still running (it holds the migration lock)")

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
	// NonTransactional: the failed migration's file says
	// "-- migrate:up transaction:false", so it was not rolled back; what it
	// did before the error stays in the database.
	NonTransactional bool
	// Leftovers, set with NonTransactional, lists the invalid indexes now in
	// the database (schema-qualified, quoted for SQL), as a failed
	// CREATE INDEX CONCURRENTLY leaves them; each blocks a retry until
	// dropped with DROP INDEX CONCURRENTLY name.
	Leftovers []string
}

func (e *FailedError) Error() string {
	if e.Failed.Name == "" {
		return fmt.Sprintf("applying migrations failed: %v", e.Err)
	}
	if e.NonTransactional {
		return fmt.Sprintf("migration %s failed and was not rolled back (it runs outside a transaction): %v", e.Failed.Name, e.Err)
	}
	return fmt.Sprintf("migration %s failed: %v", e.Failed.Name, e.Err)
}

func (e *FailedError) Unwrap() error { return e.Err }

// InterruptedError reports a run stopped by its context (SIGTERM, SIGINT)
// between two migrations: the one in progress was completed, no further one
// was started.
type InterruptedError struct {
	Applied    []Migration // applied by this run, all complete
	NotApplied []Migration // not started
	Err        error       // the context's cause, e.g. context.Canceled
}

func (e *InterruptedError) Error() string {
	next := "the next migration"
	if len(e.NotApplied) > 0 {
		next = "migration " + e.NotApplied[0].Name
	}
	applied := migrationNames(e.Applied)
	if applied == "" {
		applied = "none"
	}
	return fmt.Sprintf("interrupted (%v) before %s started; applied completely in this run: %s; not applied: %s",
		e.Err, next, applied, migrationNames(e.NotApplied))
}

func (e *InterruptedError) Unwrap() error { return e.Err }

func migrationNames(ms []Migration) string {
	var n []string
	for _, m := range ms {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

// Options configure Run.
type Options struct {
	DSN         *dsn.DSN
	FS          fs.FS     // migrations at the root
	Out         io.Writer // progress lines
	LockTimeout time.Duration
	// LockWait bounds each wait of a migration for a table or row lock
	// (PostgreSQL's lock_timeout); 0 means DefaultLockWait.
	LockWait time.Duration
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
// BeforeApply, then lets dbmate apply each migration in its own transaction,
// one at a time. When ctx ends during a migration, that migration completes
// (or fails) and Run returns an *InterruptedError before the next one.
//
// Before anything else, and again under the lock, it compares the recorded
// checksums of the applied migrations with the shipped files (a
// *ChecksumError refuses), and records the missing ones, and the missing
// down sections (DownTable), under the lock.
//
// Errors: *dsn.UnreachableError, *NewerSchemaError, *ChecksumError, one
// wrapping ErrLockTimeout, *BackupError, *LockWaitError, *FailedError,
// *InterruptedError, or another.
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
	unrecorded, err := unrecordedOrWithoutDown(ctx, conn, o, s)
	if err != nil {
		return Result{Before: s}, err
	}
	if len(s.Pending) == 0 && len(unrecorded) == 0 {
		return Result{Before: s}, nil
	}
	hadPending := len(s.Pending) > 0
	if err := Lock(ctx, conn, o.LockTimeout, func() {
		fmt.Fprintf(o.Out, "waiting up to %s for another openwatch migrate or restore to finish…\n", o.LockTimeout)
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
	if unrecorded, err = unrecordedOrWithoutDown(ctx, conn, o, s); err != nil {
		return Result{Before: s}, err
	}
	if err := recordOnce(ctx, conn, o, unrecorded); err != nil {
		return Result{Before: s}, err
	}
	if len(s.Pending) == 0 {
		if hadPending {
			fmt.Fprintln(o.Out, "another run applied the pending migrations; nothing left to do")
		}
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
	return apply(ctx, conn, o, s)
}

// apply hands dbmate one pending migration at a time, so that when ctx ends
// (SIGTERM, SIGINT) the migration in progress completes or fails on its own
// and no further one starts.
func apply(ctx context.Context, conn *pgx.Conn, o Options, before State) (Result, error) {
	res := Result{Before: before}
	known, err := Known(o.FS)
	if err != nil {
		return res, err
	}
	// The bookkeeping after an interruption must still reach the database.
	bg := context.WithoutCancel(ctx)
	for i, m := range before.Pending {
		if ctx.Err() != nil {
			return res, &InterruptedError{Applied: res.Applied, NotApplied: before.Pending[i:], Err: context.Cause(ctx)}
		}
		relation, blockers, applyErr := applyOne(bg, conn, o, UpTo(o.FS, known, m), m)
		after, err := ReadState(bg, conn, o.FS)
		if err != nil {
			return res, errors.Join(applyErr, o.DSN.Redactor.Error(err))
		}
		res.Applied = newlyApplied(before, after)
		if applyErr != nil {
			if lw := lockWaitFailure(o, m, res.Applied, after, relation, blockers, applyErr); lw != nil {
				return res, lw
			}
			return res, failure(bg, conn, o, res.Applied, after, applyErr)
		}
		if err := recordAfter(bg, conn, o, m); err != nil {
			return res, err
		}
	}
	return res, nil
}

// UpTo is fsys with the known migrations up to and including next only, so
// that Run applies exactly next.
func UpTo(fsys fs.FS, known []Migration, next Migration) fs.FS {
	names := map[string]bool{}
	for _, m := range known {
		names[m.Name] = true
		if m.Name == next.Name {
			break
		}
	}
	return subsetFS{fsys: fsys, names: names}
}

// subsetFS shows only the named files of the root of fsys.
type subsetFS struct {
	fsys  fs.FS
	names map[string]bool
}

func (s subsetFS) Open(name string) (fs.File, error) {
	if name != "." && !s.names[name] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return s.fsys.Open(name)
}

func (s subsetFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	entries, err := fs.ReadDir(s.fsys, ".")
	var shown []fs.DirEntry
	for _, e := range entries {
		if s.names[e.Name()] {
			shown = append(shown, e)
		}
	}
	return shown, err
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

func failure(ctx context.Context, conn *pgx.Conn, o Options, applied []Migration, after State, err error) error {
	f := &FailedError{Applied: applied, Err: err}
	if len(after.Pending) > 0 {
		f.Failed, f.NotApplied = after.Pending[0], after.Pending[1:]
	}
	if f.Failed.Name != "" && nonTransactional(o.FS, f.Failed.Name) {
		f.NonTransactional = true
		leftovers, lerr := InvalidIndexes(ctx, conn)
		if lerr != nil {
			return errors.Join(f, o.DSN.Redactor.Error(lerr))
		}
		f.Leftovers = leftovers
	}
	return f
}

// upOptionsRE finds dbmate's "-- migrate:up" line and its options.
var upOptionsRE = regexp.MustCompile(`(?m)^--\s*migrate:up(.*)$`)

// nonTransactional reports a migration file whose up section dbmate runs
// outside a transaction ("-- migrate:up transaction:false").
func nonTransactional(fsys fs.FS, name string) bool {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return false
	}
	m := upOptionsRE.FindSubmatch(b)
	if m == nil {
		return false
	}
	for _, opt := range strings.Fields(string(m[1])) {
		if opt == "transaction:false" {
			return true
		}
	}
	return false
}

// InvalidIndexes lists the indexes PostgreSQL marks invalid, schema-qualified
// and quoted for SQL: what a failed CREATE INDEX CONCURRENTLY leaves behind.
func InvalidIndexes(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `select format('%I.%I', n.nspname, c.relname)
		from pg_index i join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace
		where not i.indisvalid order by 1`)
	if err != nil {
		return nil, fmt.Errorf("list invalid indexes: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list invalid indexes: %w", err)
	}
	return names, nil
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
		return fmt.Errorf("%w (waited %s, MIGRATE_LOCK_TIMEOUT in upgrade.conf)", ErrLockTimeout, timeout)
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
	return applyURL(d, d.DbmateURL(), fsys, out)
}

// applyURL is Apply with dbmate connecting to u.
func applyURL(d *dsn.DSN, u *url.URL, fsys fs.FS, out io.Writer) error {
	log := d.Redactor.Writer(out)
	defer log.Flush()
	db := dbmate.New(u)
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

// unrecordedOrWithoutDown verifies the checksums and returns the applied
// migrations this binary ships whose checksum or down section is not
// recorded.
func unrecordedOrWithoutDown(ctx context.Context, conn *pgx.Conn, o Options, s State) ([]Migration, error) {
	unrecorded, err := verifyChecksums(ctx, conn, o, s)
	if err != nil {
		return nil, err
	}
	missing, err := MissingDowns(ctx, conn, o.FS, s)
	if err != nil {
		return nil, o.DSN.Redactor.Error(err)
	}
	return union(unrecorded, missing), nil
}
