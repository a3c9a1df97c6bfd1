package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/amacneil/dbmate/v2/pkg/dbmate"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DownTable keeps, for every applied migration, its "-- migrate:down"
// section and the sha256 of the file it was taken from (the one recorded in
// ChecksumTable), so that a binary that does not ship the file — an older
// one, after a downgrade — can still roll it back (Down). It lives next to
// schema_migrations and is written in the migration's own transaction.
const DownTable = "openwatch_migration_down"

const createDownTable = `CREATE TABLE IF NOT EXISTS ` + DownTable + ` (
    version          text PRIMARY KEY,
    file             text NOT NULL,
    sha256           text NOT NULL,
    down             text NOT NULL,
    down_transaction boolean NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
)`

// Section is a migration file's down section as dbmate parses it.
type Section struct {
	SQL         string // after the "-- migrate:down" line, to the end of the file
	Transaction bool   // false for "-- migrate:down transaction:false"
}

// Empty reports a down section without a statement: no way down.
func (s Section) Empty() bool {
	for _, l := range strings.Split(s.SQL, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") {
			return false
		}
	}
	return true
}

// ParseDown returns the down section of the migration file b, with dbmate's
// own parser (the one that runs the up section).
func ParseDown(name string, b []byte) (Section, error) {
	parsed, err := (&dbmate.Migration{FS: oneFile{name: name, b: b}, FilePath: name, FileName: name}).Parse()
	if err != nil {
		return Section{}, fmt.Errorf("parse migration %s: %w", name, err)
	}
	if len(parsed) != 1 {
		return Section{}, fmt.Errorf("parse migration %s: %d up sections, want one", name, len(parsed))
	}
	// The section without its "-- migrate:down" line: the record of it goes
	// into the up section (withChecksumRecord), where that line would end it.
	_, body, _ := strings.Cut(parsed[0].Down, "\n")
	return Section{SQL: body, Transaction: parsed[0].DownOptions.Transaction()}, nil
}

// oneFile is an fs.ReadFileFS holding one file, for dbmate's parser.
type oneFile struct {
	name string
	b    []byte
}

func (o oneFile) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
}

