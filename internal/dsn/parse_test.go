package dsn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/pgtest"
)

// The fragments a hostile password is built from: none may appear in an error.
const frag1, frag2 = "Zq8Kx", "Wv3Pt"

func TestParseErrorsNeverShowAnyPartOfThePassword(t *testing.T) {
	svcFile := filepath.Join(t.TempDir(), "pg_service.conf")
	writeFile(t, svcFile, "[other]\nhost=h\n")
	t.Setenv("PGSERVICEFILE", svcFile)
	tests := []struct{ name, dsn, want string }{
		{"an unquoted password with a space", "host=h password=" + frag1 + " " + frag2 + " port=5432", "single quotes"},
		{"an unquoted password with a space at the end", "host=h password=" + frag1 + " " + frag2, "single quotes"},
		{"an unterminated quote", "host=h password='" + frag1 + " " + frag2, "never closed"},
		{"an unescaped quote inside quotes", "host=h password='" + frag1 + "'" + frag2 + "' port=1", "single quotes"},
		{"a backslash escaping the closing quote", "host=h password='" + frag1 + frag2 + `\'`, "never closed"},
		{"a mis-split password whose tail is a quoted unknown keyword", "host=h password=" + frag1 + " " + frag2 + "='x", "quoted value of a setting is never closed"},
		{"a mis-split password whose tail is an invalid sslmode", "host=h password=" + frag1 + " sslmode=" + frag2, "sslmode"},
		{"a mis-split password whose tail is an invalid target_session_attrs", "host=h password=" + frag1 + " target_session_attrs=" + frag2, "target_session_attrs"},
		{"a mis-split password whose tail is a port", "host=h password=" + frag1 + " port=" + frag2, "port"},
		{"a mis-split password whose tail names a CA file", "host=h sslmode=verify-ca password=" + frag1 + " sslrootcert=/" + frag2, "sslrootcert"},
		{"a mis-split password whose tail names a service", "host=h password=" + frag1 + " service=" + frag2, "service"},
		{"a mis-split password whose tail names a service file", "host=h password=" + frag1 + " service=x servicefile=/" + frag2, "service file"},
		{"a URL password with a raw space", "postgres://u:" + frag1 + " " + frag2 + "@h/db", "space"},
		{"a URL password with a bad percent escape", "postgres://u:" + frag1 + "%zz" + frag2 + "@h/db", "percent"},
		{"a URL password with a percent-encoded NUL", "postgres://u:" + frag1 + "%00" + frag2 + "@h/db", "NUL"},
		{"a URL password with a raw slash (becomes host and port)", "postgres://u:" + frag1 + "/" + frag2 + "@h/db", "port"},
		{"a URL password with a raw colon and slash", "postgres://u:" + frag1 + ":" + frag2 + "/x@h:5432/db", "port"},
		{"a URL query password with a raw space", "postgres://h/db?password=" + frag1 + " " + frag2, "space"},
		{"a URL query password with a raw =", "postgres://h/db?password=" + frag1 + "=" + frag2, "second ="},
		{"a URL query password with a raw & (tail without =)", "postgres://h/db?password=" + frag1 + "&" + frag2, "no ="},
		{"a URL with an unclosed IPv6 bracket after the password", "postgres://u:" + frag1 + "@[" + frag2, "bracket"},
		{"a NUL byte", "host=h password=" + frag1 + "\x00" + frag2, "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.dsn)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tt.dsn)
			}
			msg := err.Error()
			if strings.Contains(msg, frag1) || strings.Contains(msg, frag2) {
				t.Errorf("error shows part of the password: %s", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
		})
	}
}

func TestParseErrorsNameTheKeywordAndWhereItWasSet(t *testing.T) {
	t.Setenv("PGCONNECT_TIMEOUT", "soon")
	_, err := Parse("host=h user=u")
	want := "connect_timeout (in the environment variable PGCONNECT_TIMEOUT) must be a whole number of seconds"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to say %q", err, want)
	}
}

