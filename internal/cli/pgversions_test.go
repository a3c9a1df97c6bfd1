package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/openwatch/openwatch/internal/pgtest"
)

// A pg_dump older than the server cannot dump it: the preflight refuses,
// naming the package that brings the right client, and migrate applies
// nothing. This machine's pg_dump against a newer server from the cached
// roots (scripts/pg-roots.sh), which runs chrooted while the binary and its
// pg_dump run here.
func TestPreflightRefusesAPgDumpOlderThanTheServerNamingThePackage(t *testing.T) {
	if os.Getenv(pgtest.MajorVar) != "" {
		t.Skip("runs with the host's pg_dump in make test's go test; a matrix root holds one PostgreSQL only")
	}
	client := pgDumpMajor(t)
	server := 17
	if client >= server {
		server = 18
	}
	if client >= server {
		t.Fatalf("pg_dump %d is not older than any cached root's server (17, 18): this test needs an older client", client)
	}
	root, err := pgtest.CachedRoot(server)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pgtest.StartWith(pgtest.StartOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if srv.Major() != server {
		t.Fatalf("the server in %s is PostgreSQL %d, want %d", root, srv.Major(), server)
	}
	e := newEnvOn(t, srv)
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")

	r := e.run("migrate", "--preflight")
	want := fmt.Sprintf("is version %d, older than the server (%d)", client, server)
	if r.code != ExitBackupFailed || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, fmt.Sprintf("postgresql-client-%d", server)) ||
		!strings.Contains(r.stderr, "then run: openwatch migrate --preflight") {
		t.Fatalf("want exit %d saying %q and naming postgresql-client-%d: %s", ExitBackupFailed, want, server, r)
	}
	// Without the preflight, the real pg_dump refuses and nothing is applied.
	r = e.run("migrate")
	if r.code != ExitBackupFailed || !strings.Contains(r.stderr, "Nothing was applied") || !strings.Contains(r.stderr, "server version") {
		t.Fatalf("migrate with pg_dump %d against PostgreSQL %d: want exit %d, pg_dump's refusal and nothing applied: %s", client, server, ExitBackupFailed, r)
	}
	if got := e.applied(); got != "20260101000001,20260101000002" {
		t.Fatalf("applied = %q after the refused migrate", got)
	}
}
