package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/pgtest"
)

// TestDNFServerStopsMidMigration (issue 22, section 3): the database server
// goes away (`pg_ctl stop -m immediate`) while a migration runs, after the
// upgrade helper stopped the service. dnf must fail the transaction, naming
// the recovery command; the service stays stopped; the journal says the
// upgrade left it stopped; and once the server is back, that one command
// migrates and starts the service.
//
// The migration that runs long is the "slow" variant's (slowMigration): it
// sleeps while the unlogged table e2e_slow_migration holds a row. The crash
// of the server empties every unlogged table, so after the restart the
// recovery runs it without the test touching the database, as an operator
// who only starts the server again would.
func TestDNFServerStopsMidMigration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, formatNamed(t, "rpm"), "dash")
	slow := slowVariant(t)
	// A server of this test's own: stopping the shared one would fail
	// every other case running in parallel.
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatalf("starting the test's own PostgreSQL: %v", err)
	}
	t.Cleanup(srv.Stop)
	e.db = srv.NewDatabase(t)

	nw := e.vs["new"]
	dnf := e.dnfRepo(nw, slow)
	e.mustOperator(append(dnf, "install", "e2e-system", "openwatch-"+nw.FullVersion())...)
	e.initialise(nw)
	// A shorter wait for the database than the default 30 s: the migration
	// and the start guard each wait this long for the stopped server.
	conf := e.r.readFile(upgradeConfPath)
	e.r.writeFile(upgradeConfPath, conf+"DATABASE_WAIT_TIMEOUT=5\n", 0o640)
	e.exec("CREATE UNLOGGED TABLE e2e_slow_migration (why text); INSERT INTO e2e_slow_migration VALUES ('sleep until the server crashes')")
	if !e.r.active(applianceUnit) {
		t.Fatalf("%s is not running before the upgrade", applianceUnit)
	}

	upgrade := append(dnf, "upgrade", "openwatch")
	done := make(chan result, 1)
	go func() { done <- e.r.runWatched(pmTimeout, upgrade...) }()

	// Wait for the migration to sleep in the service's database, with the
	// service stopped by the helper, then crash the server under it.
	var res result
	crashed := false
	deadline := time.After(2 * time.Minute)
wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-deadline:
			t.Fatalf("the slow migration did not run in %s within 2 minutes with %s stopped", e.db.Name, applianceUnit)
		case <-time.After(200 * time.Millisecond):
		}
		if !e.migrationSleeps() {
			continue
		}
		if e.r.active(applianceUnit) || eventIndex(lines(e.r.events()), 0, isCall(applianceUnit, "stop")) < 0 {
			t.Fatalf("the migration runs while %s was not stopped by the helper:\n%s", applianceUnit, e.r.events())
		}
		stopServer(t, srv)
		crashed = true
		res = <-done
		break wait
	}
	e.runs = append(e.runs, res)
	if res.code < 0 {
		t.Fatalf("%s did not finish: %v\n%s", res.cmd, res.err, res.out)
	}
	e.assertNoPassword(res)
	if !crashed {
		t.Fatalf("%s ended (exit %d) before the slow migration ran with %s stopped: the server was never stopped under it\n%s", res.cmd, res.code, applianceUnit, res.out)
	}

	if res.code == 0 {
		t.Errorf("dnf upgrade exited 0 although the database went away mid-migration with %s stopped", applianceUnit)
	}
	if !strings.Contains(res.out, "Error: openwatch: THE UPGRADE FAILED in its %post (") || !strings.Contains(res.out, "To recover, run: "+helperPath) {
		t.Errorf("dnf's error does not say the upgrade failed and name the recovery command %s:\n%s", helperPath, res.out)
	}
	// The helper names the cause, not a bare driver error.
	if !strings.Contains(res.out, "THE DATABASE BECAME UNREACHABLE during the migration") {
		t.Errorf("the output does not say the database became unreachable during the migration:\n%s", res.out)
	}
	if got := e.installedVersion(); got != slow.FullVersion() {
		t.Errorf("installed %q, want %s (rpm keeps a package whose %%post failed)", got, slow.FullVersion())
	}
	if e.r.active(applianceUnit) {
		t.Errorf("%s is running after the failed upgrade", applianceUnit)
	}
	ev := lines(e.r.events())
	if stop := eventIndex(ev, 0, isCall(applianceUnit, "stop")); stop >= 0 {
		if i := startIndex(ev, stop, applianceUnit); i >= 0 {
			t.Errorf("%s was started after the failed migration: %s", applianceUnit, ev[i])
		}
	}
	if got := e.journal("SERVICE_STOPPED"); got != "yes" {
		t.Errorf("journal SERVICE_STOPPED=%q, want yes", got)
	}
	if got := e.journal("OUTCOME"); got == "" || got == "succeeded" || got == "in-progress" {
		t.Errorf("journal OUTCOME=%q, want the failure's outcome", got)
	}
	if got := e.journal("RECOVERY"); got != helperPath {
		t.Errorf("journal RECOVERY=%s, want %s", got, helperPath)
	}

	// The operator starts the server again and runs the one command.
	startServer(t, srv)
	if got := e.head(); got != nw.Head {
		t.Errorf("schema at %s after the crash, want %s (the migration's transaction rolled back)", got, nw.Head)
	}
	e.r.resetEvents()
	rec := e.mustOperator(helperPath)
	if got := e.head(); got != slow.Head {
		t.Errorf("schema at %s after %s, want %s\n%s", got, helperPath, slow.Head, rec.out)
	}
	if !e.r.active(applianceUnit) {
		t.Errorf("%s is not running after %s", applianceUnit, helperPath)
	}
	if got := e.journal("OUTCOME"); got != "succeeded" {
		t.Errorf("journal OUTCOME=%q after the recovery, want succeeded", got)
	}
}