// A libpq keyword pgx does not know must not reach the server as a setting:
// the server refuses unknown settings and the connection fails.
func TestLibpqKeywordsAreAcceptedAndKeptOffTheServer(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	libpqOnly := map[string]string{
		"requirepeer": "postgres", "sslcrl": "/nonexistent/crl.pem", "sslcrldir": "/nonexistent",
		"gssencmode": "disable", "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "5",
		"keepalives_count": "3", "tcp_user_timeout": "10000", "load_balance_hosts": "disable",
		"hostaddr": "127.0.0.1", "passfile": "/nonexistent/pgpass", "sslcompression": "0",
		"sslsni": "1", "sslnegotiation": "postgres", "sslcertmode": "allow", "krbsrvname": "postgres",
		"channel_binding": "prefer", "require_auth": "scram-sha-256", "target_session_attrs": "read-write",
		"fallback_application_name": "ow-fallback", "gssdelegation": "0",
	}
	var b strings.Builder
	fmt.Fprintf(&b, "host=localhost port=%d dbname=%s user=%s password=%s sslmode=disable statement_timeout=12345",
		db.Server.Port, db.Name, db.User, kvQuoteForTest(db.Password))
	for k, v := range libpqOnly {
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	d, err := Parse(b.String())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for k := range libpqOnly {
		if _, ok := d.Config.RuntimeParams[k]; ok {
			t.Errorf("%s would be sent to the server as a setting", k)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := d.Connect(ctx)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer conn.Close(ctx)
	var timeout, app string
	if err := conn.QueryRow(ctx, "select current_setting('statement_timeout'), current_setting('application_name')").Scan(&timeout, &app); err != nil {
		t.Fatal(err)
	}
	if timeout != "12345ms" || app != "ow-fallback" {
		t.Errorf("server settings = %q, %q; want the run-time parameter and the fallback name to arrive", timeout, app)
	}
	assertPQConnects(t, d, db.User)
	assertPsqlConnects(ctx, t, d, db.User)
	env := d.ChildEnv()
	for _, want := range []string{"PGREQUIREPEER=postgres", "PGSSLCRL=/nonexistent/crl.pem", "PGSSLCRLDIR=/nonexistent",
		"PGGSSENCMODE=disable", "PGHOSTADDR=127.0.0.1", "PGLOADBALANCEHOSTS=disable", "PGREQUIREAUTH=scram-sha-256",
		"PGCHANNELBINDING=prefer", "PGTARGETSESSIONATTRS=read-write", "PGSSLCERTMODE=allow", "PGPASSFILE=/nonexistent/pgpass"} {
		if !contains(env, want) {
			t.Errorf("child env lacks %s", want)
		}
	}
	q := d.DbmateURL().Query()
	for _, k := range []string{"requirepeer", "sslcrl", "keepalives", "gssencmode", "require_auth", "channel_binding", "sslcertmode", "passfile"} {
		if q.Has(k) {
			t.Errorf("dbmate URL carries %s, which lib/pq would send to the server", k)
		}
	}
	if q.Get("statement_timeout") != "12345" || q.Get("hostaddr") != "127.0.0.1" {
		t.Errorf("dbmate URL lacks the run-time parameter or hostaddr: %s", q.Encode())
	}
}

func TestGSSEncryptionRequiredIsRefused(t *testing.T) {
	_, err := Parse("host=h user=u gssencmode=require")
	if err == nil || !strings.Contains(err.Error(), "gssencmode") {
		t.Fatalf("err = %v, want a gssencmode refusal", err)
	}
}

func TestServiceFileSettingsReachPgDumpAndDbmate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeFile(t, ca, selfSignedPEM(t))
	svc := filepath.Join(dir, "pg_service.conf")
	writeFile(t, svc, "[prod]\nhost=db.example\nport=6543\ndbname=ow\nuser=app\nsslmode=verify-full\nsslrootcert="+ca+"\nconnect_timeout=9\n")
	t.Setenv("PGSERVICEFILE", svc)
	tests := []struct {
		name, dsn, pgservice, mode string
	}{
		{"service= in a keyword/value string", "service=prod", "", "verify-full"},
		{"service= in a URL query", "postgres:///?service=prod", "", "verify-full"},
		{"PGSERVICE", "user=app", "prod", "verify-full"},
		{"the connection string beats the service", "service=prod sslmode=require", "", "require"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PGSERVICE", tt.pgservice)
			d, err := Parse(tt.dsn)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d.SSLMode != tt.mode {
				t.Errorf("SSLMode = %q, want %q", d.SSLMode, tt.mode)
			}
			env := d.ChildEnv()
			for _, want := range []string{"PGHOST=db.example", "PGPORT=6543", "PGDATABASE=ow", "PGUSER=app",
				"PGSSLMODE=" + tt.mode, "PGSSLROOTCERT=" + ca, "PGCONNECT_TIMEOUT=9"} {
				if !contains(env, want) {
					t.Errorf("child env lacks %s: %q", want, env)
				}
			}
			for _, kv := range env {
				if strings.HasPrefix(kv, "PGSERVICE") {
					t.Errorf("child env passes %s: libpq would let the service override the connection string", kv)
				}
			}
			u := d.DbmateURL()
			q := u.Query()
			if q.Get("sslmode") != tt.mode || q.Get("sslrootcert") != ca || q.Get("host") != "db.example" ||
				q.Get("connect_timeout") != "9" || u.Port() != "6543" || u.Path != "/ow" || u.User.Username() != "app" {
				t.Errorf("dbmate URL = %s", u.Redacted())
			}
			if q.Has("service") {
				t.Errorf("dbmate URL passes the service: %s", u.Redacted())
			}
		})
	}
}

func TestPGEnvironmentSettingsReachPgDumpAndDbmate(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca, selfSignedPEM(t))
	t.Setenv("PGSSLMODE", "verify-ca")
	t.Setenv("PGSSLROOTCERT", ca)
	t.Setenv("PGREQUIREPEER", "postgres")
	d, err := Parse("postgres://app@db.example/ow")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PGSSLMODE=verify-ca", "PGSSLROOTCERT=" + ca, "PGREQUIREPEER=postgres"} {
		if !contains(d.ChildEnv(), want) {
			t.Errorf("child env lacks %s", want)
		}
	}
	q := d.DbmateURL().Query()
	if q.Get("sslmode") != "verify-ca" || q.Get("sslrootcert") != ca || q.Has("requirepeer") {
		t.Errorf("dbmate URL query = %s", q.Encode())
	}
	if _, ok := d.Config.RuntimeParams["requirepeer"]; ok {
		t.Error("requirepeer from PGREQUIREPEER would be sent to the server")
	}
}

