package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ChecksumTable records, for every migration this binary applied, the
// sha256 of the file it applied. It lives next to dbmate's schema_migrations
// (the first schema on the search_path), so a restore point carries it.
const ChecksumTable = "openwatch_migration_checksums"

const createChecksumTable = `CREATE TABLE IF NOT EXISTS ` + ChecksumTable + ` (
    version     text PRIMARY KEY,
    file        text NOT NULL,
    sha256      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
)`

// Checksum is the hex sha256 of a migration file's bytes.
func Checksum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ChecksumMismatch is one applied migration whose recorded checksum differs
// from the file this binary ships.
type ChecksumMismatch struct {
	Migration  Migration
	Recorded   string // sha256 recorded when it was applied
	RecordedAt time.Time
	Shipped    string // sha256 of the file in this binary
}

// ChecksumError refuses to migrate a database in which a migration was
// applied from a file that differs from the one this binary ships.
type ChecksumError struct{ Mismatches []ChecksumMismatch }

func (e *ChecksumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d applied migration(s) differ from the file this binary ships (edited after they were applied); nothing was changed:", len(e.Mismatches))
	for _, m := range e.Mismatches {
		fmt.Fprintf(&b, "\n  %s: applied with sha256 %s (recorded %s), shipped sha256 %s",
			m.Migration.Name, m.Recorded, m.RecordedAt.UTC().Format(time.RFC3339), m.Shipped)
	}
	b.WriteString("\nThe schema may not be what this binary's migrations expect. Install again the package version" +
		" that applied these migrations (its migrations match the database) and report the changed file(s) to the packager.")
	return b.String()
}

type recorded struct {
	sha256 string
	at     time.Time
}

// recordedChecksums reads the checksum table; a database without it has none.
func recordedChecksums(ctx context.Context, conn *pgx.Conn) (map[string]recorded, error) {
	rows, err := conn.Query(ctx, "select version, sha256, recorded_at from "+ChecksumTable)
	out := map[string]recorded{}
	if err == nil {
		for rows.Next() {
			var v string
			var r recorded
			if err = rows.Scan(&v, &r.sha256, &r.at); err != nil {
				break
			}
			out[v] = r
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: none recorded yet
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ChecksumTable, err)
	}
	return out, nil
}

// VerifyChecksums compares the recorded checksum of every applied migration
// this binary knows (from s, read by ReadState) with the shipped file's. It
// returns a *ChecksumError naming each one that differs, and otherwise the
// applied migrations that have no checksum recorded (applied before openwatch
// recorded them). It only reads.
func VerifyChecksums(ctx context.Context, conn *pgx.Conn, fsys fs.FS, s State) (unrecorded []Migration, err error) {
	if len(s.Applied) == 0 {
		return nil, nil
	}
	rec, err := recordedChecksums(ctx, conn)
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
	var bad []ChecksumMismatch
	for _, m := range known {
		if !isApplied[m.Version] {
			continue
		}
		r, ok := rec[m.Version]
		if !ok {
			unrecorded = append(unrecorded, m)
			continue
		}
		b, err := fs.ReadFile(fsys, m.Name)
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %s: %w", m.Name, err)
		}
		if sum := Checksum(b); sum != r.sha256 {
			bad = append(bad, ChecksumMismatch{Migration: m, Recorded: r.sha256, RecordedAt: r.at, Shipped: sum})
		}
	}
	if len(bad) > 0 {
		return nil, &ChecksumError{Mismatches: bad}
	}
	return unrecorded, nil
}

// recordChecksums records the shipped checksums and down sections of ms
// (applied migrations without a record of either), creating the tables if
// needed. A record that exists is kept.
func recordChecksums(ctx context.Context, conn *pgx.Conn, fsys fs.FS, ms []Migration) error {
	if len(ms) == 0 {
		return nil
	}
	if _, err := conn.Exec(ctx, createChecksumTable); err != nil {
		return fmt.Errorf("create %s: %w", ChecksumTable, err)
	}
	for _, m := range ms {
		b, err := fs.ReadFile(fsys, m.Name)
		if err != nil {
			return fmt.Errorf("read embedded migration %s: %w", m.Name, err)
		}
		if _, err := conn.Exec(ctx, "insert into "+ChecksumTable+" (version, file, sha256) values ($1, $2, $3) on conflict (version) do nothing",
			m.Version, m.Name, Checksum(b)); err != nil {
			return fmt.Errorf("record the checksum of %s: %w", m.Name, err)
		}
		down, err := downRecord(m, b, false)
		if err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, down); err != nil {
			return fmt.Errorf("store the down section of %s: %w", m.Name, err)
		}
	}
	return nil
}

// recordingFS shows dbmate the migration next with, for a transactional one,
// the statements that record its checksum appended to its up section: they
// commit or roll back with it. A transaction:false migration is shown as it
// is; apply records its checksum right after it (recordChecksums).
type recordingFS struct {
	fs.FS
	next Migration
}

