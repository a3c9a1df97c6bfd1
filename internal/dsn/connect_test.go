package dsn

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/openwatch/openwatch/internal/pgtest"
)

// freePort returns a port nothing listens on (for now).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// withPort is db's URL with another port.
func withPort(db *pgtest.Database, port int) string {
	return strings.Replace(db.URL(), ":"+strconv.Itoa(db.Server.Port)+"/", ":"+strconv.Itoa(port)+"/", 1)
}

// proxy listens on port and hands each connection to serve.
func proxy(t *testing.T, port int, serve func(n int, c net.Conn)) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(n, c)
		}
	}()
}

// forward copies bytes between c and the real server.
func forward(t *testing.T, db *pgtest.Database, c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", net.JoinHostPort(db.Server.Host, strconv.Itoa(db.Server.Port)))
	if err != nil {
		t.Error(err)
		return
	}
	defer s.Close()
	go io.Copy(s, c)
	io.Copy(c, s)
}

// onWaitCounter records the calls of an onWait callback, and runs then once.
type onWaitCounter struct {
	mu    sync.Mutex
	calls []error
	then  func()
}

func (w *onWaitCounter) onWait(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, err)
	if w.then != nil && len(w.calls) == 1 {
		w.then()
	}
}

func parseOrFatal(t *testing.T, s string) *DSN {
	t.Helper()
	d, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConnectWaitGivesUpOnAClosedPortAfterTheWait(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	d := parseOrFatal(t, withPort(db, freePort(t)))
	var w onWaitCounter
	conn, err := d.ConnectWait(context.Background(), 1500*time.Millisecond, w.onWait)
	if err == nil {
		conn.Close(context.Background())
		t.Fatal("connected to a closed port")
	}
	var ue *UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err = %v, want an UnreachableError wrapping connection refused", err)
	}
	if len(w.calls) != 1 {
		t.Fatalf("onWait called %d times, want once", len(w.calls))
	}
	if !errors.As(w.calls[0], &ue) {
		t.Errorf("onWait got %T, want an UnreachableError", w.calls[0])
	}
	if strings.Contains(err.Error(), db.Password) || strings.Contains(w.calls[0].Error(), db.Password) {
		t.Error("an error shows the password")
	}
}

// The server appears only once the first attempt has failed: the wait covers it.
func TestConnectWaitConnectsOnceTheServerListens(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	port := freePort(t)
	d := parseOrFatal(t, withPort(db, port))
	w := onWaitCounter{then: func() { proxy(t, port, func(_ int, c net.Conn) { forward(t, db, c) }) }}
	conn, err := d.ConnectWait(context.Background(), 10*time.Second, w.onWait)
	if err != nil {
		t.Fatalf("ConnectWait: %v", err)
	}
	conn.Close(context.Background())
	if len(w.calls) != 1 {
		t.Errorf("onWait called %d times, want once", len(w.calls))
	}
}

// "the database system is starting up" (57P03) passes: wait for it.
func TestConnectWaitWaitsForAServerStartingUp(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	port := freePort(t)
	proxy(t, port, func(n int, c net.Conn) {
		if n > 0 {
			forward(t, db, c)
			return
		}
		defer c.Close()
		be := pgproto3.NewBackend(c, c)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			t.Error(err)
			return
		}
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"})
		be.Flush()
	})
	d := parseOrFatal(t, withPort(db, port))
	var w onWaitCounter
	conn, err := d.ConnectWait(context.Background(), 10*time.Second, w.onWait)
	if err != nil {
		t.Fatalf("ConnectWait: %v", err)
	}
	conn.Close(context.Background())
	var pgErr *pgconn.PgError
	if len(w.calls) != 1 || !errors.As(w.calls[0], &pgErr) || pgErr.Code != "57P03" {
		t.Errorf("onWait calls = %v, want one with SQLSTATE 57P03", w.calls)
	}
}

func TestConnectWaitFailsAtOnceWhenWaitingCannotHelp(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	u := db.URL()
	tests := []struct{ name, dsn, code string }{
		{"a wrong password", strings.Replace(u, ":"+urlPassword(u)+"@", ":wrong@", 1), "28P01"},
		{"a database that does not exist", strings.Replace(u, "/"+db.Name+"?", "/"+db.Name+"_absent?", 1), "3D000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := parseOrFatal(t, tt.dsn)
			var w onWaitCounter
			// A wait long enough to see a wrong retry, short enough not to hang.
			conn, err := d.ConnectWait(context.Background(), 5*time.Second, w.onWait)
			if err == nil {
				conn.Close(context.Background())
				t.Fatal("connected")
			}
			var ue *UnreachableError
			var pgErr *pgconn.PgError
			if !errors.As(err, &ue) || !errors.As(err, &pgErr) || pgErr.Code != tt.code {
				t.Errorf("err = %v, want an UnreachableError with SQLSTATE %s", err, tt.code)
			}
			if len(w.calls) != 0 {
				t.Errorf("onWait called %d times for a permanent error", len(w.calls))
			}
		})
	}
}

func TestConnectWaitWithoutAWaitTriesOnce(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	d := parseOrFatal(t, withPort(db, freePort(t)))
	var w onWaitCounter
	if _, err := d.ConnectWait(context.Background(), 0, w.onWait); err == nil || len(w.calls) != 0 {
		t.Fatalf("err = %v, onWait calls = %d; want an error and no wait", err, len(w.calls))
	}
}

func TestAMissingSocketFileIsTransient(t *testing.T) {
	d := parseOrFatal(t, "host="+t.TempDir()+" user=u dbname=d sslmode=disable")
	_, err := d.Connect(context.Background())
	if err == nil || !Transient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
}

func TestConnectWaitStopsWhenTheContextEnds(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	d := parseOrFatal(t, withPort(db, freePort(t)))
	ctx, cancel := context.WithCancel(context.Background())
	w := onWaitCounter{then: cancel}
	_, err := d.ConnectWait(ctx, time.Hour, w.onWait)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want an UnreachableError", err)
	}
}

func urlPassword(u string) string {
	rest := strings.TrimPrefix(u, "postgres://")
	userinfo := rest[:strings.LastIndexByte(rest, '@')]
	_, pw, _ := strings.Cut(userinfo, ":")
	return pw
}
