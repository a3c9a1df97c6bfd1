package clone

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
)

// Result is what a restore by swap did.
type Result struct {
	Database string // the service's database, now the restore point's contents
	Point    Point  // the clone that became Database; it no longer exists under its own name
	// Kept is the name the database held before the restore now has; "" when
	// there was no database of that name. DropKept is the command that
	// removes it once the restore is confirmed good.
	Kept     string
	DropKept string
}

// keptSuffix marks the database a restore swapped out.
const keptSuffix = "_before_restore_"

// KeptName is the name Restore gives the database it swaps out at t:
// <db>_before_restore_<yyyymmddthhmmssz>, the database name shortened to
// keep it within PostgreSQL's 63 bytes.
func KeptName(db string, t time.Time) string {
	suffix := keptSuffix + t.UTC().Format(timeFormat)
	max := 63 - len(suffix)
	if len(db) > max {
		db = db[:max]
		for len(db) > 0 && db[len(db)-1]&0xC0 == 0x80 { // not inside a UTF-8 sequence
			db = db[:len(db)-1]
		}
		if len(db) > 0 && db[len(db)-1] >= 0xC0 {
			db = db[:len(db)-1]
		}
	}
	return db + suffix
}

// KeptDB is a database a restore by swap renamed aside (KeptName).
type KeptDB struct {
	Name    string
	Renamed time.Time // when the restore renamed it, from its name
	Size    int64     // bytes; -1 when it cannot be read
}

// Kept lists the databases that restores of db renamed aside and that are
// still there, oldest first: each is a full copy of db as it was before
// that restore, kept until the operator drops it (DropStatement).
func Kept(ctx context.Context, q querier, db string) ([]KeptDB, error) {
	full := KeptName(db, time.Time{})
	prefix := full[:len(full)-len(timeFormat)]
	rows, err := q.Query(ctx, `select datname,
			case when has_database_privilege(oid, 'CONNECT') then pg_database_size(oid) else -1 end
		from pg_database
		where starts_with(datname, $1) and datdba = (select datdba from pg_database where datname = $2)
		order by datname`, prefix, db)
	if err != nil {
		return nil, fmt.Errorf("list the databases restores kept: %w", err)
	}
	defer rows.Close()
	var kept []KeptDB
	for rows.Next() {
		var k KeptDB
		if err := rows.Scan(&k.Name, &k.Size); err != nil {
			return nil, fmt.Errorf("list the databases restores kept: %w", err)
		}
		t, err := time.Parse(timeFormat, strings.TrimPrefix(k.Name, prefix))
		if err != nil {
			continue
		}
		k.Renamed = t
		kept = append(kept, k)
	}
	return kept, rows.Err()
}

// DropStatement is the SQL that drops database name.
func DropStatement(name string) string { return fmt.Sprintf("DROP DATABASE %s;", ident(name)) }

// Restore swaps clone name in as the database d names: the database is
// renamed to KeptName (kept, not dropped), the clone renamed to the
// database's name, and the database-level properties recorded when the clone
// was taken are re-applied, all in one transaction: if any step fails,
// nothing was changed and the database is still in place under its name.
// It refuses while sessions use either database (a *BusyError): stop the
// service first.
func Restore(ctx context.Context, d *dsn.DSN, name string) (Result, error) {
	db := d.Config.Database
	conn, err := maintenance(ctx, d)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close(context.Background())

	rec, err := readRecord(ctx, conn, name)
	if err != nil {
		return Result{}, err
	}
	if rec.Source != db {
		return Result{}, fmt.Errorf("the restore point %q is a copy of database %q, not of %q; nothing was changed", name, rec.Source, db)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "select exists (select from pg_database where datname = $1)", db).Scan(&exists); err != nil {
		return Result{}, fmt.Errorf("look up database %q: %w", db, err)
	}
	if exists {
		if err := checkIdle(ctx, conn, db, "restore"); err != nil {
			return Result{}, err
		}
	}
	if err := checkIdle(ctx, conn, name, "restore from the clone"); err != nil {
		return Result{}, err
	}
	res := Result{Database: db, Point: Point{Name: name, Kind: "clone", Created: rec.Meta.Created,
		PackageVersion: rec.Meta.PackageVersion, SchemaVersion: rec.Meta.SchemaVersion, Source: rec.Source, Size: -1}}
	conn.QueryRow(ctx, "select pg_database_size($1::text)", name).Scan(&res.Point.Size)

	tx, err := conn.Begin(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("begin the swap: %w", err)
	}
	defer tx.Rollback(context.Background())
	if exists {
		res.Kept = KeptName(db, time.Now())
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", ident(db), ident(res.Kept))); err != nil {
			return Result{}, unchanged(fmt.Errorf("rename database %q to %q: %w", db, res.Kept, err))
		}
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", ident(name), ident(db))); err != nil {
		return Result{}, unchanged(fmt.Errorf("rename the clone %q to %q: %w", name, db, err))
	}
	if err := apply(ctx, tx, db, rec.Properties, true); err != nil {
		return Result{}, unchanged(fmt.Errorf("re-apply database %q's recorded properties: %w", db, err))
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("commit the swap of %q for %q: %w; whether it took effect is unknown: check with: SELECT datname FROM pg_database WHERE datname IN (%s, %s, %s);",
			name, db, err, literal(db), literal(name), literal(res.Kept))
	}
	if res.Kept != "" {
		res.DropKept = DropStatement(res.Kept)
	}
	return res, nil
}

// unchanged marks an error after which the transaction rolled back.
func unchanged(err error) error {
	return fmt.Errorf("%w; the swap was rolled back, nothing was changed", err)
}

// dryRun applies p to the database conn is connected to (db) and rolls back:
// it fails when this role could not re-apply p after a swap.
func dryRun(ctx context.Context, conn *pgx.Conn, db string, p Properties) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
		return err
	}
	return apply(ctx, tx, db, p, false)
}
