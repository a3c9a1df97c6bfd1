package dsn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultConnectTimeout bounds a connection attempt when the DSN sets none.
const DefaultConnectTimeout = 10 * time.Second

// Retry backoff of ConnectWait: the first pause, and the longest.
const (
	firstRetryDelay = 500 * time.Millisecond
	maxRetryDelay   = 2 * time.Second
)

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
	conn, err := d.connect(ctx)
	if err != nil {
		return nil, d.unreachable(err)
	}
	return conn, nil
}

// ConnectWait is Connect that waits up to wait for a database that is not up
// yet: when an attempt fails in a way that passes (connection refused, no
// socket file yet, the server starting up, shutting down or in recovery, a
// temporary DNS failure, a timeout), it calls onWait once with that error
// (redacted; onWait may be nil) and tries again after a short, growing pause
// until wait has passed or ctx ends. A failure that waiting cannot cure
// (authentication, a missing database, TLS) returns at once. wait <= 0 means
// a single attempt. The error is an *UnreachableError with the password
// redacted: the last attempt's.
func (d *DSN) ConnectWait(ctx context.Context, wait time.Duration, onWait func(err error)) (*pgx.Conn, error) {
	conn, err := d.connect(ctx)
	if err == nil {
		return conn, nil
	}
	if wait <= 0 || !Transient(err) || ctx.Err() != nil {
		return nil, d.unreachable(err)
	}
	if onWait != nil {
		onWait(d.unreachable(err))
	}
	deadline := time.Now().Add(wait)
	delay := firstRetryDelay
	for {
		pause := min(delay, time.Until(deadline))
		if pause < 0 {
			return nil, d.unreachable(err)
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, d.unreachable(err)
		case <-timer.C:
		}
		if time.Until(deadline) <= 0 {
			return nil, d.unreachable(err)
		}
		delay = min(2*delay, maxRetryDelay)
		attemptCtx, cancel := context.WithDeadline(ctx, deadline)
		conn, attemptErr := d.connect(attemptCtx)
		cutShort := attemptCtx.Err() != nil
		cancel()
		if attemptErr == nil {
			return conn, nil
		}
		if cutShort && err != nil {
			// The wait ran out during the attempt: the previous error says
			// more than "context deadline exceeded".
			return nil, d.unreachable(err)
		}
		err = attemptErr
		if !Transient(err) {
			return nil, d.unreachable(err)
		}
	}
}

func (d *DSN) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := d.Config.Copy()
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	return pgx.ConnectConfig(ctx, cfg)
}

func (d *DSN) unreachable(err error) error {
	return &UnreachableError{What: d.Describe(), Err: d.Redactor.Error(err)}
}

// Transient reports whether a connection error may pass by waiting: the
// server is not listening yet (connection refused, no socket file), is
// starting up, shutting down or in recovery (SQLSTATE 57P03), a DNS lookup
// failed temporarily, or the attempt timed out. Any error from the server
// other than 57P03 (authentication failed, no such database, …) and any TLS
// failure is not transient.
func Transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57P03"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	return pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}