func (r recordingFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(r.FS, name) }

func (r recordingFS) ReadFile(name string) ([]byte, error) {
	b, err := fs.ReadFile(r.FS, name)
	if err != nil || name != r.next.Name || nonTransactional(r.FS, name) {
		return b, err
	}
	return withChecksumRecord(b, r.next)
}

func (r recordingFS) Open(name string) (fs.File, error) {
	if name != r.next.Name {
		return r.FS.Open(name)
	}
	b, err := r.ReadFile(name)
	if err != nil {
		return nil, err
	}
	fi, err := fs.Stat(r.FS, name)
	if err != nil {
		return nil, err
	}
	return &memFile{Reader: bytes.NewReader(b), info: sizedInfo{FileInfo: fi, size: int64(len(b))}}, nil
}

type memFile struct {
	*bytes.Reader
	info fs.FileInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

var _ io.Reader = (*memFile)(nil)

type sizedInfo struct {
	fs.FileInfo
	size int64
}

func (s sizedInfo) Size() int64 { return s.size }

// withChecksumRecord inserts, just before the "-- migrate:down" line (where
// dbmate's up section ends), the statements recording m's checksum and its
// down section (DownTable). The leading ";" ends a last statement written
// without one.
func withChecksumRecord(b []byte, m Migration) ([]byte, error) {
	down, err := downRecord(m, b, true)
	if err != nil {
		return nil, err
	}
	rec := fmt.Sprintf("\n;\n-- recorded by openwatch migrate\n%s;\nINSERT INTO %s (version, file, sha256) VALUES (%s, %s, %s)\n"+
		"    ON CONFLICT (version) DO UPDATE SET file = EXCLUDED.file, sha256 = EXCLUDED.sha256, recorded_at = now();\n%s;\n\n",
		createChecksumTable, ChecksumTable, sqlString(m.Version), sqlString(m.Name), sqlString(Checksum(b)), down)
	at := len(b)
	if loc := downRE.FindIndex(b); loc != nil {
		at = loc[0]
	}
	out := make([]byte, 0, len(b)+len(rec))
	out = append(out, b[:at]...)
	out = append(out, rec...)
	return append(out, b[at:]...), nil
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// downRE is dbmate's rule for the line that starts the down section.
var downRE = regexp.MustCompile(`(?m)^--\s*migrate:down(\s*$|\s+\S+)`)

// verifyChecksums is VerifyChecksums with a database error redacted.
func verifyChecksums(ctx context.Context, conn *pgx.Conn, o Options, s State) ([]Migration, error) {
	unrecorded, err := VerifyChecksums(ctx, conn, o.FS, s)
	var sumErr *ChecksumError
	if err != nil && !errors.As(err, &sumErr) {
		err = o.DSN.Redactor.Error(err)
	}
	return unrecorded, err
}

// recordOnce records the checksums and down sections of migrations applied
// before openwatch recorded them (under the lock), saying so: a later run
// finds them recorded.
func recordOnce(ctx context.Context, conn *pgx.Conn, o Options, unrecorded []Migration) error {
	if len(unrecorded) == 0 {
		return nil
	}
	sums, err := recordedChecksums(ctx, conn)
	if err != nil {
		return o.DSN.Redactor.Error(err)
	}
	downs, err := storedDowns(ctx, conn)
	if err != nil {
		return o.DSN.Redactor.Error(err)
	}
	var noSum, noDown []Migration
	for _, m := range unrecorded {
		if _, ok := sums[m.Version]; !ok {
			noSum = append(noSum, m)
		}
		if _, ok := downs[m.Version]; !ok {
			noDown = append(noDown, m)
		}
	}
	if err := recordChecksums(ctx, conn, o.FS, unrecorded); err != nil {
		return o.DSN.Redactor.Error(err)
	}
	if len(noSum) > 0 {
		fmt.Fprintf(o.Out, "recorded the checksums of %d migration(s) applied before openwatch recorded them: %s\n",
			len(noSum), migrationNames(noSum))
	}
	if len(noDown) > 0 {
		fmt.Fprintf(o.Out, "stored the down sections of %d migration(s) applied before openwatch stored them (for the way back): %s\n",
			len(noDown), migrationNames(noDown))
	}
	return nil
}

// recordAfter records the checksum of m, just applied, if it ran outside a
// transaction (a transactional one recorded it in its own transaction). A
// crash between the two leaves it unrecorded; the next run records it
// (recordOnce), still under the lock.
func recordAfter(ctx context.Context, conn *pgx.Conn, o Options, m Migration) error {
	if !nonTransactional(o.FS, m.Name) {
		return nil
	}
	if err := recordChecksums(ctx, conn, o.FS, []Migration{m}); err != nil {
		return o.DSN.Redactor.Error(err)
	}
	return nil
}
