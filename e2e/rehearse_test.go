package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// failingMigrationRehearsed: with CREATEDB (and REHEARSE=auto, as shipped)
// the preflight rehearses the new migration on a scratch copy of the
// database while the service still runs. A migration that fails on the data
// fails the upgrade there: the helper's message says the database was not changed and
// the service was not stopped, and so it is: never stopped, schema, rows,
// the role's databases and the backup directory as before. After the cause
// is fixed, the documented recovery upgrades.
func failingMigrationRehearsed(e *env) {
	nw, failing := e.vs["new"], e.vs["failing"]
	e.installAndInitialise(nw)
	if err := e.db.Server.Exec(context.Background(), "postgres", `ALTER ROLE "`+e.db.User+`" CREATEDB`); err != nil {
		e.t.Fatal(err)
	}
	e.exec("CREATE TABLE e2e_block_migration (why text)")
	ownDatabases := "SELECT datname::text FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1"
	shape, data, versions, dbs := e.schemaShape(), e.data(), e.schemaVersions(), e.queryStrings(ownDatabases)
	e.r.resetEvents()

	res := e.pm(e.f.upgrade(e.f.pkg(failing))...)
	if !e.f.reportsFailure(res) {
		e.t.Errorf("%s (exit %d) does not report the failed post-install script", res.cmd, res.code)
	}
	for _, want := range []string{
		"PREFLIGHT FAILED (openwatch migrate --preflight exit 16): the database was not changed and openwatch.service was not stopped.",
		"would fail on this database: ", "e2e: blocked while table e2e_block_migration exists",
		"the live database is as it was and the scratch copy was dropped; the service was not stopped.",
		"After fixing the cause, run: " + strings.Join(e.f.recover, " "),
	} {
		if !strings.Contains(res.out, want) {
			e.t.Errorf("the failure output lacks %q:\n%s", want, res.out)
		}
	}
	if i := eventIndex(lines(e.r.events()), 0, isCall(applianceUnit, "stop")); i >= 0 {
		e.t.Errorf("%s was stopped although the rehearsal failed before", applianceUnit)
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the failed preflight", applianceUnit)
	}
	if got := e.schemaVersions(); !slices.Equal(got, versions) {
		e.t.Errorf("schema_migrations = %v, want unchanged %v", got, versions)
	}
	if got := e.schemaShape(); got != shape {
		e.t.Errorf("the schema changed:\nbefore:\n%s\nafter:\n%s", shape, got)
	}
	if got := e.data(); got != data {
		e.t.Errorf("data changed:\nbefore %s\nafter  %s", data, got)
	}
	if got := e.queryStrings(ownDatabases); !slices.Equal(got, dbs) {
		e.t.Errorf("the role's databases are %v, want %v as before (no clone, no scratch copy left)", got, dbs)
	}
	e.assertNoRestorePoint()
	if got := e.journal("OUTCOME"); got != "preflight-failed" {
		e.t.Errorf("journal OUTCOME = %q, want preflight-failed", got)
	}

	e.exec("DROP TABLE e2e_block_migration")
	res = e.pm(e.f.recover...)
	if res.code != 0 {
		e.t.Fatalf("recovery %s: exit %d\n%s", res.cmd, res.code, res.out)
	}
	if !strings.Contains(res.out, "preflight: rehearsal: all 1 migration(s) succeeded on a copy of the database") {
		e.t.Errorf("the recovery's preflight did not rehearse:\n%s", res.out)
	}
	if got, want := e.schemaVersions(), append(slices.Clone(repoMigrations), failing.Head); !slices.Equal(got, want) {
		e.t.Errorf("after recovery schema_migrations = %v, want %v", got, want)
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the recovery", applianceUnit)
	}
}

