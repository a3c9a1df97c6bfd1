package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/dump"
)

// The cases where unit state matters, with systemd as PID 1 (nspawn_test.go),
// Debian's real PostgreSQL unit, apt, and a stand-in appliance that writes a
// row every ~50 ms. Each case boots its own machine, so a case's unit and
// database state never leak into another and they run in parallel.
var systemdCases = []struct {
	name string
	run  func(s *sysCase)
}{
	{"an upgrade with a pending migration while the service writes keeps every row written before the stop in the restore point and brings the service back on the new schema", sysRestorePointHoldsEveryRow},
	{"the start guard refuses to start the service while migrations are pending, and the service starts after openwatch migrate", sysStartGuard},
	{"a failing migration leaves the service stopped and the schema unchanged, and dpkg --configure -a after the fix starts it", sysFailingMigration},
	{"a service the operator disabled after a failed upgrade stays stopped through the retry", sysOperatorStopAfterFailure},
	{"a stopped service stays stopped through an upgrade, a failed upgrade and its retries", sysStoppedStaysStopped},
	{"an upgrade with PostgreSQL stopped installs, leaves the service running, and the one command it names stops, backs up, migrates and starts it", sysUnreachableFollowUp},
	{"a failed upgrade shows in systemctl --failed, the login message and the journal at priority err; a retry while the service stayed stopped takes no second restore point and names the same failure; the successful retry clears it all", sysFailureVisibleAndRetryCheap},
	{"after an upgrade with PostgreSQL down, a restart the start guard refuses leaves the unit failed, and the follow-up migrates and starts it again", sysGuardRefusalIsNotAStop},
	{"after an upgrade with PostgreSQL down, a service the operator stopped stays stopped through the follow-up", sysOperatorStopIsKept},
	{"with CREATEDB an upgrade takes a clone, a transient unit exports it to a file holding every row written before the stop, and the sandboxed cleanup unit reads BACKUP_RETENTION_DAYS=010 as ten days", sysCloneExportAndCleanup},
}

func TestSystemd(t *testing.T) {
	// The files only this mode writes inside its machines must not reach the
	// host (TestMain checks the ones every root shares).
	before := fileStates(writerEnvPath, writerScriptPath)
	t.Cleanup(func() {
		if after := fileStates(writerEnvPath, writerScriptPath); after != before {
			t.Errorf("THE HOST CHANGED: a write escaped a machine:\nbefore %s\nafter  %s", before, after)
		}
	})
	for _, c := range systemdCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(newSysCase(t))
		})
	}
}

func fileStates(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s:absent ", p)
			continue
		}
		fmt.Fprintf(&b, "%s:%v:%d:%v ", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// Inside every machine.
const (
	writerEnvPath    = "/etc/e2e-writer.env" // the stand-in's PG* variables, root 0600
	writerScriptPath = "/usr/local/bin/openwatch-e2e-writer"
	appDB            = "openwatch" // database and role
	blockTable       = "e2e_block_migration"
)

// writerScript is the stand-in appliance: one row into hosts about every
// 50 ms, each through its own psql connection, the password from the
// environment (EnvironmentFile=), never argv. It logs every id it wrote, and
// keeps going while the database is away, as a real service would retry.
const writerScript = `#!/bin/sh
while :; do
	if id=$(psql -qAtX -v ON_ERROR_STOP=1 -c "INSERT INTO hosts (hostname, address) VALUES ('writer-' || txid_current(), '192.0.2.1') RETURNING id" 2>&1); then
		echo "e2e-writer: wrote id $id"
		sleep 0.05
	else
		echo "e2e-writer: insert failed: $id"
		sleep 0.5
	fi
done
`

const writerUnit = `[Unit]
Description=openwatch appliance (e2e stand-in: writes a row every 50 ms)
After=postgresql.service

[Service]
User=openwatch
EnvironmentFile=` + writerEnvPath + `
ExecStart=` + writerScriptPath + `

[Install]
WantedBy=multi-user.target
`

// sysCase is one case: a booted machine, its PostgreSQL cluster with the
// appliance's role and database, the packages.
type sysCase struct {
	t        *testing.T
	m        *machine
	vs       map[string]*variant
	pgUnit   string // postgresql@15-main.service
	port     string
	password string
	runs     []result
	took     []time.Duration // how long each of runs took
}

func newSysCase(t *testing.T) *sysCase {
	vs := variants(t)
	s := &sysCase{t: t, vs: vs, m: bootMachine(t)}
	// Registered after the machine, so it runs while the machine still exists.
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("E2E_VERBOSE") == "" {
			return
		}
		for i, res := range s.runs {
			t.Logf("$ %s   (exit %d, %v)\n%s", res.cmd, res.code, s.took[i].Round(time.Millisecond), res.out)
		}
		t.Logf("journal of %s:\n%s", applianceUnit, s.m.run(time.Minute, "sh", "-c", "journalctl --no-pager -o short-precise -u "+applianceUnit+" | grep -v 'e2e-writer: wrote id' | tail -n 80").out)
		t.Logf("restore points: %v", s.m.glob(backupDir+"/*"))
	})
	s.preparePostgres()
	return s
}

