package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/amacneil/dbmate/v2/pkg/dbmate"
	"github.com/jackc/pgx/v5"
)

// DefaultLockWait bounds each lock wait of a migration when Options.LockWait
// is zero (MIGRATION_LOCK_WAIT in upgrade.conf).
const DefaultLockWait = 30 * time.Second

// Blocker is a session that held a lock a migration waited for, as
// pg_stat_activity showed it during the wait. Fields PostgreSQL hides from a
// role that may not see that session's details are zero.
type Blocker struct {
	PID             int
	User            string
	ApplicationName string
	ClientAddr      string
	BackendStart    time.Time
	XactStart       time.Time // zero: not in a transaction (or hidden)
	State           string    // e.g. "idle in transaction"
	QueryStart      time.Time
}

func (b Blocker) String() string {
	s := fmt.Sprintf("pid %d", b.PID)
	if b.User != "" {
		s += ", user " + b.User
	}
	s += fmt.Sprintf(", application_name %q", b.ApplicationName)
	if b.ClientAddr != "" {
		s += ", client " + b.ClientAddr
	}
	if b.State != "" {
		s += fmt.Sprintf(", state %q", b.State)
	}
	s += ", backend_start " + stamp(b.BackendStart) + ", xact_start " + stamp(b.XactStart) + ", query_start " + stamp(b.QueryStart)
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

// LockWaitError reports a migration that waited longer than the lock wait
// bound for a lock another session held. Its transaction was rolled back:
// nothing of it was applied; the migrations before it in this run stay.
type LockWaitError struct {
	Migration  Migration
	Relation   string    // the table waited for, schema-qualified; "" for a row or transaction lock
	Blockers   []Blocker // the sessions holding it, seen while the migration waited
	Wait       time.Duration
	Applied    []Migration // applied by this run, before it
	NotApplied []Migration // after it
	Err        error       // the database's error
}

func (e *LockWaitError) Error() string {
	what := "a row or transaction lock"
	if e.Relation != "" {
		what = "a lock on table " + e.Relation
	}
	var b strings.Builder
	fmt.Fprintf(&b, "migration %s waited %s (MIGRATION_LOCK_WAIT in upgrade.conf) for %s held by another session, and was rolled back",
		e.Migration.Name, e.Wait, what)
	fmt.Fprintf(&b, "\napplied in this run: %s; not applied: %s", orNone(migrationNames(e.Applied)), migrationNames(append([]Migration{e.Migration}, e.NotApplied...)))
	var pids []string
	for _, bl := range e.Blockers {
		fmt.Fprintf(&b, "\nblocking session: %s", bl)
		pids = append(pids, strconv.Itoa(bl.PID))
	}
	if len(e.Blockers) == 0 {
		b.WriteString("\nthe blocking session ended before it could be identified")
		return b.String()
	}
	fmt.Fprintf(&b, "\nLet it finish, or end it (SELECT pg_terminate_backend(%s);).",
		strings.Join(pids, "), pg_terminate_backend("))
	return b.String()
}

func (e *LockWaitError) Unwrap() error { return e.Err }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// isLockTimeout reports PostgreSQL's lock_not_available (55P03), which
// lock_timeout raises, from either driver (dbmate's error hides it in a
// QueryError).
func isLockTimeout(err error) bool {
	var q *dbmate.QueryError // does not unwrap
	if errors.As(err, &q) {
		err = q.Err
	}
	var st interface{ SQLState() string }
	return errors.As(err, &st) && st.SQLState() == "55P03"
}

// applicationName names dbmate's session so the lock watch finds it: unique
// per process, and only one process migrates at a time (the advisory lock).
func applicationName() string { return fmt.Sprintf("openwatch migrate (pid %d)", os.Getpid()) }

// withLockWait is dbmate's URL with the session's lock_timeout and
// application_name set: lib/pq sends unknown URL parameters to the server as
// session settings.
func withLockWait(u *url.URL, wait time.Duration, app string) *url.URL {
	q := u.Query()
	q.Set("lock_timeout", strconv.FormatInt(max(wait.Milliseconds(), 1), 10))
	q.Set("application_name", app)
	c := *u
	c.RawQuery = q.Encode()
	return &c
}

// lockWatch polls, on conn, which sessions block the session named app,
// keeping the last sighting: once lock_timeout has cancelled the wait, they
// can no longer be asked for.
type lockWatch struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	relation string
	blockers []Blocker
}

