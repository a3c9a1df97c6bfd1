package e2e

import (
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

// A case is one thing an operator does with the package manager.
type upgradeCase struct {
	name    string
	run     func(e *env)
	busybox bool // run again with busybox sh as /bin/sh
}

var upgradeCases = []upgradeCase{
	{"a fresh install runs no migration, makes no restore point, enables the timer and says how to initialise the database", freshInstall, false},
	{"an upgrade with a pending migration stops the service, takes one restore point, migrates and starts the service", pendingMigration, true},
	{"an upgrade with a keyword-value DSN in secrets.env migrates the same way", func(e *env) { e.kv = true; pendingMigration(e) }, false},
	{"an upgrade whose migration fails keeps schema, data and restore point, leaves the service stopped, and recovers the documented way", failingMigrationCase, true},
	{"an upgrade takes its restore point in the BACKUP_DIR set in upgrade.conf", backupDirFromConfig, false},
	{"with CREATEDB an upgrade takes a clone restore point and the export leaves the file and no clone", cloneRestorePoint, false},
	{"with CREATEDB a failed upgrade keeps its clone and lists it, and the recovery keeps it too and exports every clone", failingMigrationWithClone, false},
	{"with CREATEDB the preflight's rehearsal fails a migration that fails on the data before the service is stopped, and the recovery upgrades", failingMigrationRehearsed, false},
	{"an upgrade with the database unreachable installs, warns, stops nothing, and the start guard refuses the old schema until migrate runs", unreachableDatabase, false},
	{"an upgrade while the service is stopped leaves it stopped", stoppedServiceStaysStopped, false},
	{"a reinstall and an upgrade with nothing pending make no restore point and do not stop the service", nothingPending, false},
	{"a downgrade applies nothing to the newer schema, leaves the service stopped and explains the restore", downgrade, false},
	{"an edited upgrade.conf survives an upgrade, and removal and purge stop and disable the units but keep the restore points", removalAndPurge, false},
}

func TestPackageManagers(t *testing.T) {
	for _, shell := range []string{"dash", "busybox"} {
		t.Run("sh is "+shell, func(t *testing.T) {
			for _, f := range formats {
				t.Run(f.Name, func(t *testing.T) {
					for _, c := range upgradeCases {
						if shell == "busybox" && !c.busybox {
							continue
						}
						t.Run(c.name, func(t *testing.T) {
							t.Parallel()
							c.run(newEnv(t, f, shell))
						})
					}
				})
			}
		})
	}
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// freshInstall (case 1): with secrets.env already pointing at a reachable,
// empty database, the install exits 0, creates no table, runs no pg_dump,
// stops nothing, leaves no marker, enables the cleanup timer, installs the
// documented paths and modes, and tells the operator to run
// `openwatch migrate`.
func freshInstall(e *env) {
	v := e.vs["new"]
	// Configuration management wrote the secret before the package arrived:
	// the database is reachable, and still nothing may touch it.
	e.r.writeFile(secretsPath, "OPENWATCH_DATABASE_DSN='"+e.db.URL()+"'\n", 0o640)
	res := e.pm(e.f.install(e.f.pkg(v))...)
	if res.code != 0 {
		e.t.Fatalf("fresh install: exit %d", res.code)
	}
	if !strings.Contains(res.out, "openwatch migrate") {
		e.t.Errorf("the install does not tell the operator to initialise the database with `openwatch migrate`")
	}
	if got := e.schemaVersions(); got != nil {
		e.t.Errorf("a fresh install applied migrations: %v", got)
	}
	if got := e.queryStrings("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'"); len(got) != 0 {
		e.t.Errorf("a fresh install created tables: %v", got)
	}
	e.assertNoRestorePoint()
	ev := lines(e.r.events())
	if eventIndex(ev, 0, hasPrefix("pg_dump")) >= 0 {
		e.t.Errorf("a fresh install ran pg_dump")
	}
	if eventIndex(ev, 0, isCall(applianceUnit, "stop")) >= 0 {
		e.t.Errorf("a fresh install stopped %s", applianceUnit)
	}
	if !e.r.enabled(cleanupTimer) {
		e.t.Errorf("%s is not enabled after a fresh install", cleanupTimer)
	}
	if e.r.exists(journalPath) {
		e.t.Errorf("an upgrade journal exists after a fresh install")
	}
	for p, want := range map[string]uint32{binaryPath: 0o755, helperPath: 0o755, backupDir: 0o700, upgradeConfPath: 0o640} {
		if got := e.r.mode(p); uint32(got) != want {
			e.t.Errorf("%s: mode %o, want %o", p, got, want)
		}
	}
	if len(e.r.glob(dropInDir+"/*.conf")) == 0 {
		e.t.Errorf("no start guard drop-in in %s", dropInDir)
	}
	if out := e.mustOperator("openwatch", "--version").out; !strings.Contains(out, v.FullVersion()) {
		e.t.Errorf("openwatch --version = %q, want %s", out, v.FullVersion())
	}
}

// pendingMigration (case 2): old → new moves schema_migrations to the new
// head with the seeded rows intact; exactly one restore point, named for the
// new package and the old schema, mode 0600; the appliance was stopped while
// the migration was pending, pg_dump ran after the stop, and it was started
// with the schema at head; no marker is left; the restore point restores the
// old schema and rows with `openwatch restore --yes`.
func pendingMigration(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	before, oldVersions := e.data(), e.schemaVersions()
	secrets := e.r.readFile(secretsPath)

	res := e.pm(e.f.upgrade(e.f.pkg(nw))...)
	if res.code != 0 {
		e.t.Fatalf("upgrade %s → %s: exit %d", old.FullVersion(), nw.FullVersion(), res.code)
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations) {
		e.t.Errorf("schema_migrations = %v, want %v", got, repoMigrations)
	}
	if got := e.data(); got != before {
		e.t.Errorf("data changed by the upgrade:\nbefore %s\nafter  %s", before, got)
	}
	rp := e.oneRestorePoint(nw, old.Head)
	if m := e.r.mode(backupDir); m != 0o700 {
		e.t.Errorf("%s mode %o after the upgrade, want 700", backupDir, m)
	}
	if got := e.r.readFile(secretsPath); got != secrets || e.r.mode(secretsPath) != 0o640 {
		e.t.Errorf("the upgrade changed the operator's %s (mode now %o)", secretsPath, e.r.mode(secretsPath))
	}
	e.assertStopMigrateStart()
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the upgrade", applianceUnit)
	}
	if got := e.journal("OUTCOME"); got != "succeeded" {
		e.t.Errorf("journal OUTCOME = %q after a successful upgrade, want succeeded", got)
	}
	if got := e.installedVersion(); !strings.HasPrefix(got, nw.FullVersion()) {
		e.t.Errorf("installed version %q, want %s", got, nw.FullVersion())
	}

	// The restore point restores, and holds the pre-upgrade schema and data.
	e.mustOperator("openwatch", "restore", "--yes", rp)
	if got := e.schemaVersions(); !slices.Equal(got, oldVersions) {
		e.t.Errorf("after restoring %s, schema_migrations = %v, want %v", path.Base(rp), got, oldVersions)
	}
	if got := e.data(); got != before {
		e.t.Errorf("after restoring, data differs:\nbefore %s\nafter  %s", before, got)
	}
}

// assertStopMigrateStart checks the recorded order: the appliance stopped
// while the migration was pending, the restore point taken, then started
// with the schema at head.
func (e *env) assertStopMigrateStart() {
	e.t.Helper()
	ev := lines(e.r.events())
	stop := eventIndex(ev, 0, isCall(applianceUnit, "stop"))
	if stop < 0 {
		e.t.Errorf("%s was never stopped", applianceUnit)
		return
	}
	if eventIndex(ev, 0, hasPrefix("e2e-note stop "+applianceUnit+" migrate-check=10")) < 0 {
		e.t.Errorf("%s was not stopped while the migration was pending", applianceUnit)
	}
	dump := eventIndex(ev, stop, hasPrefix("pg_dump "))
	if dump < 0 {
		e.t.Errorf("no pg_dump after stopping %s", applianceUnit)
		return
	}
	start := startIndex(ev, dump, applianceUnit)
	if start < 0 {
		e.t.Errorf("%s was not started after the migration", applianceUnit)
		return
	}
	if !strings.HasSuffix(ev[start+1], "migrate-check=0") {
		e.t.Errorf("%s started while the schema was not at head: %s", applianceUnit, ev[start+1])
	}
}

// failingMigrationCase (case 3): new → failing is reported by the package
// manager (dpkg: non-zero, half-configured; rpm: the %post warning); schema,
// shape and rows are unchanged; one restore point; the output names it, the
// restore command and the format's retry command; the appliance stays stopped
// through the old package's scripts, with the marker (0600) left. After the
// cause is dropped, the retry reaches the new head and starts the service.
func failingMigrationCase(e *env) {
	nw, failing := e.vs["new"], e.vs["failing"]
	e.installAndInitialise(nw)
	// The cause the operator will fix: the new migration refuses to run
	// while this table exists.
	e.exec("CREATE TABLE e2e_block_migration (why text)")
	shape, data, versions := e.schemaShape(), e.data(), e.schemaVersions()

	res := e.pm(e.f.upgrade(e.f.pkg(failing))...)
	if !e.f.reportsFailure(res) {
		e.t.Errorf("%s (exit %d) does not report the failed post-install script", res.cmd, res.code)
	}
	if e.f.Name == "deb" {
		if got := e.installedVersion(); got != failing.FullVersion()+" iF" {
			e.t.Errorf("dpkg status %q, want %q (half-configured)", got, failing.FullVersion()+" iF")
		}
	}
	if got := e.schemaVersions(); !slices.Equal(got, versions) {
		e.t.Errorf("schema_migrations = %v, want unchanged %v", got, versions)
	}
	if got := e.schemaShape(); got != shape {
		e.t.Errorf("the schema changed although the migration failed:\nbefore:\n%s\nafter:\n%s", shape, got)
	}
	if got := e.data(); got != data {
		e.t.Errorf("data changed:\nbefore %s\nafter  %s", data, got)
	}
	rp := e.oneRestorePoint(failing, nw.Head)
	for _, want := range []string{path.Base(rp), "openwatch restore", strings.Join(e.f.recover, " ")} {
		if !strings.Contains(res.out, want) {
			e.t.Errorf("the failure output does not name %q", want)
		}
	}
	ev := lines(e.r.events())
	stop := eventIndex(ev, 0, isCall(applianceUnit, "stop"))
	if stop < 0 {
		e.t.Errorf("%s was not stopped before the migration", applianceUnit)
	} else if i := startIndex(ev, stop, applianceUnit); i >= 0 {
		e.t.Errorf("%s was started after the failed migration: %s", applianceUnit, ev[i])
	}
	if e.r.active(applianceUnit) {
		e.t.Errorf("%s is running after the failed upgrade (and the old package's scripts)", applianceUnit)
	}
	if got := e.journal("OUTCOME") + " " + e.journal("SERVICE_BEFORE"); got != "migration-failed running" {
		e.t.Errorf("journal says %q after the failure, want migration-failed running: a recovery would not know to restart the service", got)
	} else if m := e.r.mode(journalPath); m != 0o640 {
		e.t.Errorf("journal mode %o, want 640 (root writes, the service's group reads)", m)
	}
	if st := e.mustOperator("openwatch", "migrate", "--status").out; !strings.Contains(st, "to recover, run: "+strings.Join(e.f.recover, " ")) {
		e.t.Errorf("openwatch migrate --status does not name the recovery command:\n%s", st)
	}

	// Fix the cause, recover the documented way, at once: the retry's
	// restore point must not collide with the one the failed attempt took
	// within the same second.
	e.exec("DROP TABLE e2e_block_migration")
	e.r.resetEvents()
	res = e.pm(e.f.recover...)
	if res.code != 0 {
		e.t.Fatalf("recovery %s: exit %d", res.cmd, res.code)
	}
	if got, want := e.schemaVersions(), append(slices.Clone(repoMigrations), failing.Head); !slices.Equal(got, want) {
		e.t.Errorf("after recovery schema_migrations = %v, want %v", got, want)
	}
	if got := e.data(); got != data {
		e.t.Errorf("data changed by the recovery:\nbefore %s\nafter  %s", data, got)
	}
	if got := e.journal("OUTCOME"); got != "succeeded" {
		e.t.Errorf("journal OUTCOME = %q after the recovery, want succeeded", got)
	}
	e.wantRecovered(failing)
}

// wantRecovered: after the documented recovery the service runs again and,
// for dpkg, the package v is fully configured.
func (e *env) wantRecovered(v *variant) {
	e.t.Helper()
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the recovery", applianceUnit)
	}
	if e.f.Name == "deb" {
		if got := e.installedVersion(); got != v.FullVersion()+" ii" {
			e.t.Errorf("dpkg status after recovery %q, want %q", got, v.FullVersion()+" ii")
		}
	}
}

