// Package clone takes restore points as database clones: CREATE DATABASE …
// TEMPLATE <db> STRATEGY FILE_COPY copies the database's files in the time of
// a file copy, and a restore swaps the clone in by two renames. A clone does
// not carry the database-level properties (settings, per-role settings, ACL,
// comment, connection limit, owner), so Create records them in the clone's own
// COMMENT ON DATABASE, together with the restore point's metadata, and
// Restore re-applies them in the same transaction as the renames.
//
// The order for an upgrade: Checkpoint while the service still runs (it
// shortens the copy's own checkpoint), stop the service, Eligible, close that
// connection, Create (or a file restore point when Eligible says "file"),
// migrate, start the service.
package clone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/progress"
)

// A clone's name is defaults.RestorePointClone, the spec's pattern
// (docs/INTERFACES.md): Prefix, the schema version, "_", the UTC time.
var (
	// Prefix starts every clone's name; no other database of openwatch's uses it.
	Prefix = strings.Split(defaults.RestorePointClone, "{schema}")[0]
	// nameRE matches Name's output and nothing else.
	nameRE = regexp.MustCompile("^" + strings.NewReplacer(
		`\{schema\}`, `([0-9]{1,30}|none)`,
		`\{time\}`, `([0-9]{8}t[0-9]{6}z)`,
	).Replace(regexp.QuoteMeta(defaults.RestorePointClone)) + "$")
	namer = strings.NewReplacer("{schema}", "%[1]s", "{time}", "%[2]s").Replace(defaults.RestorePointClone)
)

// timeFormat is the UTC time in a clone's name, lower case so that the name
// is a valid unquoted identifier an operator can type.
const timeFormat = "20060102t150405z"

// Name is the clone name for a restore point of schema version schema taken
// at t: openwatch_rp_<schema>_<UTC yyyymmddthhmmssz>, e.g.
// openwatch_rp_20240601120000_20250102t030405z. It is a valid unquoted
// identifier of at most 60 bytes. An empty schema is "none".
func Name(schema string, t time.Time) (string, error) {
	if schema == "" {
		schema = "none"
	}
	n := fmt.Sprintf(namer, schema, t.UTC().Format(timeFormat))
	if !nameRE.MatchString(n) {
		return "", fmt.Errorf("schema version %q cannot name a clone: it must be up to 30 digits", schema)
	}
	return n, nil
}

// IsName reports whether s is a clone's name.
func IsName(s string) bool { return nameRE.MatchString(s) }

// Meta is what a restore point says about itself.
type Meta struct {
	PackageVersion string    `json:"package_version"`
	SchemaVersion  string    `json:"schema_version"`
	Created        time.Time `json:"created"`
}

// Point is one clone on the server.
type Point struct {
	Name           string    `json:"name"` // the database's name; what Restore and Drop accept
	Kind           string    `json:"kind"` // "clone"
	Created        time.Time `json:"created"`
	PackageVersion string    `json:"package_version"`
	SchemaVersion  string    `json:"schema_version"`
	Size           int64     `json:"size"`   // pg_database_size; -1 when this role may not connect to it
	Source         string    `json:"source"` // the database it is a copy of
	// What Create did (empty in List's points): CopyMethod is CopyClone or
	// CopyPlain; CopyFallback says why the files were copied although
	// PostgreSQL 18's file cloning was tried ("" otherwise).
	CopyMethod   string `json:"-"`
	CopyFallback string `json:"-"`
	// Written is what the clone's files take on the file system beyond the
	// blocks they share with the source (measured, see measureClone), -1
	// when it could not be measured
	// (WrittenUnknown says why). CopyMethod is CopyClone only when blocks
	// were shared: a file_copy_method = clone that the file system carried
	// out as a copy (ext4, XFS without reflink) is reported as CopyPlain.
	Written        int64  `json:"-"`
	WrittenUnknown string `json:"-"`
}

// How Create copied the files.
const (
	CopyPlain = "copy"  // PostgreSQL copies each file
	CopyClone = "clone" // file_copy_method = clone (PostgreSQL 18): reflinks
)

