package dsn

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultConnectTimeout bounds a connection attempt when the DSN sets none.
const DefaultConnectTimeout = 10 * time.Second

// UnreachableError means the database could not be reached or refused us.
type UnreachableError struct {
	What string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot connect to the %s: %v", e.What, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Connect opens one session. Its error is an *UnreachableError with the
// password redacted.
func (d *DSN) Connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := d.Config.Copy()
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, &UnreachableError{What: d.Describe(), Err: d.Redactor.Error(err)}
	}
	return conn, nil
}
