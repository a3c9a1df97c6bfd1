// Package rehearse applies the pending migrations to a scratch copy of the
// database while the service keeps running, so that a migration that fails
// on this database's data (a unique index over duplicates, a NOT NULL over
// empty values) is found before anything is stopped. The live database is
// only read: pg_dump takes one snapshot of it, pg_restore writes the copy
// into a new database, and the migrations run there, one at a time, timed.
//
// The scratch database never outlives the rehearsal. Run drops it on every
// path, also when its context ends (SIGTERM, SIGINT, SIGHUP), in a way its
// owner may while autovacuum works on it; if even that fails (a session of
// another role stays on it), the rehearsal's result stands and
// Report.DropErr names the copy and its DROP DATABASE. A run killed outright
// leaves it behind; the next run drops it first (DropLeftovers, which the
// preflight calls also when it does not rehearse). Each Run holds, from before
// it creates its scratch database until it has dropped it, a session-level
// advisory lock named for that database in the maintenance database, and
// records on the scratch database (COMMENT ON DATABASE) which database it
// copies: a leftover is a database with a rehearsal's name, owned by this
// role, copying this database (or with no record yet: killed between CREATE
// DATABASE and COMMENT), whose lock nobody holds.
package rehearse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/amacneil/dbmate/v2/pkg/dbmate"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate"
	"github.com/openwatch/openwatch/internal/progress"
)

var (
	// Prefix starts the name of every scratch database; a random 16-digit
	// hex number follows.
	Prefix = strings.ReplaceAll(defaults.PackageName, "-", "_") + "_rehearsal_"
	nameRE = regexp.MustCompile("^" + regexp.QuoteMeta(Prefix) + "[0-9a-f]{16}$")
)

// IsName reports whether s is a scratch database's name.
func IsName(s string) bool { return nameRE.MatchString(s) }

// marker identifies a scratch database's record.
const marker = "openwatch rehearsal"

// record is what a scratch database says about itself (its COMMENT).
type record struct {
	Marker  string    `json:"openwatch"`
	Source  string    `json:"source"` // the database it is a copy of
	Started time.Time `json:"started"`
	PID     int       `json:"pid"`
}

// CannotError means the rehearsal could not run (or, with Facts.Problem,
// cannot): nothing was changed.
type CannotError struct {
	Reason string // why, a sentence
	Fix    string // the statement a DBA runs, or ""
	Err    error
}

func (e *CannotError) Error() string {
	s := e.Reason
	if e.Fix != "" {
		s += "; a superuser grants it with: " + e.Fix
	}
	return s
}

func (e *CannotError) Unwrap() error { return e.Err }

// Step is one migration that succeeded on the copy.
type Step struct {
	Migration migrate.Migration
	Took      time.Duration
}

// WouldFailError reports the migration that failed on the copy: the same
// migration would fail on the live database.
type WouldFailError struct {
	Failed *migrate.FailedError // as the copy saw it; its Applied are the ones rehearsed before it
	Took   time.Duration
}

func (e *WouldFailError) Error() string {
	return fmt.Sprintf("migration %s would fail on this database: %v", e.Failed.Failed.Name, e.Failed.Err)
}

func (e *WouldFailError) Unwrap() error { return e.Failed }