// FileCloneAvailable reports whether a server of version serverVersionNum
// (server_version_num) has file_copy_method = clone: PostgreSQL 18 added it.
func FileCloneAvailable(serverVersionNum int) bool { return serverVersionNum >= 180000 }

// createStatement is the CREATE DATABASE that copies src into name.
func createStatement(name, owner, src string, serverVersionNum int) string {
	create := fmt.Sprintf("CREATE DATABASE %s OWNER %s TEMPLATE %s", ident(name), ident(owner), ident(src))
	if serverVersionNum >= 150000 {
		create += " STRATEGY FILE_COPY" // before 15, copying files is the only strategy
	}
	return create
}

// marker identifies a clone's comment as openwatch's.
const marker = "openwatch restore point"

// record is the JSON a clone carries as its own COMMENT ON DATABASE.
type record struct {
	Marker     string     `json:"openwatch"`
	Meta       Meta       `json:"meta"`
	Source     string     `json:"source"`
	Properties Properties `json:"properties"` // the source's, which the clone does not carry
}

func parseRecord(comment string) (record, bool) {
	var r record
	if err := json.Unmarshal([]byte(comment), &r); err != nil || r.Marker != marker {
		return record{}, false
	}
	return r, true
}

// querier is a connection or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// BusyError refuses an operation while other sessions use a database:
// PostgreSQL cannot copy, rename or drop it then.
type BusyError struct {
	Database     string
	Sessions     int
	Applications []string // application_name of each, "" shown as "unnamed"
	Doing        string   // "take a clone of", "restore", "drop"
}

// StopCommand stops the service that holds the database's sessions.
const StopCommand = "systemctl stop openwatch"

func (e *BusyError) Error() string {
	return fmt.Sprintf("cannot %s database %q: %d other session(s) are connected to it (applications: %s); nothing was changed; stop the service first: %s",
		e.Doing, e.Database, e.Sessions, strings.Join(e.Applications, ", "), StopCommand)
}

