package clone

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
)

// Other copies of the database on its server (a rehearsal's scratch
// database, internal/migrate/rehearse) need the same room and the same
// maintenance session as a clone; these export the clone's.

// MeasureSpace is the free-space check a clone makes: the tightest file
// system holding the files of the database conn is connected to, with Need
// the database's size plus the margin that must stay free. It needs root
// and a server on this machine, as Eligible does.
func MeasureSpace(ctx context.Context, conn *pgx.Conn) (Space, error) {
	return measureSpace(ctx, conn)
}

// Enough reports whether a copy of the database fits with the margin left free.
func (s Space) Enough() bool { return s.Free >= s.Need }

// Maintenance connects as d's role to a database other than d's (postgres,
// else template1), from which a database can be created and dropped; the
// same one for every run of the same role.
func Maintenance(ctx context.Context, d *dsn.DSN) (*pgx.Conn, error) { return maintenance(ctx, d) }

// Ident quotes s as an SQL identifier.
func Ident(s string) string { return ident(s) }

// Literal quotes s as an SQL string literal.
func Literal(s string) string { return literal(s) }