// InterruptedError reports a rehearsal stopped by its context.
type InterruptedError struct {
	Rehearsed    []Step
	NotRehearsed []migrate.Migration
	Err          error // the context's cause
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("the rehearsal was interrupted (%v)", e.Err)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// Facts are what decides whether a rehearsal can run now.
type Facts struct {
	Role      string
	CanCreate bool  // superuser or CREATEDB: may create the scratch database
	Size      int64 // pg_database_size of the live database
	// Space is the room on the server for the copy, measured as for a clone
	// (clone.MeasureSpace); SpaceErr says why it could not be.
	Space    clone.Space
	SpaceErr error
	// ServerVersion is server_version_num.
	ServerVersion int
}

// Inspect reads the Facts of the database conn is connected to.
func Inspect(ctx context.Context, conn *pgx.Conn) (Facts, error) {
	var f Facts
	var super, createdb bool
	err := conn.QueryRow(ctx, `select current_user, r.rolsuper, r.rolcreatedb, pg_database_size(current_database()),
			current_setting('server_version_num')::int
		from pg_roles r where r.rolname = current_user`).Scan(&f.Role, &super, &createdb, &f.Size, &f.ServerVersion)
	if err != nil {
		return f, fmt.Errorf("read the role's privileges and the database's size: %w", err)
	}
	f.CanCreate = super || createdb
	f.Space, f.SpaceErr = clone.MeasureSpace(ctx, conn)
	return f, nil
}

// Problem says why a rehearsal cannot run, or nil. uncheckedSpace allows a
// rehearsal when the free space on the server cannot be measured (never
// when it is measured and too small).
func (f Facts) Problem(uncheckedSpace bool) *CannotError {
	switch {
	case !f.CanCreate:
		return &CannotError{Reason: fmt.Sprintf("role %q lacks CREATEDB, which the rehearsal needs for its scratch copy of the database", f.Role),
			Fix: fmt.Sprintf("ALTER ROLE %s CREATEDB;", clone.Ident(f.Role))}
	case f.SpaceErr == nil && !f.Space.Enough():
		return &CannotError{Reason: fmt.Sprintf("not enough free space on the database server for the rehearsal's copy: %s free in %s, the copy needs %s (the database's %s plus %s that must stay free for WAL)",
			progress.Bytes(f.Space.Free), f.Space.Dir, progress.Bytes(f.Space.Need), progress.Bytes(f.Space.DBSize), progress.Bytes(f.Space.Need-f.Space.DBSize))}
	case f.SpaceErr != nil && !uncheckedSpace:
		return &CannotError{Reason: fmt.Sprintf("the free space on the database server cannot be checked (%v), and the rehearsal's copy must not fill the server's disk", f.SpaceErr), Err: f.SpaceErr}
	}
	return nil
}

// Options configure Run.
type Options struct {
	DSN *dsn.DSN
	FS  fs.FS     // migrations at the root
	Out io.Writer // progress lines
	// LockWait bounds each lock wait of a migration, as for migrate.Run.
	LockWait time.Duration
	// UncheckedSpace lets the rehearsal run when the server's free space
	// cannot be measured (Facts.Problem).
	UncheckedSpace bool
}

// Report tells what Run did.
type Report struct {
	Pending  []migrate.Migration // what this binary would apply
	Facts    Facts
	Dropped  []string // scratch databases of killed runs, dropped first
	Scratch  string   // this run's scratch database, "" when none was created
	CopySize int64    // the copy's size on the server
	CopyTook time.Duration
	Steps    []Step // the migrations that succeeded on the copy, in order
	Total    time.Duration
	// DropErr says why the scratch database could not be dropped, naming
	// its DROP DATABASE (the next run drops it too). It is housekeeping:
	// it never is Run's error, and the rehearsal's result stands.
	DropErr error
}

// MigrationTime is the time the migrations took on the copy: the estimate of
// the time they take on the live database.
func (r Report) MigrationTime() time.Duration {
	var d time.Duration
	for _, s := range r.Steps {
		d += s.Took
	}
	return d
}

// Run rehearses the pending migrations of the database o.DSN names. With
// nothing pending it copies nothing (Report.Pending is empty).
//
// Errors: *dsn.UnreachableError, *migrate.NewerSchemaError,
// *migrate.ChecksumError, *CannotError, *WouldFailError, *InterruptedError
// (whatever step ctx ended in), or another. A scratch database that could
// not be dropped is Report.DropErr, never the error.
func Run(ctx context.Context, o Options) (rep Report, err error) {
	started := time.Now()
	defer func() { rep.Total = time.Since(started) }()
	// A step that fails because ctx ended (SIGTERM while the copy is
	// created or loaded) was interrupted: it is not a rehearsal that could
	// not run, which REHEARSE=auto would skip and go on.
	defer func() {
		var wf *WouldFailError
		var newer *migrate.NewerSchemaError
		var sum *migrate.ChecksumError
		var ie *InterruptedError
		if err == nil || ctx.Err() == nil || errors.As(err, &wf) || errors.As(err, &newer) || errors.As(err, &sum) || errors.As(err, &ie) {
			return
		}
		err = &InterruptedError{Rehearsed: rep.Steps, NotRehearsed: rep.Pending[min(len(rep.Steps), len(rep.Pending)):], Err: context.Cause(ctx)}
	}()
	conn, err := o.DSN.Connect(ctx)
	if err != nil {
		return rep, err
	}
	defer conn.Close(context.Background())
	src := o.DSN.Config.Database
	s, err := migrate.ReadState(ctx, conn, o.FS)
	if err != nil {
		return rep, o.DSN.Redactor.Error(err)
	}
	if s.Newer() {
		return rep, &migrate.NewerSchemaError{State: s}
	}
	if _, err := migrate.VerifyChecksums(ctx, conn, o.FS, s); err != nil {
		return rep, o.DSN.Redactor.Error(err)
	}
	rep.Pending = s.Pending
	if len(s.Pending) == 0 {
		return rep, nil
	}
	if rep.Facts, err = Inspect(ctx, conn); err != nil {
		return rep, o.DSN.Redactor.Error(err)
	}
	maint, merr := clone.Maintenance(ctx, o.DSN)
	if merr == nil {
		defer maint.Close(context.Background())
		// Before the room is judged: a killed run's copy takes some of it.
		if rep.Dropped, err = dropLeftovers(ctx, maint, src); err != nil {
			return rep, o.DSN.Redactor.Error(err)
		}
		for _, n := range rep.Dropped {
			fmt.Fprintf(o.Out, "rehearsal: dropped %s, the scratch database a killed rehearsal left\n", n)
		}
		if len(rep.Dropped) > 0 {
			if rep.Facts, err = Inspect(ctx, conn); err != nil {
				return rep, o.DSN.Redactor.Error(err)
			}
		}
	}
	if p := rep.Facts.Problem(o.UncheckedSpace); p != nil {
		return rep, p
	}
	if merr != nil {
		return rep, &CannotError{Reason: "the rehearsal cannot create its scratch database: " + merr.Error(), Err: merr}
	}
	if rep.Facts.SpaceErr != nil {
		fmt.Fprintf(o.Out, "rehearsal: the free space on the database server was not checked (%v)\n", o.DSN.Redactor.Error(rep.Facts.SpaceErr))
	}
	if rep.Scratch, err = lockName(ctx, maint); err != nil {
		return rep, &CannotError{Reason: "the rehearsal could not create its scratch database: " + o.DSN.Redactor.Error(err).Error(), Err: err}
	}
	// From here on the scratch database may exist (CREATE DATABASE may
	// complete although its statement was cancelled): it is dropped on
	// every path, and rep.Scratch is "" only once it is known not to exist.
	defer func() {
		existed, derr := dropScratch(o.DSN, maint, rep.Scratch)
		if derr != nil {
			rep.DropErr = fmt.Errorf("the scratch database %s could not be dropped (%v); the next rehearsal or preflight drops it, or drop it now with: DROP DATABASE %s;",
				rep.Scratch, o.DSN.Redactor.Error(derr), clone.Ident(rep.Scratch))
			return
		}
		if !existed {
			rep.Scratch = ""
			return
		}
		fmt.Fprintf(o.Out, "rehearsal: dropped the scratch database %s\n", rep.Scratch)
	}()
	if err = create(ctx, maint, rep.Scratch, src); err != nil {
		return rep, &CannotError{Reason: "the rehearsal could not create its scratch database: " + o.DSN.Redactor.Error(err).Error(), Err: err}
	}
	// Work on the copy stops when ctx ends: its sessions are ended (a
	// migration in progress there is of no use to anyone).
	stop := context.AfterFunc(ctx, func() { terminate(o.DSN, rep.Scratch) })
	defer stop()

	scratch := o.DSN.WithDatabase(rep.Scratch)
	fmt.Fprintf(o.Out, "rehearsal: copying database %q (%s) into the scratch database %s with pg_dump | pg_restore; the service keeps running…\n",
		src, progress.Bytes(rep.Facts.Size), rep.Scratch)
	t := time.Now()
	err = dump.CopyInto(ctx, o.DSN, scratch)
	rep.CopyTook = time.Since(t)
	if ctx.Err() != nil {
		return rep, &InterruptedError{NotRehearsed: s.Pending, Err: context.Cause(ctx)}
	}
	if err != nil {
		return rep, &CannotError{Reason: "the database could not be copied into the scratch database: " + err.Error(), Err: err}
	}
	if err := maint.QueryRow(ctx, "select pg_database_size($1::text)", rep.Scratch).Scan(&rep.CopySize); err != nil {
		return rep, fmt.Errorf("read the size of the scratch database: %w", err)
	}
	fmt.Fprintf(o.Out, "rehearsal: copied in %s; the copy takes %s on the database server\n", progress.Duration(rep.CopyTook), progress.Bytes(rep.CopySize))

	known, err := migrate.Known(o.FS)
	if err != nil {
		return rep, err
	}
	for i, m := range s.Pending {
		if ctx.Err() != nil {
			return rep, &InterruptedError{Rehearsed: rep.Steps, NotRehearsed: s.Pending[i:], Err: context.Cause(ctx)}
		}
		t := time.Now()
		_, err := migrate.Run(ctx, migrate.Options{DSN: scratch, FS: migrate.UpTo(o.FS, known, m), Out: io.Discard,
			LockTimeout: time.Minute, LockWait: o.LockWait})
		took := time.Since(t)
		if ctx.Err() != nil {
			return rep, &InterruptedError{Rehearsed: rep.Steps, NotRehearsed: s.Pending[i:], Err: context.Cause(ctx)}
		}
		var failed *migrate.FailedError
		if errors.As(err, &failed) && failed.Failed.Name == m.Name {
			failed.Applied, failed.NotApplied = nil, s.Pending[i+1:]
			for _, st := range rep.Steps {
				failed.Applied = append(failed.Applied, st.Migration)
			}
			fmt.Fprintf(o.Out, "rehearsal: %s FAILED after %s\n", m.Name, Duration(took))
			return rep, &WouldFailError{Failed: failed, Took: took}
		}
		if err != nil {
			return rep, fmt.Errorf("rehearse migration %s: %w", m.Name, err)
		}
		rep.Steps = append(rep.Steps, Step{Migration: m, Took: took})
		fmt.Fprintf(o.Out, "rehearsal: %s ok in %s\n", m.Name, Duration(took))
	}
	return rep, nil
}

// lockName picks a new scratch database's name and takes its lock.
func lockName(ctx context.Context, maint *pgx.Conn) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	name := Prefix + hex.EncodeToString(b)
	var got bool
	if err := maint.QueryRow(ctx, "select pg_try_advisory_lock("+lockKey+")", name).Scan(&got); err != nil || !got {
		return "", fmt.Errorf("lock the scratch database's name %s: %v", name, err)
	}
	return name, nil
}

