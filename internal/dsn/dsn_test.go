package dsn

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/openwatch/openwatch/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func withoutSSLMode(dsn string) string {
	dsn = strings.Replace(dsn, "?sslmode=disable", "", 1)
	return strings.Replace(dsn, " sslmode=disable", "", 1)
}

// Every consumer of the DSN reaches the database: pgx, lib/pq (through the URL
// dbmate gets) and psql (through the PG* environment only).
func TestEveryClientConnectsWithTheHostilePassword(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	tests := []struct{ name, dsn string }{
		{"a URL", db.URL()},
		{"a keyword/value string", db.KeywordValue()},
		{"a keyword/value string with a unix-socket host", db.SocketKeywordValue()},
		{"a URL with a unix-socket host in the query", withoutSSLMode(db.URL()) + "?host=" + db.Server.SocketDir},
		{"a URL with a percent-encoded unix-socket directory as host", strings.Replace(db.URL(), "@127.0.0.1:", "@"+strings.ReplaceAll(db.Server.SocketDir, "/", "%2F")+":", 1)},
		{"a URL without sslmode (libpq's prefer, not lib/pq's require)", withoutSSLMode(db.URL())},
		{"a keyword/value string without sslmode", withoutSSLMode(db.KeywordValue())},
		{"a unix socket with sslmode=require (TLS does not apply to sockets)", withoutSSLMode(db.SocketKeywordValue()) + " sslmode=require"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(tt.dsn)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d.Config.Password != db.Password {
				t.Fatalf("password = %q, want %q", d.Config.Password, db.Password)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			assertPQConnects(t, d, db.User)
			assertPsqlConnects(ctx, t, d, db.User)
		})
	}
}

func assertPQConnects(t *testing.T, d *DSN, user string) {
	t.Helper()
	c, err := sql.Open("postgres", d.DbmateURL().String())
	if err != nil {
		t.Fatalf("lib/pq open: %v", d.Redactor.Error(err))
	}
	defer c.Close()
	var who string
	if err := c.QueryRow("select current_user").Scan(&who); err != nil || who != user {
		t.Fatalf("lib/pq: current_user = %q, %v", who, d.Redactor.Error(err))
	}
}

func assertPsqlConnects(ctx context.Context, t *testing.T, d *DSN, user string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-c", "select current_user")
	cmd.Env = d.ChildEnv()
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != user {
		t.Fatalf("psql: %v: %s", err, d.Redactor.String(string(out)))
	}
}

func TestSSLModeIsHonouredExactlyAsWritten(t *testing.T) {
	tests := []struct {
		name, dsn, env, want string
	}{
		{"a URL's sslmode wins", "postgres://u@h/db?sslmode=verify-full", "", "verify-full"},
		{"a keyword/value sslmode wins", "host=h user=u sslmode=allow", "", "allow"},
		{"the DSN beats PGSSLMODE", "host=h user=u sslmode=disable", "require", "disable"},
		{"PGSSLMODE applies when the DSN is silent", "host=h user=u", "verify-ca", "verify-ca"},
		{"nothing written means libpq's prefer", "postgres://u@h/db", "", "prefer"},
		{"ssl=true in a URL means require", "postgres://u@h/db?ssl=true", "", "require"},
		{"a socket host keeps the written mode", "host=/run/postgresql user=u sslmode=require", "", "require"},
		{"sslrootcert=system without a mode means verify-full, as in libpq", "host=h user=u sslrootcert=system", "", "verify-full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PGSSLMODE", tt.env)
			d, err := Parse(tt.dsn)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d.SSLMode != tt.want {
				t.Errorf("SSLMode = %q, want %q", d.SSLMode, tt.want)
			}
			if got := d.DbmateURL().Query().Get("sslmode"); got != tt.want {
				t.Errorf("dbmate URL sslmode = %q, want %q", got, tt.want)
			}
			if !contains(d.ChildEnv(), "PGSSLMODE="+tt.want) {
				t.Errorf("child env lacks PGSSLMODE=%s: %q", tt.want, d.ChildEnv())
			}
		})
	}
}

// The test server has no TLS: a client that silently downgraded require would
// connect; every client must refuse instead.
func TestRequireIsNotDowngradedByAnyClient(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	d, err := Parse(withoutSSLMode(db.URL()) + "?sslmode=require")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := sql.Open("postgres", d.DbmateURL().String())
	defer c.Close()
	if err := c.Ping(); err == nil {
		t.Error("lib/pq connected without TLS although sslmode=require")
	}
	cmd := exec.Command("psql", "-X", "-At", "-c", "select 1")
	cmd.Env = d.ChildEnv()
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("psql connected without TLS although sslmode=require: %s", out)
	}
}

func TestChildEnvCarriesTheConnectionAndNothingElse(t *testing.T) {
	t.Setenv("OPENWATCH_DATABASE_DSN", "leak")
	t.Setenv("SOME_OTHER", "leak")
	d, err := Parse("host=db.example port=6543 dbname=ow user=app password='a b' sslmode=disable sslcert=/etc/client.pem connect_timeout=7")
	if err != nil {
		t.Fatal(err)
	}
	env := d.ChildEnv()
	for _, want := range []string{"PGHOST=db.example", "PGPORT=6543", "PGDATABASE=ow", "PGUSER=app",
		"PGPASSWORD=a b", "PGSSLCERT=/etc/client.pem", "PGCONNECT_TIMEOUT=7", "LC_ALL=C"} {
		if !contains(env, want) {
			t.Errorf("child env lacks %q: %q", want, env)
		}
	}
	for _, kv := range env {
		if strings.Contains(kv, "leak") {
			t.Errorf("child env leaks %q", kv)
		}
	}
}

func TestDbmateURLKeepsSocketAndIPv6HostsIntact(t *testing.T) {
	tests := []struct{ dsn, host string }{
		{"host=/var/run/postgresql user=u dbname=d", "/var/run/postgresql"},
		{"postgres://u@[::1]:5433/d", "::1"},
	}
	for _, tt := range tests {
		d, err := Parse(tt.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.DbmateURL().Query().Get("host"); got != tt.host {
			t.Errorf("%s: host = %q, want %q", tt.dsn, got, tt.host)
		}
	}
}

func TestParseErrorsNeverShowThePassword(t *testing.T) {
	const pw = "Zs3cr3tZ"
	for _, bad := range []string{
		"host=h password=" + pw + " port=notaport",
		"postgres://u:" + pw + "@h:notaport/db",
		"host=h password='" + pw,
	} {
		_, err := Parse(bad)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestMultipleHostsAreRefused(t *testing.T) {
	if _, err := Parse("host=a,b user=u sslmode=disable"); err != ErrMultipleHosts {
		t.Fatalf("err = %v, want ErrMultipleHosts", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