// End to end: everything but the service's name comes from a service file.
func TestAServiceFileConnectsEveryClient(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	svc := filepath.Join(t.TempDir(), "pg_service.conf")
	writeFile(t, svc, fmt.Sprintf("[ow]\nhost=%s\nport=%d\ndbname=%s\nuser=%s\npassword=%s\nsslmode=disable\n",
		db.Server.Host, db.Server.Port, db.Name, db.User, db.Password))
	t.Setenv("PGSERVICEFILE", svc)
	d, err := Parse("service=ow")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if d.SSLMode != "disable" {
		t.Errorf("SSLMode = %q, want the service's disable", d.SSLMode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := d.Connect(ctx)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	conn.Close(ctx)
	t.Setenv("PGSERVICEFILE", "") // the children must not need it
	assertPQConnects(t, d, db.User)
	assertPsqlConnects(ctx, t, d, db.User)
}

func TestAMissingServiceIsReportedWithoutQuotingTheConnectionString(t *testing.T) {
	svc := filepath.Join(t.TempDir(), "pg_service.conf")
	writeFile(t, svc, "[other]\nhost=h\n")
	t.Setenv("PGSERVICEFILE", svc)
	t.Setenv("PGSERVICE", "prod")
	_, err := Parse("user=u")
	want := `the service "prod" is not defined in the service file ` + svc
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestDescribeNamesTheDatabaseOnly(t *testing.T) {
	d, err := Parse("host=/run/postgresql dbname=ow user=app password=s3cr3t")
	if err != nil {
		t.Fatal(err)
	}
	got := d.Describe()
	if want := `database "ow" on the local socket in /run/postgresql (port 5432) as "app"`; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func kvQuoteForTest(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func selfSignedPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
