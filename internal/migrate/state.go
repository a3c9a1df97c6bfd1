// Package migrate reads the schema state and applies the embedded dbmate
// migrations under a PostgreSQL advisory lock.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Migration is one migration file known to this binary.
type Migration struct {
	Version string `json:"version"`
	Name    string `json:"name"` // file name
}

// State compares the database with the migrations in this binary.
type State struct {
	Current string // newest applied version, "" for none
	Head    string // newest version this binary knows
	Applied []string
	Pending []Migration
	Unknown []string // applied versions this binary does not know
}

// Newer reports a schema with versions this binary does not know (a downgrade).
func (s State) Newer() bool { return len(s.Unknown) > 0 }

// AtHead reports nothing pending and nothing unknown.
func (s State) AtHead() bool { return len(s.Pending) == 0 && len(s.Unknown) == 0 }

// fileRE is dbmate's rule for migration file names.
var fileRE = regexp.MustCompile(`^(\d+).*\.sql$`)

// Known lists the migrations in fsys (its root), oldest first.
func Known(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		if m := fileRE.FindStringSubmatch(e.Name()); m != nil && !e.IsDir() {
			ms = append(ms, Migration{Version: m[1], Name: e.Name()})
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return ms, nil
}

// Applied returns the versions recorded in schema_migrations, oldest first,
// in one round trip. A database without that table has none applied.
func Applied(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	var versions []string
	rows, err := conn.Query(ctx, "select version::text from schema_migrations")
	if err == nil {
		versions, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: nothing migrated yet
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[i], versions[j]) })
	return versions, nil
}

// versionLess orders numeric versions of different lengths numerically.
func versionLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// ReadState reads the applied versions and compares them with fsys.
func ReadState(ctx context.Context, conn *pgx.Conn, fsys fs.FS) (State, error) {
	known, err := Known(fsys)
	if err != nil {
		return State{}, err
	}
	applied, err := Applied(ctx, conn)
	if err != nil {
		return State{}, err
	}
	return Compare(known, applied), nil
}

// Compare computes the state from the known migrations and applied versions.
func Compare(known []Migration, applied []string) State {
	s := State{Applied: applied, Pending: []Migration{}, Unknown: []string{}}
	if s.Applied == nil {
		s.Applied = []string{}
	}
	isApplied := map[string]bool{}
	for _, v := range applied {
		isApplied[v] = true
	}
	isKnown := map[string]bool{}
	for _, m := range known {
		isKnown[m.Version] = true
		if !isApplied[m.Version] {
			s.Pending = append(s.Pending, m)
		}
		s.Head = m.Version
	}
	for _, v := range applied {
		if !isKnown[v] {
			s.Unknown = append(s.Unknown, v)
		}
	}
	if len(applied) > 0 {
		s.Current = applied[len(applied)-1]
	}
	return s
}

// HasUserObjects reports whether the database holds any table, view, sequence
// or similar outside the system schemas: whether a restore point is worth taking.
func HasUserObjects(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var exists bool
	err := conn.QueryRow(ctx, `select exists (
		select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname not in ('pg_catalog', 'information_schema')
		  and n.nspname not like 'pg\_toast%' and n.nspname not like 'pg\_temp\_%'
		  and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f'))`).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("inspect the schema: %w", err)
	}
	return exists, nil
}