// create creates the scratch database name with the source's encoding and
// locale (a unique index compares by collation) and records it. The caller
// drops it, whatever create returns.
func create(ctx context.Context, maint *pgx.Conn, name, src string) error {
	var enc, collate, ctype, provider, locale string
	err := maint.QueryRow(ctx, `select pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
			coalesce(to_jsonb(d)->>'datlocprovider', 'c'), coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale', '')
		from pg_database d where d.datname = $1`, src).Scan(&enc, &collate, &ctype, &provider, &locale)
	if err != nil {
		return fmt.Errorf("read the encoding and locale of database %q: %w", src, err)
	}
	stmt := fmt.Sprintf("CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s",
		clone.Ident(name), clone.Literal(enc), clone.Literal(collate), clone.Literal(ctype))
	switch provider {
	case "i":
		stmt += " LOCALE_PROVIDER icu ICU_LOCALE " + clone.Literal(locale)
	case "b":
		stmt += " LOCALE_PROVIDER builtin BUILTIN_LOCALE " + clone.Literal(locale)
	}
	if _, err := maint.Exec(ctx, stmt); err != nil {
		return err
	}
	rec, _ := json.Marshal(record{Marker: marker, Source: src, Started: time.Now().UTC().Truncate(time.Second), PID: os.Getpid()})
	for _, q := range []string{
		fmt.Sprintf("COMMENT ON DATABASE %s IS %s", clone.Ident(name), clone.Literal(string(rec))),
		fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", clone.Ident(name)),
	} {
		if _, err := maint.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// lockKey is the advisory lock key of the scratch database named $1.
const lockKey = "hashtextextended('openwatch rehearsal ' || $1::text, 0)"

// Leftovers lists the scratch databases of killed rehearsals of database
// src, as seen from maint: a rehearsal's name, owned by this role, recording
// src as its source or nothing at all, and nobody holding its lock. It
// takes each one's lock; the caller drops them, then closes maint.
func leftovers(ctx context.Context, maint *pgx.Conn, src string) ([]string, error) {
	rows, err := maint.Query(ctx, `select datname, coalesce(shobj_description(oid, 'pg_database'), '')
		from pg_database where starts_with(datname, $1) and datdba = (select oid from pg_roles where rolname = current_user)
		order by datname`, Prefix)
	if err != nil {
		return nil, fmt.Errorf("list the rehearsals' scratch databases: %w", err)
	}
	type candidate struct{ name, comment string }
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
		var c candidate
		return c, r.Scan(&c.name, &c.comment)
	})
	if err != nil {
		return nil, fmt.Errorf("list the rehearsals' scratch databases: %w", err)
	}
	var names []string
	for _, c := range cands {
		if !IsName(c.name) {
			continue
		}
		if c.comment != "" {
			var r record
			if json.Unmarshal([]byte(c.comment), &r) != nil || r.Marker != marker || r.Source != src {
				continue // another database's rehearsal, or not a rehearsal's
			}
		}
		var got bool
		if err := maint.QueryRow(ctx, "select pg_try_advisory_lock("+lockKey+")", c.name).Scan(&got); err != nil {
			return nil, fmt.Errorf("check whether a rehearsal uses %s: %w", c.name, err)
		}
		if got { // else a rehearsal running now holds it
			names = append(names, c.name)
		}
	}
	return names, nil
}