func (o oneFile) ReadFile(name string) ([]byte, error) {
	if name != o.name {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return o.b, nil
}

// downRecord is the SQL that records m's down section (taken from the file
// b) in DownTable; replace says whether an existing record is replaced (in
// the migration's own transaction) or kept (when recording afterwards).
func downRecord(m Migration, b []byte, replace bool) (string, error) {
	sec, err := ParseDown(m.Name, b)
	if err != nil {
		return "", err
	}
	conflict := "DO NOTHING"
	if replace {
		conflict = "DO UPDATE SET file = EXCLUDED.file, sha256 = EXCLUDED.sha256, down = EXCLUDED.down," +
			" down_transaction = EXCLUDED.down_transaction, recorded_at = now()"
	}
	return fmt.Sprintf("%s;\nINSERT INTO %s (version, file, sha256, down, down_transaction) VALUES (%s, %s, %s, %s, %t)\n    ON CONFLICT (version) %s",
		createDownTable, DownTable, sqlString(m.Version), sqlString(m.Name), sqlString(Checksum(b)), dollarQuote(sec.SQL), sec.Transaction, conflict), nil
}

// dollarQuote quotes s for SQL with a dollar-quote tag s does not contain:
// it is read the same whatever standard_conforming_strings says.
func dollarQuote(s string) string {
	tag := "$openwatch_down$"
	for n := 0; strings.Contains(s, tag); n++ {
		tag = fmt.Sprintf("$openwatch_down_%d$", n)
	}
	return tag + s + tag
}

// storedDown is one row of DownTable.
type storedDown struct {
	Migration
	sha256 string
	Section
}

// storedDowns reads DownTable; a database without it has none.
func storedDowns(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[string]storedDown, error) {
	out := map[string]storedDown{}
	rows, err := q.Query(ctx, "select version, file, sha256, down, down_transaction from "+DownTable)
	if err == nil {
		for rows.Next() {
			var d storedDown
			if err = rows.Scan(&d.Version, &d.Name, &d.sha256, &d.SQL, &d.Transaction); err != nil {
				break
			}
			out[d.Version] = d
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", DownTable, err)
	}
	return out, nil
}

// MissingDowns lists the applied migrations this binary ships whose down
// sections are not stored in the database (applied by a release before
// openwatch stored them). It only reads.
func MissingDowns(ctx context.Context, conn *pgx.Conn, fsys fs.FS, s State) ([]Migration, error) {
	if len(s.Applied) == 0 {
		return nil, nil
	}
	stored, err := storedDowns(ctx, conn)
	if err != nil {
		return nil, err
	}
	known, err := Known(fsys)
	if err != nil {
		return nil, err
	}
	isApplied := map[string]bool{}
	for _, v := range s.Applied {
		isApplied[v] = true
	}
	var missing []Migration
	for _, m := range known {
		if _, ok := stored[m.Version]; isApplied[m.Version] && !ok {
			missing = append(missing, m)
		}
	}
	return missing, nil
}

// NoDownError refuses a move down across applied migrations whose down
// section is neither stored in the database nor shipped by this binary.
type NoDownError struct{ Versions []string }

func (e *NoDownError) Error() string {
	return fmt.Sprintf("no down section is stored in the database for the applied migration(s) %s, and this binary does not ship them"+
		" (they were applied by a release that did not store down sections); nothing was changed", strings.Join(e.Versions, ", "))
}

// NoWayDownError refuses, before anything changes, a move down across
// migrations whose down section is empty: they cannot be undone, only
// replaced by a restore point taken before them.
type NoWayDownError struct {
	Migrations []Migration
	Target     string
}

func (e *NoWayDownError) Error() string {
	return fmt.Sprintf("the schema cannot go down to %s: migration(s) %s have an empty -- migrate:down section (no way down); nothing was changed",
		e.Target, migrationNames(e.Migrations))
}

// DownMismatchError refuses a stored down section that does not belong to
// the applied migration: its file's checksum differs from the one recorded
// when the migration was applied.
type DownMismatchError struct {
	Migration        Migration
	Stored, Recorded string
}

func (e *DownMismatchError) Error() string {
	return fmt.Sprintf("the down section stored for %s was taken from a file with sha256 %s, but the migration was applied from one with sha256 %s; nothing was changed",
		e.Migration.Name, e.Stored, e.Recorded)
}

// UnknownTargetError refuses a target version that is neither applied nor
// shipped by this binary.
type UnknownTargetError struct {
	Target string
	State  State
}

func (e *UnknownTargetError) Error() string {
	return fmt.Sprintf("schema version %s is neither applied in the database nor one of this binary's migrations (applied: %s; this binary's head: %s)",
		e.Target, orNoneStr(strings.Join(e.State.Applied, ", ")), e.State.Head)
}

func orNoneStr(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// DownFailedError reports a down section that failed; the ones before it
// (newer migrations) are rolled back, it and the older ones are not.
type DownFailedError struct {
	RolledBack    []Migration // by this run, before the failure
	Failed        Migration
	NotRolledBack []Migration // after the failed one
	Err           error       // the database's error, password redacted
	// NonTransactional: the failed down section runs outside a transaction
	// ("-- migrate:down transaction:false"): what it did before the error
	// stays.
	NonTransactional bool
}

func (e *DownFailedError) Error() string {
	if e.NonTransactional {
		return fmt.Sprintf("rolling back migration %s failed and was not undone (its down section runs outside a transaction): %v", e.Failed.Name, e.Err)
	}
	return fmt.Sprintf("rolling back migration %s failed (its down section was rolled back; the migration stays applied): %v", e.Failed.Name, e.Err)
}

func (e *DownFailedError) Unwrap() error { return e.Err }

// DownResult tells what Down did.
type DownResult struct {
	Before     State
	RolledBack []Migration // newest first
}

// plan returns the applied migrations above target, newest first, with
// their down sections: the stored one, else (never stored) none.
func planDown(s State, target string, stored map[string]storedDown, sums map[string]recorded) ([]storedDown, error) {
	var plan []storedDown
	var missing []string
	var empty []Migration
	for i := len(s.Applied) - 1; i >= 0; i-- {
		v := s.Applied[i]
		if !versionLess(target, v) {
			break
		}
		d, ok := stored[v]
		if !ok {
			missing = append(missing, v)
			continue
		}
		if r, ok := sums[v]; ok && r.sha256 != d.sha256 {
			return nil, &DownMismatchError{Migration: d.Migration, Stored: d.sha256, Recorded: r.sha256}
		}
		if d.Empty() {
			empty = append(empty, d.Migration)
		}
		plan = append(plan, d)
	}
	if len(missing) > 0 {
		return nil, &NoDownError{Versions: missing}
	}
	if len(empty) > 0 {
		return nil, &NoWayDownError{Migrations: empty, Target: target}
	}
	return plan, nil
}

// Down moves the schema down to target, an applied version: it rolls back
// every applied migration newer than target, newest first, each with its
// stored down section in its own transaction (with its records in
// schema_migrations, ChecksumTable and DownTable), so it works for
// migrations this binary does not ship. Before anything changes it stores
// the down sections this binary ships that are missing (verified by the
// checksums), and refuses when a migration has no way down
// (*NoWayDownError, *NoDownError, *DownMismatchError). Under the migration
// lock it re-reads the state and calls o.BeforeApply (the restore point)
// before the first down section. When ctx ends, the migration in progress
// completes or fails and no further one starts (*InterruptedError, its
// Applied are the ones rolled back).
//
// Errors: *dsn.UnreachableError, *ChecksumError, *UnknownTargetError,
// *NoWayDownError, *NoDownError, *DownMismatchError, one wrapping
// ErrLockTimeout, *BackupError, *DownFailedError, *InterruptedError, or
// another.
func Down(ctx context.Context, o Options, target string) (DownResult, error) {
	conn, err := o.DSN.Connect(ctx)
	if err != nil {
		return DownResult{}, err
	}
	defer conn.Close(context.Background())
	s, plan, err := readDownPlan(ctx, conn, o, target)
	if err != nil || len(plan) == 0 {
		return DownResult{Before: s}, err
	}
	if err := Lock(ctx, conn, o.LockTimeout, func() {
		fmt.Fprintf(o.Out, "waiting up to %s for another openwatch migrate or restore to finish…\n", o.LockTimeout)
	}); err != nil {
		return DownResult{Before: s}, o.DSN.Redactor.Error(err)
	}
	unrecorded, err := verifyChecksums(ctx, conn, o, s)
	if err != nil {
		return DownResult{Before: s}, err
	}
	missing, err := MissingDowns(ctx, conn, o.FS, s)
	if err != nil {
		return DownResult{Before: s}, o.DSN.Redactor.Error(err)
	}
	if err := recordOnce(ctx, conn, o, union(unrecorded, missing)); err != nil {
		return DownResult{Before: s}, err
	}
	if s, plan, err = readDownPlan(ctx, conn, o, target); err != nil || len(plan) == 0 {
		return DownResult{Before: s}, err
	}
	res := DownResult{Before: s}
	if o.BeforeApply != nil {
		hasData, err := HasUserObjects(ctx, conn)
		if err != nil {
			return res, o.DSN.Redactor.Error(err)
		}
		if err := o.BeforeApply(ctx, s, hasData); err != nil {
			return res, &BackupError{Err: err}
		}
	}
	bg := context.WithoutCancel(ctx)
	lockWait := o.LockWait
	if lockWait <= 0 {
		lockWait = DefaultLockWait
	}
	for i, d := range plan {
		if ctx.Err() != nil {
			return res, &InterruptedError{Applied: res.RolledBack, NotApplied: migrationsOf(plan[i:]), Err: context.Cause(ctx)}
		}
		fmt.Fprintf(o.Out, "Rolling back: %s\n", d.Name)
		t := time.Now()
		if err := rollBack(bg, conn, d, lockWait); err != nil {
			return res, &DownFailedError{RolledBack: res.RolledBack, Failed: d.Migration, NotRolledBack: migrationsOf(plan[i+1:]),
				Err: o.DSN.Redactor.Error(err), NonTransactional: !d.Transaction}
		}
		fmt.Fprintf(o.Out, "Rolled back: %s in %s\n", d.Name, time.Since(t).Round(time.Millisecond))
		res.RolledBack = append(res.RolledBack, d.Migration)
	}
	return res, nil
}

// PlanDown tells, changing nothing, what Down would do: the migrations it
// would roll back, newest first, or why it refuses (the errors Down returns
// before it takes the lock).
func PlanDown(ctx context.Context, o Options, target string) (State, []Migration, error) {
	conn, err := o.DSN.Connect(ctx)
	if err != nil {
		return State{}, nil, err
	}
	defer conn.Close(context.Background())
	s, plan, err := readDownPlan(ctx, conn, o, target)
	return s, migrationsOf(plan), err
}

// readDownPlan reads the state and the plan to go down to target; it only
// reads. Known migrations whose down sections are missing count as stored
// (from the shipped file): Down stores them under the lock first.
func readDownPlan(ctx context.Context, conn *pgx.Conn, o Options, target string) (State, []storedDown, error) {
	s, err := ReadState(ctx, conn, o.FS)
	if err != nil {
		return s, nil, o.DSN.Redactor.Error(err)
	}
	known, err := Known(o.FS)
	if err != nil {
		return s, nil, err
	}
	if !isTarget(target, s, known) {
		return s, nil, &UnknownTargetError{Target: target, State: s}
	}
	if _, err := verifyChecksums(ctx, conn, o, State{Applied: withoutUnknown(s)}); err != nil {
		return s, nil, err
	}
	stored, err := storedDowns(ctx, conn)
	if err != nil {
		return s, nil, o.DSN.Redactor.Error(err)
	}
	sums, err := recordedChecksums(ctx, conn)
	if err != nil {
		return s, nil, o.DSN.Redactor.Error(err)
	}
	for _, m := range known {
		if _, ok := stored[m.Version]; ok {
			continue
		}
		b, err := fs.ReadFile(o.FS, m.Name)
		if err != nil {
			return s, nil, fmt.Errorf("read embedded migration %s: %w", m.Name, err)
		}
		sec, err := ParseDown(m.Name, b)
		if err != nil {
			return s, nil, err
		}
		stored[m.Version] = storedDown{Migration: m, sha256: Checksum(b), Section: sec}
	}
	plan, err := planDown(s, target, stored, sums)
	return s, plan, err
}

// isTarget: the version is applied, or one of the known migrations.
func isTarget(target string, s State, known []Migration) bool {
	for _, v := range s.Applied {
		if v == target {
			return true
		}
	}
	for _, m := range known {
		if m.Version == target {
			return true
		}
	}
	return false
}

func withoutUnknown(s State) []string {
	unknown := map[string]bool{}
	for _, v := range s.Unknown {
		unknown[v] = true
	}
	var out []string
	for _, v := range s.Applied {
		if !unknown[v] {
			out = append(out, v)
		}
	}
	return out
}

func union(a, b []Migration) []Migration {
	seen := map[string]bool{}
	var out []Migration
	for _, m := range append(append([]Migration(nil), a...), b...) {
		if !seen[m.Version] {
			seen[m.Version] = true
			out = append(out, m)
		}
	}
	return out
}

func migrationsOf(ds []storedDown) []Migration {
	var out []Migration
	for _, d := range ds {
		out = append(out, d.Migration)
	}
	return out
}

// forget removes a rolled-back migration's records.
var forget = []string{
	"delete from schema_migrations where version = $1",
	"delete from " + ChecksumTable + " where version = $1",
	"delete from " + DownTable + " where version = $1",
}

// rollBack runs d's down section and removes its records: in one
// transaction, or, for "-- migrate:down transaction:false", the section on
// its own and then the records.
func rollBack(ctx context.Context, conn *pgx.Conn, d storedDown, lockWait time.Duration) error {
	if !d.Transaction {
		if _, err := conn.Exec(ctx, fmt.Sprintf("set lock_timeout = %d", lockWait.Milliseconds())); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, d.SQL); err != nil {
			return err
		}
		conn.Exec(ctx, "reset lock_timeout")
		for _, q := range forget {
			if _, err := conn.Exec(ctx, q, d.Version); err != nil {
				return err
			}
		}
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("set local lock_timeout = %d", lockWait.Milliseconds())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, d.SQL); err != nil {
			return err
		}
		for _, q := range forget {
			if _, err := tx.Exec(ctx, q, d.Version); err != nil {
				return err
			}
		}
		return nil
	})
}