// migrationSleeps reports whether a session in the test's database sleeps
// in the slow migration (not in a rehearsal's copy of it).
func (e *env) migrationSleeps() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn := e.conn()
	defer conn.Close(context.Background())
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event = 'PgSleep' AND query LIKE '%e2e_slow_migration%'`).Scan(&n)
	return err == nil && n > 0
}

// stopServer crashes srv the way a power loss or an OOM kill would look to
// its clients: `pg_ctl stop -m immediate`.
func stopServer(t *testing.T, srv *pgtest.Server) {
	t.Helper()
	if out, err := asPostgres(filepath.Join(srv.BinDir, "pg_ctl"), "-D", serverDataDir(srv), "-m", "immediate", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop -m immediate: %v\n%s", err, out)
	}
}

// startServer starts srv again on its port and socket directory.
func startServer(t *testing.T, srv *pgtest.Server) {
	t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=%s -c port=%d -c unix_socket_directories=%s", srv.Host, srv.Port, srv.SocketDir)
	if out, err := asPostgres(filepath.Join(srv.BinDir, "pg_ctl"), "-D", serverDataDir(srv), "-l", filepath.Join(srv.SocketDir, "log.restarted"),
		"-o", opts, "-w", "-t", "60", "start"); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

// serverDataDir is srv's data directory: pgtest keeps it as data/ in the
// server's directory, which is also its socket directory.
func serverDataDir(srv *pgtest.Server) string { return filepath.Join(srv.SocketDir, "data") }

func asPostgres(name string, args ...string) ([]byte, error) {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// slowMigration sleeps while the unlogged table e2e_slow_migration holds a
// row, in the service's database only (a rehearsal's copy goes on at once).
// It first makes a change of its own, which the crash must roll back.
const slowMigration = `-- migrate:up
CREATE TABLE e2e_slow_done (id integer);
DO $$
BEGIN
    IF current_database() NOT LIKE 'openwatch\_rehearsal\_%'
       AND to_regclass('public.e2e_slow_migration') IS NOT NULL
       AND EXISTS (SELECT 1 FROM e2e_slow_migration) THEN
        PERFORM pg_sleep(600);
    END IF;
END
$$;

-- migrate:down
DROP TABLE e2e_slow_done;
`

var (
	slowOnce sync.Once
	slow     *variant
	slowErr  error
)

// slowVariant is this tree plus slowMigration, as 1.3.0, built once.
func slowVariant(t *testing.T) *variant {
	t.Helper()
	variants(t) // pkgDir's packages and the repository's migrations first
	slowOnce.Do(func() {
		v := &variant{Name: "slow", Version: "1.3.0", Release: "1", Head: "29991231235958"}
		src, err := os.MkdirTemp("", "openwatch-e2e-src-")
		if err != nil {
			slowErr = err
			return
		}
		defer os.RemoveAll(src)
		if slowErr = copySource(src); slowErr != nil {
			return
		}
		if slowErr = os.WriteFile(filepath.Join(src, "migrations", v.Head+"_e2e_slow.sql"), []byte(slowMigration), 0o644); slowErr != nil {
			return
		}
		v.Binary = filepath.Join(pkgDir, "openwatch-"+v.FullVersion())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", v.Binary,
			"-ldflags", "-s -w -X github.com/openwatch/openwatch/internal/version.Version="+v.FullVersion(), "./cmd/openwatch")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			slowErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		deb, rpm, err := buildPackages(v)
		if err != nil {
			slowErr = err
			return
		}
		v.HostDEB, v.HostRPM = deb, rpm
		v.DEB = "/e2e-pkgs/" + strings.TrimPrefix(deb, pkgDir+"/")
		v.RPM = "/e2e-pkgs/" + strings.TrimPrefix(rpm, pkgDir+"/")
		slow = v
	})
	if slowErr != nil {
		t.Fatalf("building the package with a slow migration: %v", slowErr)
	}
	return slow
}
