package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// A restore point written by a newer pg_dump (the server's, as the
// preflight demands) cannot be read by an older pg_restore: restore
// refuses, changing nothing, and names the package that brings the right
// client.
func TestRestoreWithAPgRestoreOlderThanTheFileNamesThePackage(t *testing.T) {
	if os.Getenv(pgtest.MajorVar) != "" {
		t.Skip("runs with the host's pg_restore in make test's go test; a matrix root holds one PostgreSQL only")
	}
	client := pgDumpMajor(t)
	server := 17
	if client >= server {
		server = 18
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
	e := newEnvOn(t, srv)
	e.mustRun(0, "migrate")
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	// The server's own pg_dump, run in its root, writes the restore point.
	file := filepath.Join(t.TempDir(), "openwatch_1.2.0-1_schema-"+head+"_20260101T000000Z.dump")
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	dumpCmd := exec.Command("chroot", root, filepath.Join(srv.BinDir, "pg_dump"), "--format=custom", "--no-password")
	dumpCmd.Env = []string{"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", srv.Port), "PGUSER=" + e.db.User, "PGPASSWORD=" + e.db.Password, "PGDATABASE=" + e.db.Name}
	var msg strings.Builder
	dumpCmd.Stdout, dumpCmd.Stderr = out, &msg
	if err := dumpCmd.Run(); err != nil {
		t.Fatalf("pg_dump %d: %v\n%s", server, err, msg.String())
	}
	out.Close()
	e.exec("delete from hosts")

	r := e.run("restore", "--yes", file)
	if r.code != ExitError || !strings.Contains(r.stderr, fmt.Sprintf("postgresql-client-%d", server)) || !strings.Contains(r.stderr, "Nothing was changed") {
		t.Fatalf("restore of a PostgreSQL %d dump with pg_restore %d: want exit %d naming postgresql-client-%d: %s", server, client, ExitError, server, r)
	}
	if got := e.query("select count(*) from hosts"); got != "0" {
		t.Fatalf("the refused restore changed the database: %s hosts", got)
	}
}