// DropLeftovers drops the scratch databases killed rehearsals of the
// database d names left (see leftovers) and returns their names. It needs
// no CREATEDB (the role owns them); the preflight runs it whether or not it
// rehearses, since a leftover takes the room a rehearsal would measure.
func DropLeftovers(ctx context.Context, d *dsn.DSN) ([]string, error) {
	maint, err := clone.Maintenance(ctx, d)
	if err != nil {
		return nil, err
	}
	defer maint.Close(context.Background())
	names, err := dropLeftovers(ctx, maint, d.Config.Database)
	return names, d.Redactor.Error(err)
}

func dropLeftovers(ctx context.Context, maint *pgx.Conn, src string) ([]string, error) {
	names, err := leftovers(ctx, maint, src)
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		if _, err := dropDatabase(ctx, maint, n); err != nil {
			return names[:i], fmt.Errorf("drop %s, the scratch database a killed rehearsal left: %w; drop it with: DROP DATABASE %s;", n, err, clone.Ident(n))
		}
		maint.Exec(ctx, "select pg_advisory_unlock("+lockKey+")", n)
	}
	return names, nil
}

// Leftover is a scratch database a killed rehearsal left (ListLeftovers).
type Leftover struct {
	Name    string
	Size    int64
	Started time.Time // zero when it holds no record
}