// sessions counts the sessions on database db other than our own;
// autovacuum workers do not count (PostgreSQL ends them itself). Sessions
// that are ending (a stopped service's) get up to idleWait to go, as
// PostgreSQL's own CREATE DATABASE and RENAME give them.
func sessions(ctx context.Context, q querier, db string) (int, []string, error) {
	deadline := time.Now().Add(idleWait)
	for {
		var n int
		var apps []string
		err := q.QueryRow(ctx, `select count(*), coalesce(array_agg(distinct coalesce(nullif(application_name, ''), 'unnamed')), '{}')
			from pg_stat_activity
			where datname = $1 and pid <> pg_backend_pid() and backend_type is distinct from 'autovacuum worker'`, db).Scan(&n, &apps)
		if err != nil {
			return 0, nil, fmt.Errorf("list the sessions on database %q: %w", db, err)
		}
		if n == 0 || time.Now().After(deadline) {
			sort.Strings(apps)
			return n, apps, nil
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// idleWait is how long sessions get to end.
const idleWait = 5 * time.Second

func checkIdle(ctx context.Context, q querier, db, doing string) error {
	n, apps, err := sessions(ctx, q, db)
	if err != nil {
		return err
	}
	if n > 0 {
		return &BusyError{Database: db, Sessions: n, Applications: apps, Doing: doing}
	}
	return nil
}

// maintenance connects as the DSN's role to a database other than the
// service's: postgres, else template1. CREATE DATABASE cannot copy, and ALTER
// DATABASE cannot rename, the database a session is connected to.
func maintenance(ctx context.Context, d *dsn.DSN) (*pgx.Conn, error) {
	var errs []error
	for _, db := range []string{"postgres", "template1"} {
		if db == d.Config.Database {
			continue
		}
		cfg := d.Config.Copy()
		cfg.Database = db
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = dsn.DefaultConnectTimeout
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, d.Redactor.Error(err))
	}
	return nil, fmt.Errorf("cannot connect to the postgres or template1 database as %q, which clones need (CREATE DATABASE and RENAME run from a database other than the one they copy): %w",
		d.Config.User, errors.Join(errs...))
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Checkpoint runs CHECKPOINT when the role may and reports whether it did.
// Who may depends on the server's version (MayCheckpoint). Call it while
// the service still runs: CREATE DATABASE … STRATEGY FILE_COPY checkpoints
// first, and that checkpoint is short when this one just ran.
func Checkpoint(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var version int
	var super bool
	err := conn.QueryRow(ctx, `select current_setting('server_version_num')::int,
		(select rolsuper from pg_roles where rolname = current_user)`).Scan(&version, &super)
	if err != nil {
		return false, fmt.Errorf("check whether this role may CHECKPOINT: %w", err)
	}
	member := false
	if CheckpointRole(version) {
		if err := conn.QueryRow(ctx, `select pg_has_role('pg_checkpoint', 'member')`).Scan(&member); err != nil {
			return false, fmt.Errorf("check whether this role may CHECKPOINT: %w", err)
		}
	}
	if !MayCheckpoint(version, super, member) {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return false, fmt.Errorf("CHECKPOINT: %w", err)
	}
	return true, nil
}

// CheckpointRole reports whether a server of version serverVersionNum has
// the pg_checkpoint role: PostgreSQL 15 added it.
func CheckpointRole(serverVersionNum int) bool { return serverVersionNum >= 150000 }

// MayCheckpoint reports whether a role may run CHECKPOINT on a server of
// version serverVersionNum: a superuser always; a member of pg_checkpoint
// from PostgreSQL 15 on; before 15 nobody else.
func MayCheckpoint(serverVersionNum int, superuser, checkpointMember bool) bool {
	return superuser || CheckpointRole(serverVersionNum) && checkpointMember
}

// Create copies the database d names into a new database called name (""
// means Name(meta.SchemaVersion, meta.Created)), owned by the source's owner,
// and records the source's database-level properties and meta in the clone's
// comment. meta.Created defaults to now. The source must have no sessions:
// stop the service and close every connection to it first. Create does not
// check free space; Eligible does.
func Create(ctx context.Context, d *dsn.DSN, name string, meta Meta) (Point, error) {
	if meta.Created.IsZero() {
		meta.Created = time.Now()
	}
	meta.Created = meta.Created.UTC().Truncate(time.Second)
	src := d.Config.Database
	conn, err := maintenance(ctx, d)
	if err != nil {
		return Point{}, err
	}
	defer conn.Close(context.Background())
	chosen := name == ""
	if name == "" {
		// A name holds the second it was taken in. A retry within the same
		// second as an earlier clone of the same schema (a migration that
		// failed at once) takes the next free second instead of failing.
		for range 5 {
			n, err := Name(meta.SchemaVersion, meta.Created)
			if err != nil {
				return Point{}, err
			}
			var taken bool
			if err := conn.QueryRow(ctx, "select exists (select from pg_database where datname = $1)", n).Scan(&taken); err != nil {
				return Point{}, fmt.Errorf("look up database %q: %w", n, err)
			}
			if !taken {
				name = n
				break
			}
			meta.Created = meta.Created.Add(time.Second)
		}
		if name == "" {
			return Point{}, fmt.Errorf("clones of schema %s already exist for every second from %s to %s; nothing was changed", meta.SchemaVersion,
				meta.Created.Add(-5*time.Second).Format(time.RFC3339), meta.Created.Add(-time.Second).Format(time.RFC3339))
		}
	}
	if !IsName(name) {
		return Point{}, fmt.Errorf("%q is not a clone name (%s<schema>_<yyyymmddthhmmssz>)", name, Prefix)
	}

	props, err := readProperties(ctx, conn, src)
	if err != nil {
		return Point{}, err
	}
	if err := checkIdle(ctx, conn, src, "take a clone of"); err != nil {
		return Point{}, err
	}
	var version int
	if err := conn.QueryRow(ctx, `select current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return Point{}, fmt.Errorf("read the server's version: %w", err)
	}
	create := createStatement(name, props.Owner, src, version)
	method, fallback := CopyPlain, ""
	if FileCloneAvailable(version) {
		// PostgreSQL 18 can clone the files (a reflink on XFS, btrfs, ZFS).
		// Where the server refuses the setting, the plain copy runs; where
		// the file system cannot share blocks, copy_file_range() copies
		// them, which the free space measured below tells.
		if _, err := conn.Exec(ctx, "SET file_copy_method = clone"); err != nil {
			fallback = fmt.Sprintf("the server refused file_copy_method = clone (%v); the files were copied instead", err)
		} else if _, err := conn.Exec(ctx, create); err != nil {
			fallback = fmt.Sprintf("cloning the files failed (%v); they were copied instead", err)
			if _, err := conn.Exec(ctx, "RESET file_copy_method"); err != nil {
				return Point{}, fmt.Errorf("RESET file_copy_method: %w", err)
			}
		} else {
			method = CopyClone
		}
	}
	if method == CopyPlain {
		if _, err := conn.Exec(ctx, create); err != nil {
			if chosen && duplicateDatabase(err) {
				// Another clone of the same schema took the name between the
				// look-up and CREATE (another database on this server, in
				// the same second): take the next second.
				meta.Created = meta.Created.Add(time.Second)
				return Create(ctx, d, "", meta)
			}
			return Point{}, fmt.Errorf("copy database %q into %q (CREATE DATABASE … TEMPLATE): %w; nothing was changed", src, name, err)
		}
	}
	rec := record{Marker: marker, Meta: meta, Source: src, Properties: props}
	if err := finishClone(ctx, conn, name, rec); err != nil {
		if _, derr := conn.Exec(context.Background(), "DROP DATABASE "+ident(name)); derr != nil {
			return Point{}, fmt.Errorf("%w; dropping the incomplete clone failed too (%v): drop it with: DROP DATABASE %s;", err, derr, ident(name))
		}
		return Point{}, fmt.Errorf("%w; the incomplete clone was dropped", err)
	}
	p := Point{Name: name, Kind: "clone", Created: meta.Created, PackageVersion: meta.PackageVersion,
		SchemaVersion: meta.SchemaVersion, Source: src, Size: -1, CopyMethod: method, CopyFallback: fallback, Written: -1}
	if u, err := measureClone(ctx, conn, name); err != nil {
		p.WrittenUnknown = err.Error()
	} else {
		p.Written = u.Written()
		if p.CopyMethod == CopyClone && !u.SharedBlocks() {
			p.CopyMethod = CopyPlain
			p.CopyFallback = fmt.Sprintf("file_copy_method = clone ran, but the file system under %s copied the files: %s written, %s shared with the database (blocks are shared only on XFS with reflink=1, btrfs, ZFS or bcachefs)",
				u.Dir, progress.Bytes(p.Written), progress.Bytes(u.Shared))
		}
	}
	conn.QueryRow(ctx, "select pg_database_size($1::text)", name).Scan(&p.Size)
	return p, nil
}

// duplicateDatabase tells whether CREATE DATABASE failed because the name is
// taken: duplicate_database, or the unique index on pg_database's names when
// two sessions create the same name at once.
func duplicateDatabase(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P04" || (pe.Code == "23505" && pe.ConstraintName == "pg_database_datname_index"))
}

// finishClone closes the clone to PUBLIC (the source's ACL, which may have
// done so, is not copied; Restore puts the source's back) and writes the
// record as its comment.
func finishClone(ctx context.Context, conn *pgx.Conn, name string, rec record) error {
	js, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", ident(name))); err != nil {
		return fmt.Errorf("restrict the clone %q to its owner: %w", name, err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("COMMENT ON DATABASE %s IS %s", ident(name), literal(string(js)))); err != nil {
		return fmt.Errorf("record the restore point's metadata on the clone %q: %w", name, err)
	}
	return nil
}

// List returns the clones on the server conn is connected to, newest first.
// Databases with a clone's name but without openwatch's record are not
// listed.
func List(ctx context.Context, conn *pgx.Conn) ([]Point, error) {
	rows, err := conn.Query(ctx, `select datname, coalesce(shobj_description(oid, 'pg_database'), ''),
			case when has_database_privilege(oid, 'CONNECT') then pg_database_size(oid) else -1 end
		from pg_database where starts_with(datname, $1)`, Prefix)
	if err != nil {
		return nil, fmt.Errorf("list the clones: %w", err)
	}
	var points []Point
	for rows.Next() {
		var name, comment string
		var size int64
		if err := rows.Scan(&name, &comment, &size); err != nil {
			return nil, fmt.Errorf("list the clones: %w", err)
		}
		rec, ok := parseRecord(comment)
		if !ok || !IsName(name) {
			continue
		}
		points = append(points, Point{Name: name, Kind: "clone", Created: rec.Meta.Created, PackageVersion: rec.Meta.PackageVersion,
			SchemaVersion: rec.Meta.SchemaVersion, Size: size, Source: rec.Source})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the clones: %w", err)
	}
	sort.SliceStable(points, func(i, j int) bool {
		if !points[i].Created.Equal(points[j].Created) {
			return points[i].Created.After(points[j].Created)
		}
		return points[i].Name > points[j].Name
	})
	return points, nil
}

// readRecord returns the record of clone name, or an error that says why
// name is not one of openwatch's clones.
func readRecord(ctx context.Context, q querier, name string) (record, error) {
	if !IsName(name) {
		return record{}, fmt.Errorf("%q is not a restore point clone's name (%s<schema>_<yyyymmddthhmmssz>); nothing was changed", name, Prefix)
	}
	var comment *string
	err := q.QueryRow(ctx, "select shobj_description(oid, 'pg_database') from pg_database where datname = $1", name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return record{}, fmt.Errorf("there is no restore point clone %q on this server; nothing was changed", name)
	}
	if err != nil {
		return record{}, fmt.Errorf("read the clone %q: %w", name, err)
	}
	rec, ok := parseRecord(deref(comment))
	if !ok {
		return record{}, fmt.Errorf("database %q does not carry openwatch's restore point record, so it is not treated as one; nothing was changed", name)
	}
	return rec, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Incomplete returns the databases that look like clones of database src
// that an interrupted Create left behind: a clone's name, owned by src's
// owner, and no restore point record. CREATE DATABASE and the COMMENT that
// records the clone cannot share a transaction; a migrate killed between
// them leaves a full copy that is not a restore point (nothing was migrated
// after it) and that nothing else would ever list or drop.
func Incomplete(ctx context.Context, q querier, src string) ([]string, error) {
	rows, err := q.Query(ctx, `select datname, coalesce(shobj_description(oid, 'pg_database'), '')
		from pg_database
		where starts_with(datname, $1) and datdba = (select datdba from pg_database where datname = $2)`, Prefix, src)
	if err != nil {
		return nil, fmt.Errorf("list the incomplete clones: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			return nil, fmt.Errorf("list the incomplete clones: %w", err)
		}
		if _, ok := parseRecord(comment); IsName(name) && !ok {
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the incomplete clones: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// DropIncomplete drops name, one of Incomplete's databases for d's
// database; it checks again that it is one, and refuses one with sessions.
func DropIncomplete(ctx context.Context, d *dsn.DSN, name string) error {
	conn, err := maintenance(ctx, d)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	names, err := Incomplete(ctx, conn, d.Config.Database)
	if err != nil {
		return err
	}
	if !slices.Contains(names, name) {
		return fmt.Errorf("%q is not an incomplete clone of %q (a clone's name, its owner, no record); nothing was changed", name, d.Config.Database)
	}
	if err := checkIdle(ctx, conn, name, "drop"); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE "+ident(name)); err != nil {
		return fmt.Errorf("drop the incomplete clone %q: %w", name, err)
	}
	return nil
}

// Drop drops the clone name. It refuses any database that is not one of
// openwatch's clones (by name and by its record), and one with sessions.
func Drop(ctx context.Context, d *dsn.DSN, name string) error {
	conn, err := maintenance(ctx, d)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := readRecord(ctx, conn, name); err != nil {
		return err
	}
	if err := checkIdle(ctx, conn, name, "drop"); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE "+ident(name)); err != nil {
		return fmt.Errorf("drop the clone %q: %w", name, err)
	}
	return nil
}