// preparePostgres makes sure the machine's PostgreSQL cluster exists (the
// host's is copied when it has one) and runs as its Debian unit, and creates
// the appliance's role (password auth over TCP) and database.
func (s *sysCase) preparePostgres() {
	s.t.Helper()
	ver := filepath.Base(filepath.Dir(pgBinDir)) // /usr/lib/postgresql/15/bin
	s.pgUnit = "postgresql@" + ver + "-main.service"
	buf := make([]byte, 12)
	rand.Read(buf)
	s.password = "e2e-" + hex.EncodeToString(buf)
	script := `set -eu
ver=$1
if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" { f = 1 } END { exit !f }'; then
	pg_createcluster "$ver" main >/dev/null
fi
hba=/etc/postgresql/$ver/main/pg_hba.conf
{ echo "host ` + appDB + ` ` + appDB + ` 127.0.0.1/32 scram-sha-256"; cat "$hba"; } >"$hba.e2e"
cat "$hba.e2e" >"$hba" && rm "$hba.e2e"
systemctl restart "postgresql@$ver-main.service"
port=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" { print $3 }')
i=0
until pg_isready -q -h 127.0.0.1 -p "$port"; do
	i=$((i + 1)); [ "$i" -lt 300 ] || { echo "PostgreSQL did not come up" >&2; exit 1; }
	sleep 0.1
done
echo "$port"
`
	res := s.m.run(2*time.Minute, "sh", "-c", script, "sh", ver)
	if res.code != 0 {
		s.t.Fatalf("preparing PostgreSQL in the machine: exit %d\n%s", res.code, res.out)
	}
	s.port = lastLine(res.out)
	// The password goes through a file, never argv.
	s.m.writeFile("/root/e2e-role.sql", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n", appDB, s.password, appDB, appDB), 0o600)
	if res := s.m.run(time.Minute, "sh", "-c", `runuser -u postgres -- psql -qX -v ON_ERROR_STOP=1 -p "$1" -d postgres <"$2" && rm "$2"`, "sh", s.port, "/root/e2e-role.sql"); res.code != 0 {
		s.t.Fatalf("creating the role and database: %s", res.out)
	}
	s.m.writeFile(writerEnvPath, fmt.Sprintf("PGHOST=127.0.0.1\nPGPORT=%s\nPGUSER=%s\nPGPASSWORD=%s\nPGDATABASE=%s\nPGSSLMODE=disable\nPGCONNECT_TIMEOUT=2\n", s.port, appDB, s.password, appDB), 0o600)
	s.m.writeFile(writerScriptPath, writerScript, 0o755)
}

func lastLine(s string) string {
	l := lines(strings.TrimSpace(s))
	return strings.TrimSpace(l[len(l)-1])
}

// pm runs a package manager (or operator) command, watching every process's
// argv for the password.
func (s *sysCase) pm(argv ...string) result {
	s.t.Helper()
	start := time.Now()
	res := s.m.runWatched(pmTimeout, argv...)
	s.runs = append(s.runs, res)
	s.took = append(s.took, time.Since(start))
	if res.code < 0 {
		s.t.Fatalf("%s did not finish: %v\n%s", res.cmd, res.err, res.out)
	}
	for _, a := range append(res.argv, res.out) {
		if strings.Contains(a, s.password) {
			s.t.Errorf("the database password showed during %s (output or a process's argv)", res.cmd)
			break
		}
	}
	return res
}

func (s *sysCase) mustPM(argv ...string) result {
	s.t.Helper()
	res := s.pm(argv...)
	if res.code != 0 {
		s.t.Fatalf("%s: exit %d\n%s", res.cmd, res.code, res.out)
	}
	return res
}

func aptInstall(v *variant) []string { return []string{"apt-get", "install", "-y", "-q", v.DEB} }

var dpkgConfigureAll = []string{"dpkg", "--configure", "-a"}

// sql runs a query as the postgres superuser over the cluster's socket and
// returns its unaligned, tuples-only output.
func (s *sysCase) sql(db, query string) string {
	s.t.Helper()
	res := s.m.run(time.Minute, "runuser", "-u", "postgres", "--", "psql", "-qAtX", "-v", "ON_ERROR_STOP=1", "-p", s.port, "-d", db, "-c", query)
	if res.code != 0 {
		s.t.Fatalf("psql -d %s -c %q: exit %d\n%s", db, query, res.code, res.out)
	}
	return strings.TrimSpace(res.out)
}

func (s *sysCase) sqlInt(db, query string) int64 {
	s.t.Helper()
	out := s.sql(db, query)
	n, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		s.t.Fatalf("%s: %q is not a number", query, out)
	}
	return n
}

