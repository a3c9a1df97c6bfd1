package cli

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/config"
	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/migrate"
)

// connectToChange is connect for the commands that change the database
// (migrate, its preflight, restore): a server older than
// migrate.OldestMajor is refused before anything is changed. again is the
// command to run once the server is upgraded.
func (a *app) connectToChange(ctx context.Context, cfg config.Config, d *dsn.DSN, again string) (*pgx.Conn, int) {
	conn, code := a.connect(ctx, cfg, d)
	if conn == nil {
		return nil, code
	}
	num, text, err := migrate.ServerVersion(ctx, conn)
	if err == nil {
		var warning string
		if warning, err = migrate.CheckServerVersion(num, text); warning != "" {
			fmt.Fprintln(a.Stderr, "openwatch: warning:", warning)
		}
	}
	if err != nil {
		conn.Close(context.Background())
		a.errorf("%v.\nNothing was changed. Upgrade the server to PostgreSQL %d or newer (docs/UPGRADING.md, \"Supported PostgreSQL versions\"), then run: %s",
			d.Redactor.Error(err), migrate.OldestMajor, a.next(again))
		return nil, ExitError
	}
	return conn, ExitOK
}