// unreachableDatabase (case 4): with secrets.env pointing at a closed port,
// old → new exits 0, names the helper as the one follow-up, stops nothing,
// takes no restore point and changes no schema. With the database back, the
// drop-in's ExecStartPre refuses the old schema; the named command stops the
// service, takes a restore point, migrates and starts the service again, and
// then the guard passes.
func unreachableDatabase(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	versions := e.schemaVersions()
	e.writeSecrets(e.closedDSN())
	e.r.writeFile(upgradeConfPath, "DATABASE_WAIT_TIMEOUT=1\n", 0o640)
	e.r.resetEvents()

	res := e.pm(e.f.upgrade(e.f.pkg(nw))...)
	if res.code != 0 {
		e.t.Errorf("upgrade with the database down: exit %d, want 0 (the package itself installed)", res.code)
	}
	if want := "When the database is back, run: " + helperPath; !strings.Contains(res.out, want) {
		e.t.Errorf("the warning does not say %q:\n%s", want, res.out)
	}
	ev := lines(e.r.events())
	if i := eventIndex(ev, 0, isCall(applianceUnit, "stop")); i >= 0 {
		e.t.Errorf("%s was stopped although nothing could be migrated: %s", applianceUnit, ev[i])
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the upgrade", applianceUnit)
	}
	e.assertNoRestorePoint()
	if got := e.schemaVersions(); !slices.Equal(got, versions) {
		e.t.Errorf("schema_migrations = %v, want %v", got, versions)
	}
	if got := e.journal("OUTCOME"); got != "unreachable" {
		e.t.Errorf("journal OUTCOME = %q, want unreachable", got)
	}

	// The database is back; the service must not start on the old schema.
	e.writeSecrets(e.dsn())
	guard := e.startGuard()
	if res := e.operator(guard...); res.code == 0 || !strings.Contains(res.out, helperPath) {
		e.t.Errorf("the start guard %q allows starting against the old schema, or does not name %s: %s", strings.Join(guard, " "), helperPath, res.out)
	}
	e.r.resetEvents()
	e.mustOperator(helperPath)
	e.assertStopMigrateStart()
	e.oneRestorePoint(nw, old.Head)
	if res := e.operator(guard...); res.code != 0 {
		e.t.Errorf("the start guard %q refuses after %s: exit %d", strings.Join(guard, " "), helperPath, res.code)
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations) {
		e.t.Errorf("after %s schema_migrations = %v, want %v", helperPath, got, repoMigrations)
	}
}