// DropStatement is the statement that drops the leftover.
func (l Leftover) DropStatement() string { return "DROP DATABASE " + clone.Ident(l.Name) + ";" }

// ListLeftovers lists, changing nothing, the scratch databases killed
// rehearsals of the database d names left: what migrate --status shows
// and the next rehearsal or preflight drops.
func ListLeftovers(ctx context.Context, d *dsn.DSN) ([]Leftover, error) {
	maint, err := clone.Maintenance(ctx, d)
	if err != nil {
		return nil, err
	}
	defer maint.Close(context.Background()) // releases the locks leftovers took
	names, err := leftovers(ctx, maint, d.Config.Database)
	if err != nil {
		return nil, d.Redactor.Error(err)
	}
	var ls []Leftover
	for _, n := range names {
		l := Leftover{Name: n}
		var comment string
		if err := maint.QueryRow(ctx, "select pg_database_size(oid), coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = $1", n).Scan(&l.Size, &comment); err != nil {
			continue // dropped meanwhile
		}
		var r record
		if json.Unmarshal([]byte(comment), &r) == nil {
			l.Started = r.Started
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// dropAttempts bounds the DROP DATABASE attempts on a scratch database
// another session stays on (each waits up to 5 s for it).
const dropAttempts = 3

// dropDatabase drops the scratch database name, in a way its owner may
// while autovacuum works on it: DROP DATABASE ... WITH (FORCE) must end
// every session on it and fails on one the role may not end (an autovacuum
// worker's: "permission denied to terminate process", as measured on a
// freshly loaded copy). Instead it refuses new connections, ends the
// sessions of this role (pg_restore's and the migrations' of a killed run)
// and runs a plain DROP DATABASE, which itself stops the autovacuum workers
// there; a session of another role makes that fail after 5 s, and it is
// retried.
// existed says whether there was a database to drop.
func dropDatabase(ctx context.Context, conn *pgx.Conn, name string) (existed bool, err error) {
	id := clone.Ident(name)
	for i := 0; i < dropAttempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return true, errors.Join(err, ctx.Err())
			case <-time.After(time.Second):
			}
		}
		var exists bool
		if err := conn.QueryRow(ctx, "select exists (select from pg_database where datname = $1)", name).Scan(&exists); err != nil {
			return true, err
		}
		if !exists {
			return i > 0, nil
		}
		// Their errors are the DROP's to report.
		conn.Exec(ctx, "ALTER DATABASE "+id+" ALLOW_CONNECTIONS false")
		conn.Exec(ctx, terminateOwn, name)
		if _, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+id); err == nil {
			return true, nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use: another session stays
			return true, err
		}
	}
	return true, err
}