const blockersQuery = `select coalesce((select format('%I.%I', n.nspname, c.relname)
		from pg_locks l join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace
		where l.pid = w.pid and not l.granted limit 1), ''),
	b.pid, coalesce(b.usename::text, ''), coalesce(b.application_name, ''), coalesce(host(b.client_addr), ''),
	b.backend_start, b.xact_start, coalesce(b.state, ''), b.query_start
from pg_stat_activity w
cross join lateral unnest(pg_blocking_pids(w.pid)) as bp(pid)
join pg_stat_activity b on b.pid = bp.pid
where w.application_name = $1 and w.pid <> pg_backend_pid()
order by b.pid`

// watchLocks starts polling every interval until Stop. conn must not be used
// by anyone else until then.
func watchLocks(ctx context.Context, conn *pgx.Conn, app string, every time.Duration) *lockWatch {
	w := &lockWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			rel, bl, err := blockers(ctx, conn, app)
			if err != nil || len(bl) == 0 {
				continue
			}
			w.mu.Lock()
			w.relation, w.blockers = rel, bl
			w.mu.Unlock()
		}
	}()
	return w
}

// Stop ends the polling and returns the last sighting.
func (w *lockWatch) Stop() (string, []Blocker) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.relation, w.blockers
}

func blockers(ctx context.Context, conn *pgx.Conn, app string) (string, []Blocker, error) {
	rows, err := conn.Query(ctx, blockersQuery, app)
	if err != nil {
		return "", nil, err
	}
	defer rows.Close()
	var rel string
	var out []Blocker
	for rows.Next() {
		var b Blocker
		var xact, query, start *time.Time
		if err := rows.Scan(&rel, &b.PID, &b.User, &b.ApplicationName, &b.ClientAddr, &start, &xact, &b.State, &query); err != nil {
			return "", nil, err
		}
		for _, p := range []struct {
			dst *time.Time
			src *time.Time
		}{{&b.BackendStart, start}, {&b.XactStart, xact}, {&b.QueryStart, query}} {
			if p.src != nil {
				*p.dst = *p.src
			}
		}
		out = append(out, b)
	}
	return rel, out, rows.Err()
}

// pollEvery is how often the lock watch looks: often enough to see a
// blocker several times within the wait bound.
func pollEvery(wait time.Duration) time.Duration {
	return min(max(wait/5, 10*time.Millisecond), 250*time.Millisecond)
}

// applyOne lets dbmate apply the migrations in fsys (next, the one pending,
// last) with each lock wait bounded by o.LockWait, while conn watches for the
// sessions that block it. It returns the last blockers seen with the error.
func applyOne(ctx context.Context, conn *pgx.Conn, o Options, fsys fs.FS, next Migration) (string, []Blocker, error) {
	wait := o.lockWait()
	app := applicationName()
	w := watchLocks(ctx, conn, app, pollEvery(wait))
	err := applyURL(o.DSN, withLockWait(o.DSN.DbmateURL(), wait, app), recordingFS{FS: fsys, next: next}, o.Out)
	rel, bl := w.Stop()
	return rel, bl, err
}

func (o Options) lockWait() time.Duration {
	if o.LockWait > 0 {
		return o.LockWait
	}
	return DefaultLockWait
}

// lockWaitFailure is the *LockWaitError for a transactional migration m that
// failed because lock_timeout ended its wait, or nil.
func lockWaitFailure(o Options, m Migration, applied []Migration, after State, relation string, blockers []Blocker, err error) *LockWaitError {
	if !isLockTimeout(err) || nonTransactional(o.FS, m.Name) || len(after.Pending) == 0 || after.Pending[0].Name != m.Name {
		return nil
	}
	return &LockWaitError{Migration: m, Relation: relation, Blockers: blockers, Wait: o.lockWait(),
		Applied: applied, NotApplied: after.Pending[1:], Err: err}
}