// TestASessionOnTheRehearsalsCopyDoesNotFailTheUpgrade: a session of
// another role (here a superuser's; on a real server an autovacuum worker
// on the freshly loaded copy) stays on the rehearsal's scratch copy, so it
// cannot be dropped. The rehearsal passed: the upgrade goes on and
// succeeds, the output warns naming the copy and the command that drops it,
// and never says the preflight failed or that nothing was changed; the next
// preflight drops the copy.
func TestASessionOnTheRehearsalsCopyDoesNotFailTheUpgrade(t *testing.T) {
	for _, f := range formats {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			sessionOnTheRehearsalsCopy(newEnv(t, f, "dash"))
		})
	}
}

func sessionOnTheRehearsalsCopy(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	if err := e.db.Server.Exec(context.Background(), "postgres", `ALTER ROLE "`+e.db.User+`" CREATEDB`); err != nil {
		e.t.Fatal(err)
	}
	e.exec("CREATE TABLE e2e_hold (n int)")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// pg_dump waits for this lock: the copy exists, still empty, until the
	// superuser's session is on it.
	holder, err := pgx.Connect(ctx, e.db.Server.SuperURL(e.db.Name))
	if err != nil {
		e.t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(ctx, "begin; lock table e2e_hold in access exclusive mode"); err != nil {
		e.t.Fatal(err)
	}
	copyName := make(chan string, 1)
	go func() {
		defer close(copyName)
		super, err := pgx.Connect(ctx, e.db.Server.SuperURL("postgres"))
		if err != nil {
			return
		}
		defer super.Close(context.Background())
		var name string
		for ctx.Err() == nil {
			if super.QueryRow(ctx, `select datname::text from pg_database where datname like 'openwatch\_rehearsal\_%'
				and datdba = (select oid from pg_roles where rolname = $1)`, e.db.User).Scan(&name) == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		on, err := pgx.Connect(ctx, e.db.Server.SuperURL(name))
		holder.Exec(context.Background(), "rollback")
		holder.Close(context.Background())
		if err != nil {
			return
		}
		copyName <- name
		<-ctx.Done() // the session stays until the test ends
		on.Close(context.Background())
	}()

	res := e.pm(e.f.upgrade(e.f.pkg(nw))...)
	name := <-copyName
	if name == "" {
		e.t.Fatalf("no session got onto the rehearsal's copy:\n%s", res.out)
	}
	if res.code != 0 {
		e.t.Fatalf("upgrade %s → %s with a session on the rehearsal's copy: exit %d\n%s", old.FullVersion(), nw.FullVersion(), res.code, res.out)
	}
	for _, want := range []string{
		"warning: preflight: the scratch database " + name + " could not be dropped",
		`DROP DATABASE "` + name + `";`,
		"preflight: ready",
	} {
		if !strings.Contains(res.out, want) {
			e.t.Errorf("the upgrade's output lacks %q:\n%s", want, res.out)
		}
	}
	for _, never := range []string{"PREFLIGHT FAILED", "othing was changed"} {
		if strings.Contains(res.out, never) {
			e.t.Errorf("the upgrade's output says %q while the copy %s exists:\n%s", never, name, res.out)
		}
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations) {
		e.t.Errorf("schema_migrations = %v, want %v", got, repoMigrations)
	}
	if got := e.journal("OUTCOME"); got != "succeeded" {
		e.t.Errorf("journal OUTCOME = %q, want succeeded", got)
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the upgrade", applianceUnit)
	}

	// Once the session is gone, the next preflight drops the copy.
	cancel()
	rehearsals := "SELECT datname::text FROM pg_database WHERE datname LIKE 'openwatch\\_rehearsal\\_%' AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
	for deadline := time.Now().Add(30 * time.Second); len(e.queryStrings("SELECT pid::text FROM pg_stat_activity WHERE datname = '"+name+"'")) > 0; {
		if time.Now().After(deadline) {
			e.t.Fatalf("the session on %s did not end", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res = e.mustOperator("openwatch", "migrate", "--preflight")
	if !strings.Contains(res.out, "preflight: dropped "+name) {
		e.t.Errorf("the next preflight did not drop %s:\n%s", name, res.out)
	}
	if got := e.queryStrings(rehearsals); len(got) != 0 {
		e.t.Errorf("rehearsal copies left: %v", got)
	}
}