// startGuard reads the guard's command from the installed drop-in.
func (e *env) startGuard() []string {
	e.t.Helper()
	var found []string
	for _, f := range e.r.glob(dropInDir + "/*.conf") {
		for _, line := range lines(e.r.readFile(f)) {
			v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStartPre=")
			if !ok || !strings.Contains(v, "openwatch") {
				continue
			}
			prefix := v[:len(v)-len(strings.TrimLeft(v, "-@:+!|"))]
			if strings.Contains(prefix, "-") {
				e.t.Errorf("%s: the guard's failure is ignored (prefix %q): %s", f, prefix, line)
			}
			found = splitExec(strings.TrimLeft(v, "-@:+!|"))
		}
	}
	if found == nil {
		e.t.Fatalf("no ExecStartPre running openwatch in %s/*.conf", dropInDir)
	}
	return found
}

// splitExec splits a systemd command line into words (quotes, no variables).
func splitExec(s string) []string {
	var out []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// stoppedServiceStaysStopped (case 5): the appliance stopped before old →
// new is never started; the upgrade still migrates and takes its restore
// point, and leaves no marker.
func stoppedServiceStaysStopped(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	e.r.run(30*time.Second, "systemctl", "stop", applianceUnit)
	e.r.resetEvents()

	res := e.pm(e.f.upgrade(e.f.pkg(nw))...)
	if res.code != 0 {
		e.t.Fatalf("upgrade: exit %d", res.code)
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations) {
		e.t.Errorf("schema_migrations = %v, want %v", got, repoMigrations)
	}
	e.oneRestorePoint(nw, old.Head)
	ev := lines(e.r.events())
	if i := startIndex(ev, 0, applianceUnit); i >= 0 {
		e.t.Errorf("the stopped %s was started: %s", applianceUnit, ev[i])
	}
	if e.r.active(applianceUnit) {
		e.t.Errorf("%s is running after the upgrade; it was stopped before", applianceUnit)
	}
	if got := e.journal("SERVICE_BEFORE"); got != "stopped" {
		e.t.Errorf("journal SERVICE_BEFORE = %q, want stopped", got)
	}

	// A retry of the same upgrade (as after any failure) leaves it stopped too.
	e.r.resetEvents()
	if res := e.operator(helperPath); res.code != 0 {
		e.t.Fatalf("rerun of the helper: exit %d", res.code)
	}
	if e.r.active(applianceUnit) {
		e.t.Errorf("a rerun of the helper started the stopped %s", applianceUnit)
	}
}

// nothingPending (case 6): a reinstall of the new package and an upgrade to
// a release with the same migrations take no restore point, run no pg_dump,
// never stop the appliance, leave it running, and change neither schema nor
// rows.
func nothingPending(e *env) {
	nw, patch := e.vs["new"], e.vs["patch"]
	e.installAndInitialise(nw)
	versions, data := e.schemaVersions(), e.data()
	for _, step := range []struct {
		what string
		argv []string
		v    *variant
	}{
		{"reinstall of " + nw.FullVersion(), e.f.reinstall(e.f.pkg(nw)), nw},
		{"upgrade to " + patch.FullVersion() + " with the same migrations", e.f.upgrade(e.f.pkg(patch)), patch},
	} {
		e.r.resetEvents()
		res := e.pm(step.argv...)
		if res.code != 0 {
			e.t.Fatalf("%s: exit %d", step.what, res.code)
		}
		e.assertNoRestorePoint()
		ev := lines(e.r.events())
		if i := eventIndex(ev, 0, isCall(applianceUnit, "stop")); i >= 0 {
			e.t.Errorf("%s stopped %s: %s", step.what, applianceUnit, ev[i])
		}
		if eventIndex(ev, 0, hasPrefix("pg_dump")) >= 0 {
			e.t.Errorf("%s ran pg_dump", step.what)
		}
		if !e.r.active(applianceUnit) {
			e.t.Errorf("%s left %s stopped", step.what, applianceUnit)
		}
		if got := e.schemaVersions(); !slices.Equal(got, versions) {
			e.t.Errorf("%s: schema_migrations = %v, want %v", step.what, got, versions)
		}
		if got := e.data(); got != data {
			e.t.Errorf("%s changed data", step.what)
		}
		if got := e.installedVersion(); !strings.HasPrefix(got, step.v.FullVersion()) {
			e.t.Errorf("%s: installed version %q", step.what, got)
		}
	}
}

// downgrade (case 7): after old → new, new → old is reported as a failure,
// applies nothing (schema, shape, rows unchanged), leaves the appliance
// stopped and the one restore point in place, and its message leads to that
// restore point (and for dpkg names `dpkg --configure -a`). Following it —
// restore, then the format's retry — gives the old schema and rows back and
// a running service.
func downgrade(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	if res := e.pm(e.f.upgrade(e.f.pkg(nw))...); res.code != 0 {
		e.t.Fatalf("upgrade before the downgrade: exit %d", res.code)
	}
	rp := e.oneRestorePoint(nw, old.Head)
	shape, data, versions := e.schemaShape(), e.data(), e.schemaVersions()
	e.r.resetEvents()

	res := e.pm(e.f.downgrade(e.f.pkg(old))...)
	if !e.f.reportsFailure(res) {
		e.t.Errorf("%s (exit %d) does not report the failed post-install script: the operator is not told the service was left stopped", res.cmd, res.code)
	}
	if got := e.schemaVersions(); !slices.Equal(got, versions) {
		e.t.Errorf("schema_migrations = %v, want unchanged %v", got, versions)
	}
	if got := e.schemaShape(); got != shape {
		e.t.Errorf("the downgrade changed the schema:\nbefore:\n%s\nafter:\n%s", shape, got)
	}
	if got := e.data(); got != data {
		e.t.Errorf("the downgrade changed data")
	}
	if e.r.active(applianceUnit) {
		e.t.Errorf("%s is running on a schema its binary does not know", applianceUnit)
	}
	if got := e.backupFiles(); len(got) != 1 || got[0] != rp {
		e.t.Errorf("backup directory after the downgrade: %v, want only %s", got, rp)
	}
	if !strings.Contains(res.out, "openwatch restore") {
		e.t.Errorf("the downgrade's message does not say how to restore (openwatch restore)")
	}
	// The matching restore point is the one holding this version's schema:
	// the message must lead to it, by name or by its schema version.
	if !strings.Contains(res.out, path.Base(rp)) && !strings.Contains(res.out, "schema-"+old.Head) {
		e.t.Errorf("the downgrade's message does not identify the matching restore point %s", path.Base(rp))
	}
	if got := e.installedVersion(); !strings.HasPrefix(got, old.FullVersion()) {
		e.t.Errorf("installed version %q, want %s", got, old.FullVersion())
	}

	// Follow the message: restore the matching restore point, then finish
	// the way the package manager needs. dpkg left the package
	// half-configured (apt refuses to go on until `dpkg --configure -a`);
	// rpm considers it installed, and the helper rerun starts the service.
	if e.f.Name == "deb" && !strings.Contains(res.out, strings.Join(e.f.recover, " ")) {
		e.t.Errorf("the downgrade leaves dpkg half-configured, but its message does not name %q", strings.Join(e.f.recover, " "))
	}
	e.mustOperator("openwatch", "restore", "--yes", rp)
	res = e.pm(e.f.recover...)
	if res.code != 0 {
		e.t.Fatalf("%s after restoring: exit %d", res.cmd, res.code)
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations[:len(repoMigrations)-1]) {
		e.t.Errorf("after restoring and %s, schema_migrations = %v, want %v", res.cmd, got, repoMigrations[:len(repoMigrations)-1])
	}
	if got := e.data(); got != data {
		e.t.Errorf("after restoring, data differs:\nbefore %s\nafter  %s", data, got)
	}
	e.wantRecovered(old)
}

// removalAndPurge (case 8): an operator's edit to upgrade.conf survives
// old → new, and the file is a conffile / %config(noreplace). Removal stops
// the cleanup timer (and disables it for rpm; dpkg keeps enablement until
// purge, as dh_installsystemd does), removes the binary and keeps the restore
// point; purge keeps it too and disables the timer.
func removalAndPurge(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	conf := e.r.readFile(upgradeConfPath)
	if conf == "" {
		e.t.Fatalf("%s is missing or empty", upgradeConfPath)
	}
	edited := conf + "\n# e2e: the operator keeps restore points for a week\nBACKUP_RETENTION_DAYS=7\n"
	e.r.writeFile(upgradeConfPath, edited, 0o640)

	if res := e.pm(e.f.upgrade(e.f.pkg(nw))...); res.code != 0 {
		e.t.Fatalf("upgrade: exit %d", res.code)
	}
	if got := e.r.readFile(upgradeConfPath); got != edited {
		e.t.Errorf("the operator's %s did not survive the upgrade:\n%s", upgradeConfPath, got)
	}
	if e.f.Name == "deb" {
		if out := e.r.run(30*time.Second, "dpkg-query", "-W", "-f", "${Conffiles}", "openwatch").out; !strings.Contains(out, upgradeConfPath) {
			e.t.Errorf("%s is not a conffile: %q", upgradeConfPath, out)
		}
	} else {
		out := e.r.run(30*time.Second, "rpm", "-q", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", "openwatch").out
		if !slices.Contains(lines(out), "cn "+upgradeConfPath) {
			e.t.Errorf("%s is not %%config(noreplace):\n%s", upgradeConfPath, out)
		}
	}
	rp := e.oneRestorePoint(nw, old.Head)
	if !e.r.active(cleanupTimer) && !e.r.enabled(cleanupTimer) {
		e.t.Fatalf("%s neither active nor enabled before removal", cleanupTimer)
	}
	e.r.resetEvents()

	res := e.pm(e.f.remove...)
	if res.code != 0 {
		e.t.Fatalf("removal: exit %d", res.code)
	}
	if e.r.exists(binaryPath) {
		e.t.Errorf("%s is still there after removal", binaryPath)
	}
	ev := lines(e.r.events())
	if eventIndex(ev, 0, func(l string) bool {
		return isCall(cleanupTimer, "stop")(l) || (isCall(cleanupTimer, "disable")(l) && strings.Contains(l, "--now"))
	}) < 0 {
		e.t.Errorf("%s was not stopped on removal", cleanupTimer)
	}
	if e.r.active(cleanupTimer) {
		e.t.Errorf("%s is still active after removal", cleanupTimer)
	}
	// dh_installsystemd's convention (debhelper 13.11.4), which the DEB
	// scripts follow: `remove` keeps the enablement for a reinstall (and no
	// longer masks), `purge` removes it.
	if e.f.purge == nil && e.r.enabled(cleanupTimer) {
		e.t.Errorf("%s is still enabled after removal", cleanupTimer)
	}
	if got := e.backupFiles(); len(got) != 1 || got[0] != rp {
		e.t.Errorf("restore points after removal: %v, want %s", got, rp)
	}
	if e.f.purge != nil {
		if res := e.pm(e.f.purge...); res.code != 0 {
			e.t.Fatalf("purge: exit %d", res.code)
		}
		if got := e.backupFiles(); len(got) != 1 || got[0] != rp {
			e.t.Errorf("restore points after purge: %v, want %s", got, rp)
		}
		if e.r.enabled(cleanupTimer) {
			e.t.Errorf("%s is still enabled after purge", cleanupTimer)
		}
	}
}

// backupDirFromConfig: the helper runs plain `openwatch migrate`, so the
// backup policy in upgrade.conf is the one place that decides. A BACKUP_DIR
// the operator set there gets the restore point; the default one stays empty.
func backupDirFromConfig(e *env) {
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	const dir = "/srv/openwatch-restore-points"
	if res := e.r.run(30*time.Second, "install", "-d", "-m", "0700", dir); res.code != 0 {
		e.t.Fatalf("mkdir %s: %s", dir, res.out)
	}
	conf := e.r.readFile(upgradeConfPath)
	e.r.writeFile(upgradeConfPath, conf+"\n# e2e: restore points on their own disk\nBACKUP_DIR="+dir+"\n", 0o640)
	e.r.resetEvents()

	res := e.pm(e.f.upgrade(e.f.pkg(nw))...)
	if res.code != 0 {
		e.t.Fatalf("upgrade: exit %d", res.code)
	}
	if got := e.schemaVersions(); !slices.Equal(got, repoMigrations) {
		e.t.Errorf("schema_migrations = %v, want %v", got, repoMigrations)
	}
	e.assertNoRestorePoint()
	got := e.r.glob(dir + "/*")
	if len(got) != 1 || !restorePointName.MatchString(path.Base(got[0])) {
		e.t.Errorf("%s holds %v, want one restore point", dir, got)
	} else if !strings.Contains(res.out, got[0]) {
		e.t.Errorf("the upgrade output does not name the restore point %s", got[0])
	}
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s is not running after the upgrade", applianceUnit)
	}
}