// terminateOwn ends the sessions on database $1 the role may end: its own,
// or every one for a superuser (pg_terminate_backend fails as a whole on
// one it may not).
const terminateOwn = `select pg_terminate_backend(pid) from pg_stat_activity
	where datname = $1 and pid <> pg_backend_pid()
	  and (usesysid = (select oid from pg_roles where rolname = current_user)
	       or (select rolsuper from pg_roles where rolname = current_user))`

// dropScratch drops this run's scratch database and releases its lock, on
// maint or, if that session is gone (a query cancelled by a signal closes
// it), on a new one. existed says whether there was a database to drop.
func dropScratch(d *dsn.DSN, maint *pgx.Conn, name string) (existed bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := maint
	if conn.IsClosed() {
		other, err := clone.Maintenance(ctx, d)
		if err != nil {
			return true, err
		}
		defer other.Close(context.Background())
		conn = other
	}
	if existed, err = dropDatabase(ctx, conn, name); err == nil && conn == maint {
		maint.Exec(ctx, "select pg_advisory_unlock("+lockKey+")", name)
	}
	return existed, err
}

// terminate ends this role's sessions on the scratch database name
// (pg_restore and the migrations), best effort.
func terminate(d *dsn.DSN, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := clone.Maintenance(ctx, d)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	conn.Exec(ctx, terminateOwn, name)
}

// Detail is the DETAIL (and HINT) PostgreSQL sent with a migration's error,
// such as the duplicated key of a unique index: what names the rows to
// correct. "" when there is none.
func Detail(err error) string {
	var q *dbmate.QueryError // does not unwrap
	if errors.As(err, &q) {
		err = q.Err
	}
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		return ""
	}
	var parts []string
	if pqErr.Detail != "" {
		parts = append(parts, pqErr.Detail)
	}
	if pqErr.Hint != "" {
		parts = append(parts, "hint: "+pqErr.Hint)
	}
	return strings.Join(parts, "; ")
}

// Duration formats a migration's time: milliseconds below a tenth of a
// second (where progress.Duration shows 0s), else as progress.Duration.
func Duration(d time.Duration) string {
	if d < 100*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return progress.Duration(d)
}