func (s *sysCase) schemaVersions(db string) []string {
	s.t.Helper()
	out := s.sql(db, "SELECT version FROM schema_migrations ORDER BY version")
	if out == "" {
		return nil
	}
	return lines(out)
}

func (s *sysCase) maxID() int64 {
	s.t.Helper()
	return s.sqlInt(appDB, "SELECT coalesce(max(id), 0) FROM hosts")
}

// waitForRows waits until the stand-in has written a row with an id above
// after (it writes about 20 a second), and returns the newest id.
func (s *sysCase) waitForRows(after int64, why string) int64 {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if id := s.maxID(); id > after+3 {
			return id
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: the service wrote no rows above id %d in a minute (%s is %s)", why, after, applianceUnit, s.m.unitState(applianceUnit))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// install is the state before an upgrade: v installed with apt, secrets.env
// written by the operator (0640 root:openwatch), the schema initialised with
// `openwatch migrate`, the stand-in unit installed and enabled, and — when
// running — started and writing.
func (s *sysCase) install(v *variant, running bool) {
	s.t.Helper()
	s.mustPM(aptInstall(v)...)
	dsn := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%s/%s?sslmode=disable", appDB, s.password, s.port, appDB)
	s.m.writeFile(secretsPath, "# written by the operator\nOPENWATCH_DATABASE_DSN='"+dsn+"'\n", 0o640)
	if res := s.m.run(30*time.Second, "chown", "root:openwatch", secretsPath); res.code != 0 {
		s.t.Fatalf("chown %s: %s", secretsPath, res.out)
	}
	s.mustPM("openwatch", "migrate")
	if got := s.schemaVersions(appDB); len(got) == 0 || got[len(got)-1] != v.Head {
		s.t.Fatalf("after openwatch migrate, schema_migrations = %v, want head %s", got, v.Head)
	}
	s.m.writeFile("/etc/systemd/system/"+applianceUnit, writerUnit, 0o644)
	s.mustPM("systemctl", "daemon-reload")
	s.mustPM("systemctl", "enable", applianceUnit)
	if running {
		s.mustPM("systemctl", "start", applianceUnit)
		s.waitForRows(0, "after systemctl start")
	}
}

// wantState fails unless the unit is in one of the states.
func (s *sysCase) wantState(unit, when string, states ...string) {
	s.t.Helper()
	if got := s.m.unitState(unit); !slices.Contains(states, got) {
		s.t.Errorf("%s: %s is %q, want %s", when, unit, got, strings.Join(states, " or "))
	}
}

// dpkgStatus is "<version> <status abbreviation>", e.g. "1.2.0-1 iF".
func (s *sysCase) dpkgStatus() string {
	return strings.TrimSpace(s.m.run(30*time.Second, "dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", "openwatch").out)
}

// unitEvents lists when the unit started and stopped since a time.
func (s *sysCase) unitEvents(since int64) (started, stopped []int64) {
	for _, e := range s.m.journal(applianceUnit, since) {
		switch e.MessageID {
		case msgUnitStarted:
			started = append(started, e.Time)
		case msgUnitStopped:
			stopped = append(stopped, e.Time)
		}
	}
	return started, stopped
}

// lastLoggedID is the last id the stand-in logged as written before t.
func (s *sysCase) lastLoggedID(before int64) int64 {
	var last int64
	for _, e := range s.m.journal(applianceUnit, 0) {
		if e.Time >= before {
			break
		}
		if v, ok := strings.CutPrefix(e.Message, "e2e-writer: wrote id "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				last = n
			}
		}
	}
	return last
}

// restorePoints lists the restore points in the default directory.
func (s *sysCase) restorePoints() []string {
	var out []string
	for _, f := range s.m.glob(backupDir + "/*") {
		if restorePointName.MatchString(path.Base(f)) {
			out = append(out, f)
		}
	}
	return out
}

// restoreIntoScratch restores a restore point into a new database as the
// postgres superuser (the file is root's, 0600: root's shell opens it), and
// returns the database's name.
func (s *sysCase) restoreIntoScratch(rp string) string {
	s.t.Helper()
	db := fmt.Sprintf("e2e_scratch_%d", time.Now().UnixNano())
	s.sql("postgres", "CREATE DATABASE "+db)
	res := s.m.run(2*time.Minute, "sh", "-c", `runuser -u postgres -- pg_restore --no-owner --exit-on-error -p "$1" -d "$2" <"$3"`, "sh", s.port, db, rp)
	if res.code != 0 {
		s.t.Fatalf("pg_restore %s into %s: exit %d\n%s", rp, db, res.code, res.out)
	}
	return db
}

// rowsWrittenBefore is the newest row id whose transaction began before t
// (µs): created_at is the transaction's start, on the machine's clock.
func (s *sysCase) rowsWrittenBefore(t int64) int64 {
	s.t.Helper()
	return s.sqlInt(appDB, fmt.Sprintf("SELECT coalesce(max(id), 0) FROM hosts WHERE created_at < 'epoch'::timestamptz + %d * interval '1 microsecond'", t))
}

// assertEveryRowBeforeStop checks the claim an operator relies on: the
// restore point holds every row the service wrote before the upgrade stopped
// it, and nothing written after it came back. stop is when systemd recorded
// the unit stopped (all its processes gone); restart is when systemd began
// starting it again. A row the service sent just before the stop may commit
// just after it (the server finishes a statement whose client died), so the
// rows "written before the stop" are those that began before the restart;
// the journal's last "wrote id" line before the stop is a lower bound.
func (s *sysCase) assertEveryRowBeforeStop(rp string, stop, restart int64, oldVersions []string) {
	s.t.Helper()
	scratch := s.restoreIntoScratch(rp)
	inRP := s.sqlInt(scratch, "SELECT coalesce(max(id), 0) FROM hosts")
	written := s.rowsWrittenBefore(restart)
	logged := s.lastLoggedID(stop)
	if logged == 0 {
		s.t.Errorf("the journal shows no row written before the stop")
	}
	if inRP != written {
		s.t.Errorf("restore point %s: newest row id %d, but the service wrote rows up to id %d before it was stopped", path.Base(rp), inRP, written)
	}
	if logged > inRP {
		s.t.Errorf("restore point %s: newest row id %d, but the journal shows the service wrote id %d before it was stopped", path.Base(rp), inRP, logged)
	}
	if n, want := s.sqlInt(scratch, "SELECT count(*) FROM hosts"), s.sqlInt(appDB, fmt.Sprintf("SELECT count(*) FROM hosts WHERE id <= %d", inRP)); n != want {
		s.t.Errorf("restore point %s holds %d rows, the database has %d up to id %d", path.Base(rp), n, want, inRP)
	}
	if got := s.schemaVersions(scratch); !slices.Equal(got, oldVersions) {
		s.t.Errorf("restore point %s: schema_migrations %v, want the schema before the upgrade %v", path.Base(rp), got, oldVersions)
	}
}

// stopAndRestart returns when the unit was stopped (the one stop since
// since) and when systemd began starting it again after that.
func (s *sysCase) stopAndRestart(since int64, during string) (stop, restart int64) {
	s.t.Helper()
	var stops []int64
	for _, e := range s.m.journal(applianceUnit, since) {
		switch {
		case e.MessageID == msgUnitStopped:
			stops = append(stops, e.Time)
		case e.MessageID == msgUnitStarting && len(stops) > 0 && restart == 0:
			restart = e.Time
		}
	}
	if len(stops) != 1 {
		s.t.Fatalf("the journal shows %d stops of %s during %s, want 1", len(stops), applianceUnit, during)
	}
	if restart == 0 {
		s.t.Fatalf("the journal shows no start of %s after its stop during %s", applianceUnit, during)
	}
	return stops[0], restart
}

// assertRunningOnNewSchema: the service is active, the schema is at the new
// head, and rows written after the restart land (the stand-in logs them).
func (s *sysCase) assertRunningOnNewSchema(since, after int64, want []string) {
	s.t.Helper()
	s.wantState(applianceUnit, "after the upgrade", "active")
	if got := s.schemaVersions(appDB); !slices.Equal(got, want) {
		s.t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	started, _ := s.unitEvents(since)
	if len(started) == 0 {
		s.t.Errorf("the journal shows no start of %s", applianceUnit)
	}
	s.waitForRows(after, "after the restart on the new schema")
}

// assertSecretsUntouched: secrets.env is still 0640 root:openwatch.
func (s *sysCase) assertSecretsUntouched() {
	s.t.Helper()
	fi, err := os.Stat(s.m.path(secretsPath))
	if err != nil {
		s.t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	group := s.m.run(30*time.Second, "stat", "-c", "%U:%G", secretsPath).out
	if fi.Mode().Perm() != 0o640 || st.Uid != 0 || strings.TrimSpace(group) != "root:openwatch" {
		s.t.Errorf("%s is %o %s, want 640 root:openwatch", secretsPath, fi.Mode().Perm(), strings.TrimSpace(group))
	}
}

// assertNoPasswordInJournal: nothing logged the password (the journal holds
// every unit's output, the guard's included).
func (s *sysCase) assertNoPasswordInJournal() {
	s.t.Helper()
	res := s.m.run(time.Minute, "journalctl", "--no-pager", "-o", "cat")
	if strings.Contains(res.out, s.password) {
		s.t.Errorf("the machine's journal holds the database password")
	}
}

// sysRestorePointHoldsEveryRow (case 1): old → new with apt while the
// stand-in writes: apt exits 0; the journal shows the unit stopped once and
// started after; the one restore point, restored into a scratch database,
// holds exactly the rows written before the stop and the old schema; the
// service writes again on the new schema; secrets.env is untouched.
func sysRestorePointHoldsEveryRow(s *sysCase) {
	old, nw := s.vs["old"], s.vs["new"]
	s.install(old, true)
	oldVersions := s.schemaVersions(appDB)
	since := now()
	s.mustPM(aptInstall(nw)...)
	stop, restart := s.stopAndRestart(since, "the upgrade")
	rps := s.restorePoints()
	if len(rps) != 1 {
		s.t.Fatalf("restore points after the upgrade: %v, want one", rps)
	}
	if m := restorePointName.FindStringSubmatch(path.Base(rps[0])); m[2] != old.Head {
		s.t.Errorf("restore point %s: schema %s, want %s", path.Base(rps[0]), m[2], old.Head)
	}
	s.assertEveryRowBeforeStop(rps[0], stop, restart, oldVersions)
	s.assertRunningOnNewSchema(stop, s.rowsWrittenBefore(restart), repoMigrations)
	if got := s.dpkgStatus(); got != nw.FullVersion()+" ii" {
		s.t.Errorf("dpkg status %q, want %q", got, nw.FullVersion()+" ii")
	}
	s.assertSecretsUntouched()
	s.assertNoPasswordInJournal()
}

// sysStartGuard (case 2): the service stopped and PostgreSQL down, old → new
// installs (apt exits 0) and migrates nothing. With PostgreSQL back,
// `systemctl start` fails, the unit is failed, the journal shows the guard's
// report of pending migrations, and the stand-in never ran. After
// `openwatch migrate` (the recovery the guard's drop-in names) it starts.
func sysStartGuard(s *sysCase) {
	old, nw := s.vs["old"], s.vs["new"]
	s.install(old, true)
	s.mustPM("systemctl", "stop", applianceUnit)
	versions, rows := s.schemaVersions(appDB), s.maxID()
	s.mustPM("systemctl", "stop", s.pgUnit)
	res := s.pm(aptInstall(nw)...)
	if res.code != 0 {
		s.t.Errorf("upgrade with PostgreSQL down: exit %d, want 0 (the package itself installed)", res.code)
	}
	s.wantState(applianceUnit, "after the upgrade with PostgreSQL down", "inactive")
	s.mustPM("systemctl", "start", s.pgUnit)
	if got := s.schemaVersions(appDB); !slices.Equal(got, versions) {
		s.t.Errorf("schema_migrations = %v after an upgrade that could not reach the database, want %v", got, versions)
	}

	since := now()
	if res := s.pm("systemctl", "start", applianceUnit); res.code == 0 {
		s.t.Errorf("systemctl start %s succeeded with migrations pending", applianceUnit)
	}
	s.wantState(applianceUnit, "after the refused start", "failed", "inactive")
	var guard bool
	for _, e := range s.m.journal(applianceUnit, since) {
		// The guard's own report, or systemd's record of its exit code.
		if strings.Contains(e.Message, "pending") || strings.Contains(e.Message, "status=10/") {
			guard = true
		}
	}
	if !guard {
		s.t.Errorf("the journal of %s does not show the start guard's report of pending migrations", applianceUnit)
	}
	if got := s.maxID(); got != rows {
		s.t.Errorf("the service wrote rows (ids up to %d, before %d) although its start was refused", got, rows)
	}

	s.mustPM("openwatch", "migrate")
	s.mustPM("systemctl", "start", applianceUnit)
	s.assertRunningOnNewSchema(since, rows, repoMigrations)
	s.assertNoPasswordInJournal()
}

// failingUpgrade runs new → failing with the cause in place and checks what
// every failing case shares: apt fails, dpkg leaves the package
// half-configured, the schema is unchanged, one restore point, the unit is
// not running. It returns the schema versions before.
func (s *sysCase) failingUpgrade() []string {
	s.t.Helper()
	failing := s.vs["failing"]
	// The application's role owns it, as it owns every table: pg_dump,
	// running as that role, must be able to read it.
	s.sql(appDB, "SET ROLE "+appDB+"; CREATE TABLE "+blockTable+" (why text)")
	versions := s.schemaVersions(appDB)
	res := s.pm(aptInstall(failing)...)
	if res.code == 0 {
		s.t.Errorf("apt-get install of the failing migration exited 0")
	}
	if got := s.dpkgStatus(); got != failing.FullVersion()+" iF" {
		s.t.Errorf("dpkg status %q, want %q (half-configured)", got, failing.FullVersion()+" iF")
	}
	if got := s.schemaVersions(appDB); !slices.Equal(got, versions) {
		s.t.Errorf("schema_migrations = %v, want unchanged %v", got, versions)
	}
	if rps := s.restorePoints(); len(rps) != 1 {
		s.t.Errorf("restore points after the failed upgrade: %v, want one", rps)
	}
	if !strings.Contains(res.out, strings.Join(dpkgConfigureAll, " ")) {
		s.t.Errorf("the failure output does not name the retry %q", strings.Join(dpkgConfigureAll, " "))
	}
	s.wantState(applianceUnit, "after the failed upgrade", "inactive", "failed")
	return versions
}

// sysFailingMigration (case 3): the service running, new → failing fails
// (see failingUpgrade) and no row is written while it is stopped; after the
// cause is dropped, `dpkg --configure -a` exits 0, the package is
// configured, the migration applied, and the service writes again.
func sysFailingMigration(s *sysCase) {
	nw, failing := s.vs["new"], s.vs["failing"]
	s.install(nw, true)
	since := now()
	s.failingUpgrade()
	_, stopped := s.unitEvents(since)
	if len(stopped) != 1 {
		s.t.Fatalf("the journal shows %d stops of %s during the failed upgrade, want 1", len(stopped), applianceUnit)
	}
	rows := s.maxID()
	if started, _ := s.unitEvents(stopped[0]); len(started) != 0 {
		s.t.Errorf("%s was started after the failed migration", applianceUnit)
	}

	s.sql(appDB, "DROP TABLE "+blockTable)
	s.mustPM(dpkgConfigureAll...)
	if got := s.dpkgStatus(); got != failing.FullVersion()+" ii" {
		s.t.Errorf("dpkg status after the retry %q, want %q", got, failing.FullVersion()+" ii")
	}
	s.assertRunningOnNewSchema(stopped[0], rows, append(slices.Clone(repoMigrations), failing.Head))
	s.assertNoPasswordInJournal()
}

// sysOperatorStopAfterFailure (case 4, first half): the service running,
// new → failing fails; the upgrade remembers the service ran. The operator
// tries `systemctl start` (the guard refuses: the migration is pending) and
// then keeps it down, as systemd can see: `systemctl disable --now` (a stop
// of a unit that is already stopped leaves no trace in systemd). After the
// fix, `dpkg --configure -a` migrates and exits 0, and must not start the
// service.
func sysOperatorStopAfterFailure(s *sysCase) {
	nw, failing := s.vs["new"], s.vs["failing"]
	s.install(nw, true)
	s.failingUpgrade()
	if res := s.pm("systemctl", "start", applianceUnit); res.code == 0 {
		s.t.Errorf("systemctl start %s succeeded with the failed migration pending", applianceUnit)
	}
	s.mustPM("systemctl", "disable", "--now", applianceUnit)
	since := now()

	s.sql(appDB, "DROP TABLE "+blockTable)
	s.mustPM(dpkgConfigureAll...)
	if got := s.schemaVersions(appDB); !slices.Equal(got, append(slices.Clone(repoMigrations), failing.Head)) {
		s.t.Errorf("schema_migrations after the retry = %v", got)
	}
	if got := s.dpkgStatus(); got != failing.FullVersion()+" ii" {
		s.t.Errorf("dpkg status after the retry %q, want %q", got, failing.FullVersion()+" ii")
	}
	s.wantState(applianceUnit, "after the retry; the operator had stopped it", "inactive", "failed")
	if started, _ := s.unitEvents(since); len(started) != 0 {
		s.t.Errorf("the retry started %s, which the operator had stopped", applianceUnit)
	}
}

// sysStoppedStaysStopped (case 4, second half): the operator stopped the
// service. old → new migrates, takes a restore point, and leaves it stopped;
// new → failing fails and leaves it stopped; a retry without the fix fails
// again, and the retry after it succeeds — none starts the service.
func sysStoppedStaysStopped(s *sysCase) {
	old, nw, failing := s.vs["old"], s.vs["new"], s.vs["failing"]
	s.install(old, true)
	s.mustPM("systemctl", "stop", applianceUnit)
	since := now()

	s.mustPM(aptInstall(nw)...)
	if got := s.schemaVersions(appDB); !slices.Equal(got, repoMigrations) {
		s.t.Errorf("schema_migrations after the upgrade = %v, want %v", got, repoMigrations)
	}
	if rps := s.restorePoints(); len(rps) != 1 {
		s.t.Errorf("restore points after the upgrade: %v, want one", rps)
	}
	s.wantState(applianceUnit, "after an upgrade of the stopped service", "inactive")

	for _, f := range s.m.glob(backupDir + "/*") {
		os.Remove(s.m.path(f))
	}
	s.failingUpgrade()
	if res := s.pm(dpkgConfigureAll...); res.code == 0 {
		s.t.Errorf("dpkg --configure -a succeeded with the migration still blocked")
	}
	s.wantState(applianceUnit, "after a failed retry", "inactive")
	s.sql(appDB, "DROP TABLE "+blockTable)
	s.mustPM(dpkgConfigureAll...)
	if got := s.schemaVersions(appDB); !slices.Equal(got, append(slices.Clone(repoMigrations), failing.Head)) {
		s.t.Errorf("schema_migrations after the retry = %v", got)
	}
	s.wantState(applianceUnit, "after the successful retry; it was stopped before the upgrades", "inactive")
	if started, _ := s.unitEvents(since); len(started) != 0 {
		s.t.Errorf("%s was started by an upgrade or a retry although the operator had stopped it", applianceUnit)
	}
}

// recoveryCommands returns every distinct command line in out that runs the
// upgrade helper: the text from the helper's path to the end of its line,
// without surrounding quotes or trailing punctuation.
func recoveryCommands(out string) []string {
	var cmds []string
	for _, line := range lines(out) {
		i := strings.Index(line, helperPath)
		if i < 0 {
			continue
		}
		cmd := strings.TrimRight(strings.TrimSpace(line[i:]), "`'\".,;:)")
		if !slices.Contains(cmds, cmd) {
			cmds = append(cmds, cmd)
		}
	}
	return cmds
}

// sysUnreachableFollowUp (case 5): the service running, PostgreSQL stopped:
// old → new exits 0, leaves the service running, takes no restore point, and
// names exactly one recovery command, the upgrade helper. With PostgreSQL
// back, that command (run as printed) exits 0, stops the service, takes a
// restore point holding every row written before the stop, migrates, and
// starts the service on the new schema.
func sysUnreachableFollowUp(s *sysCase) {
	old, nw := s.vs["old"], s.vs["new"]
	s.install(old, true)
	oldVersions := s.schemaVersions(appDB)
	s.mustPM("systemctl", "stop", s.pgUnit)
	since := now()
	res := s.pm(aptInstall(nw)...)
	if res.code != 0 {
		s.t.Errorf("upgrade with PostgreSQL down: exit %d, want 0 (the package itself installed)", res.code)
	}
	if _, stopped := s.unitEvents(since); len(stopped) != 0 {
		s.t.Errorf("%s was stopped although nothing could be migrated", applianceUnit)
	}
	s.wantState(applianceUnit, "after the upgrade with PostgreSQL down", "active")
	if rps := s.restorePoints(); len(rps) != 0 {
		s.t.Errorf("restore points after an upgrade that could not reach the database: %v", rps)
	}
	cmds := recoveryCommands(res.out)
	if len(cmds) != 1 || cmds[0] != helperPath {
		// Go on with the helper, to check the rest of the promise too.
		s.t.Errorf("the upgrade's output should name one recovery command, %s; it names %q", helperPath, cmds)
		cmds = []string{helperPath}
	}

	s.mustPM("systemctl", "start", s.pgUnit)
	s.waitForRows(s.maxID(), "with PostgreSQL back")
	since = now()
	s.mustPM(splitExec(cmds[0])...)
	stop, restart := s.stopAndRestart(since, cmds[0])
	rps := s.restorePoints()
	if len(rps) != 1 {
		s.t.Fatalf("restore points after %s: %v, want one", cmds[0], rps)
	}
	s.assertEveryRowBeforeStop(rps[0], stop, restart, oldVersions)
	s.assertRunningOnNewSchema(stop, s.rowsWrittenBefore(restart), repoMigrations)
	s.assertNoPasswordInJournal()
}

// sysCloneExportAndCleanup: with CREATEDB for the app role, an upgrade under
// a real systemd takes its restore point as a clone while the service is
// stopped; once the service runs again the helper's transient unit
// (systemd-run) exports the clone to the usual file and drops it, and the
// file holds every row written before the stop. Then the cleanup unit, the
// one the timer starts, in its sandbox, prunes with BACKUP_RETENTION_DAYS=010:
// ten days (the shell cleanup it replaced read 010 as octal, eight days),
// keeping a file nine and a half days old and removing one ten and a half.
func sysCloneExportAndCleanup(s *sysCase) {
	old, nw := s.vs["old"], s.vs["new"]
	s.install(old, true)
	s.sql("postgres", "ALTER ROLE "+appDB+" CREATEDB")
	oldVersions := s.schemaVersions(appDB)
	since := now()
	res := s.mustPM(aptInstall(nw)...)
	if !strings.Contains(res.out, "a clone of the database") {
		s.t.Errorf("the upgrade did not take a clone restore point:\n%s", res.out)
	}
	stop, restart := s.stopAndRestart(since, "the upgrade")
	s.assertRunningOnNewSchema(stop, s.rowsWrittenBefore(restart), repoMigrations)

	clones := "SELECT count(*) FROM pg_database WHERE starts_with(datname, '" + clone.Prefix + "')"
	deadline := time.Now().Add(3 * time.Minute)
	for len(s.restorePoints()) == 0 || s.sqlInt("postgres", clones) != 0 {
		if time.Now().After(deadline) {
			s.t.Fatalf("three minutes after the upgrade: restore points %v, %d clones; %s's journal:\n%s",
				s.restorePoints(), s.sqlInt("postgres", clones), exportUnit, s.journalText(exportUnit, since))
		}
		time.Sleep(time.Second)
	}
	rps := s.restorePoints()
	if len(rps) != 1 {
		s.t.Fatalf("restore points after the export: %v, want one", rps)
	}
	if m := restorePointName.FindStringSubmatch(path.Base(rps[0])); m[2] != old.Head {
		s.t.Errorf("restore point %s: schema %s, want %s", path.Base(rps[0]), m[2], old.Head)
	}
	if j := s.journalText(exportUnit, since); !strings.Contains(j, "export: done in ") {
		s.t.Errorf("%s's journal does not show the export:\n%s", exportUnit, j)
	}
	s.assertEveryRowBeforeStop(rps[0], stop, restart, oldVersions)

	// The cleanup, as the timer runs it, with a retention written with a
	// leading zero.
	s.wantState(cleanupTimer, "after the upgrade", "active")
	conf, err := os.ReadFile(s.m.path(upgradeConfPath))
	if err != nil {
		s.t.Fatal(err)
	}
	fi, err := os.Stat(s.m.path(upgradeConfPath))
	if err != nil {
		s.t.Fatal(err)
	}
	retention := regexp.MustCompile(`(?m)^BACKUP_RETENTION_DAYS=.*$`)
	if !retention.Match(conf) {
		s.t.Fatalf("%s has no BACKUP_RETENTION_DAYS line:\n%s", upgradeConfPath, conf)
	}
	s.m.writeFile(upgradeConfPath, retention.ReplaceAllString(string(conf), "BACKUP_RETENTION_DAYS=010"), fi.Mode().Perm())
	kept := path.Join(backupDir, dump.FileName(nw.FullVersion(), old.Head, time.Now().Add(-(9*24+12)*time.Hour)))
	removed := path.Join(backupDir, dump.FileName(nw.FullVersion(), old.Head, time.Now().Add(-(10*24+12)*time.Hour)))
	s.m.writeFile(kept, "an older restore point", 0o600)
	s.m.writeFile(removed, "a restore point past the retention", 0o600)
	since = now()
	if res := s.pm("systemctl", "start", cleanupService); res.code != 0 {
		s.t.Fatalf("systemctl start %s: exit %d\n%s\n%s", cleanupService, res.code, res.out, s.journalText(cleanupService, since))
	}
	if got, want := s.restorePoints(), []string{rps[0], kept}; !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		s.t.Errorf("after the cleanup with BACKUP_RETENTION_DAYS=010: %v, want %v\n%s", got, want, s.journalText(cleanupService, since))
	}
	if j := s.journalText(cleanupService, since); !strings.Contains(j, "removed "+removed) {
		s.t.Errorf("%s's journal does not name the file it removed:\n%s", cleanupService, j)
	}
	s.assertNoPasswordInJournal()
}

// journalText is a unit's journal since a time, a message a line.
func (s *sysCase) journalText(unit string, since int64) string {
	var b strings.Builder
	for _, e := range s.m.journal(unit, since) {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}
