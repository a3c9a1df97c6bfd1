package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/pgtest"
)

const pkgVersion = "1.2.0-1"

var binary string

// TestMain builds the real binary once, puts the real PostgreSQL client
// programs first on PATH, and starts the throwaway server.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "openwatch-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "openwatch")
	build := exec.Command("go", "build", "-o", binary,
		"-ldflags", "-X github.com/openwatch/openwatch/internal/version.Version="+pkgVersion, "../../cmd/openwatch")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build openwatch: %v\n%s", err, out)
		os.Exit(1)
	}
	if bin, err := pgtest.BinDir(); err == nil {
		os.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// env is a test installation: config files and the environment the binary sees.
type env struct {
	t       *testing.T
	db      *pgtest.Database
	conf    string
	secrets string
	backups string
	vars    []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, pgtest.Shared(t))
}

// newEnvOn is newEnv with a database on server s.
func newEnvOn(t *testing.T, s *pgtest.Server) *env {
	t.Helper()
	db := s.NewDatabase(t)
	dir := t.TempDir()
	e := &env{t: t, db: db, conf: filepath.Join(dir, "upgrade.conf"), secrets: filepath.Join(dir, "secrets.env"),
		backups: filepath.Join(dir, "backups")}
	// No wait for an unreachable database, except where a test asks for it.
	e.writeConf("BACKUP_DIR=" + e.backups + "\nMIGRATE_LOCK_TIMEOUT=60\nDATABASE_WAIT_TIMEOUT=0\n")
	e.writeSecrets(db.URL())
	return e
}

// envQuote quotes s for a systemd EnvironmentFile.
func envQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`").Replace(s) + `"`
}

func (e *env) writeConf(s string) {
	if err := os.WriteFile(e.conf, []byte(s), 0o640); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) writeSecrets(dsn string) {
	if err := os.WriteFile(e.secrets, []byte("# written by the operator\nOPENWATCH_DATABASE_DSN="+envQuote(dsn)+"\n"), 0o640); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runCtx(context.Background(), "", args...)
}

func (e *env) runCtx(ctx context.Context, stdin string, args ...string) result {
	e.t.Helper()
	cmd := exec.CommandContext(ctx, binary, append([]string{"--config", e.conf, "--secrets", e.secrets}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, e.vars...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		e.t.Fatalf("run %v: %v", args, err)
	}
	r := result{code, out.String(), errOut.String()}
	for _, text := range []string{r.stdout, r.stderr} {
		if strings.Contains(text, e.db.Password) || strings.Contains(text, url.QueryEscape(e.db.Password)) {
			e.t.Errorf("output of %v shows the password:\n%s", args, r)
		}
	}
	return r
}

func (e *env) mustRun(code int, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code {
		e.t.Fatalf("openwatch %s: want exit %d, got %s", strings.Join(args, " "), code, r)
	}
	return r
}

func (e *env) query(sql string) string {
	e.t.Helper()
	return e.db.QueryString(e.t, sql)
}

func (e *env) exec(sql string) {
	e.t.Helper()
	e.db.MustExec(e.t, sql)
}

func (e *env) applied() string {
	return e.query("select coalesce(string_agg(version, ',' order by version), '') from schema_migrations")
}

func (e *env) dumps() []string {
	files, _ := filepath.Glob(filepath.Join(e.backups, dump.FileGlob))
	sort.Strings(files)
	return files
}

const head = "20260101000003"

// downgradeOneStep makes the database look like the previous release left it.
func (e *env) downgradeOneStep() {
	e.exec("drop table host_profiles; delete from schema_migrations where version = '" + head + "'")
}

func TestCheckExitCodesFollowTheContract(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		prepare func()
		want    int
		say     string
	}{
		{"an empty database has migrations pending", func() {}, ExitPending, "3 migration(s) pending"},
		{"a migrated database is at head", func() { e.mustRun(0, "migrate") }, ExitOK, "head (" + head + ")"},
		{"a database one release behind has one pending", e.downgradeOneStep, ExitPending, "1 migration(s) pending"},
		{"a version unknown to the binary means a downgrade", func() {
			e.mustRun(0, "migrate")
			e.exec("insert into schema_migrations values ('20991231000000')")
		}, ExitNewer, "20991231000000"},
		{"an unreachable server", func() {
			e.writeSecrets(fmt.Sprintf("host=127.0.0.1 port=1 dbname=x user=y password=%s sslmode=disable", "'"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(e.db.Password)+"'"))
		}, ExitUnreachable, "cannot connect"},
		{"a wrong password", func() {
			u, _ := url.Parse(e.db.URL())
			u.User = url.UserPassword(e.db.User, e.db.Password+"-wrong")
			e.writeSecrets(u.String())
		}, ExitUnreachable, "password authentication failed"},
		{"a malformed DSN", func() { e.writeSecrets("host=x port=notaport password=" + e.db.Password[:4]) }, ExitConfig, "Fix it (OPENWATCH_DATABASE_DSN is in"},
		{"a secrets file this user cannot read", func() { os.Remove(e.secrets); os.Mkdir(e.secrets, 0o700) }, ExitUnreachable, "not configured for this user"},
		{"no DSN at all", func() { os.Remove(e.secrets) }, ExitUnreachable, "OPENWATCH_DATABASE_DSN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			tt.prepare()
			r := e.run("migrate", "--check")
			if r.code != tt.want || !strings.Contains(r.stdout+r.stderr, tt.say) {
				t.Fatalf("want exit %d saying %q, got %s", tt.want, tt.say, r)
			}
		})
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{}, {"frobnicate"}, {"migrate", "--check", "--status"}, {"migrate", "--check", "--no-backup"},
		{"migrate", "--no-backup", "--backup-dir", "/tmp/x"}, {"migrate", "--bogus"}, {"restore"}, {"backup", "extra"},
	} {
		if r := e.run(args...); r.code != ExitUsage {
			t.Errorf("openwatch %v: %s", args, r)
		}
	}
	if r := e.run("--help"); r.code != 0 || !strings.Contains(r.stdout, "13  the restore point could not be taken") {
		t.Errorf("--help does not document the exit codes: %s", r)
	}
	if r := e.run("--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "openwatch "+pkgVersion+"\n") {
		t.Errorf("--version: %s", r)
	}
}

func TestTheEnvironmentDSNWinsAndKeywordValueAndSocketDSNsWork(t *testing.T) {
	e := newEnv(t)
	e.writeSecrets("host=127.0.0.1 port=1 user=nobody dbname=nothing sslmode=disable")
	for _, dsn := range []string{e.db.KeywordValue(), e.db.SocketKeywordValue(), e.db.URL()} {
		e.vars = []string{"OPENWATCH_DATABASE_DSN=" + dsn}
		if r := e.run("migrate", "--check"); r.code != ExitPending && r.code != ExitOK {
			t.Fatalf("DSN from the environment was not used: %s", r)
		}
	}
	e.vars = nil
	e.writeSecrets(e.db.SocketKeywordValue())
	e.mustRun(0, "migrate")
	e.mustRun(0, "migrate", "--check")
}

func TestStatusJSONDescribesTheSchema(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into schema_migrations values ('20991231000000')")
	r := e.mustRun(0, "migrate", "--status", "--json")
	var s statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if s.State != "newer" || s.SchemaVersion != "20991231000000" || s.BinaryHead != head || len(s.Pending) != 1 ||
		s.Pending[0].Name != "20260101000003_create_host_profiles.sql" || len(s.UnknownApplied) != 1 || s.PackageVersion != pkgVersion {
		t.Fatalf("status = %+v", s)
	}
	text := e.mustRun(0, "migrate", "--status")
	if !strings.Contains(text.stdout, "pending:          20260101000003_create_host_profiles.sql") {
		t.Fatalf("text status: %s", text)
	}
}

func TestMigrateTakesARestorePointOnlyWhenTheSchemaHoldsData(t *testing.T) {
	e := newEnv(t)
	r := e.mustRun(0, "migrate")
	if len(e.dumps()) != 0 || !strings.Contains(r.stdout, "no restore point: the schema is empty") {
		t.Fatalf("a fresh install took a restore point: %s", r)
	}
	e.downgradeOneStep()
	r = e.mustRun(0, "migrate")
	if len(e.dumps()) != 1 || !strings.Contains(r.stdout, "restore point: "+e.dumps()[0]) {
		t.Fatalf("an upgrade took no restore point: %s\n%v", r, e.dumps())
	}
	if !strings.Contains(e.dumps()[0], "openwatch_"+pkgVersion+"_schema-20260101000002_") {
		t.Fatalf("restore point %s does not name the schema it holds", e.dumps()[0])
	}
	r = e.mustRun(0, "migrate")
	if len(e.dumps()) != 1 || !strings.Contains(r.stdout, "nothing to migrate") {
		t.Fatalf("nothing pending, yet: %s", r)
	}
	e.downgradeOneStep()
	e.writeConf("AUTO_BACKUP=no\nBACKUP_DIR=" + e.backups + "\n")
	e.mustRun(0, "migrate")
	if len(e.dumps()) != 1 {
		t.Fatal("AUTO_BACKUP=no still took a restore point")
	}
	e.downgradeOneStep()
	other := filepath.Join(t.TempDir(), "explicit")
	e.mustRun(0, "migrate", "--backup-dir", other)
	if files, _ := filepath.Glob(filepath.Join(other, "openwatch_*.dump")); len(files) != 1 {
		t.Fatal("--backup-dir did not take a restore point despite AUTO_BACKUP=no")
	}
}

func TestMigrateAppliesNothingWhenTheRestorePointFails(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(e *env)
		say     string
	}{
		{"pg_dump is missing from PATH", func(e *env) {
			bare := e.t.TempDir() // PATH without any PostgreSQL client
			e.vars = append(e.vars, "PATH="+bare)
		}, "pg_dump not found"},
		{"the backup directory is on a read-only file system", func(e *env) {
			mount(e.t, e.backups, unix.MS_RDONLY, "mode=0700")
		}, "read-only file system"},
		{"the backup directory is on a tiny tmpfs", func(e *env) {
			mount(e.t, e.backups, 0, "size=128k,mode=0700")
		}, "not enough free space"},
		{"the backup directory is world-writable", func(e *env) {
			os.MkdirAll(e.backups, 0o777)
			os.Chmod(e.backups, 0o777)
		}, "group- or world-writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustRun(0, "migrate")
			e.downgradeOneStep()
			tt.prepare(e)
			r := e.run("migrate")
			if r.code != ExitBackupFailed || !strings.Contains(r.stderr, tt.say) || !strings.Contains(r.stderr, "Nothing was applied") {
				t.Fatalf("want exit 13 saying %q, got %s", tt.say, r)
			}
			if got := e.applied(); got != "20260101000001,20260101000002" {
				t.Fatalf("applied %q after a failed backup", got)
			}
			entries, _ := os.ReadDir(e.backups)
			for _, f := range entries {
				t.Errorf("left in the backup directory: %s", f.Name())
			}
		})
	}
}

func mount(t *testing.T, dir string, flags uintptr, opts string) {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, opts); err != nil {
		t.Fatalf("mount tmpfs (tests run as root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

func TestADowngradeIsRefusedNamingBothVersionsAndTheRestorePoint(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	e.mustRun(0, "migrate") // takes a restore point at schema ...0002
	point := e.dumps()[0]
	// Pretend a newer release migrated further, then this binary came back.
	e.exec("insert into schema_migrations values ('20991231000000')")
	r := e.run("migrate")
	if r.code != ExitNewer {
		t.Fatalf("want exit 11, got %s", r)
	}
	for _, want := range []string{"20991231000000", head, "nothing was applied"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("message lacks %q: %s", want, r)
		}
	}
	if e.applied() != "20260101000001,20260101000002,20260101000003,20991231000000" {
		t.Fatalf("applied changed: %s", e.applied())
	}
	if !strings.Contains(r.stderr, "(no restore point with schema "+head+" in "+e.backups+" or on the database server)") {
		t.Errorf("the message does not say that no restore point matches: %s", r.stderr)
	}

	// Recovery: the restore point from before the upgrade brings back the
	// older schema, which this binary then migrates again.
	r = e.mustRun(0, "restore", "--yes", point)
	if !strings.Contains(r.stdout, "schema now at 20260101000002") || !strings.Contains(r.stdout, "openwatch migrate") {
		t.Errorf("restore does not say what comes next: %s", r)
	}
	e.mustRun(ExitPending, "migrate", "--check")
	e.mustRun(0, "migrate")
	e.mustRun(0, "migrate", "--check")
	if e.query("select hostname from hosts") != "a" {
		t.Fatal("the restored data is gone after migrating again")
	}
}

func TestBackupAndRestoreThroughTheBinaryRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.exec(`insert into hosts (hostname, address) values ('web', '10.0.0.2');
		insert into scan_results (host_id, status, findings) select id, 'critical', '{"cve": ["CVE-2025-1"]}' from hosts`)
	fingerprint := "select md5(string_agg(t::text, ',' order by t::text)) from (select h::text from hosts h union all select s::text from scan_results s) t(t)"
	want := e.query(fingerprint)
	r := e.mustRun(0, "backup")
	path := strings.TrimSpace(r.stdout)
	if filepath.Dir(path) != e.backups || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("backup must print only the path: %s", r)
	}
	e.exec("delete from scan_results; create table from_the_future (x int)")

	if r := e.run("restore", path); r.code != ExitUsage || !strings.Contains(r.stderr, "openwatch restore --yes "+path) {
		t.Fatalf("restore without --yes and without a terminal must refuse: %s", r)
	}
	if e.query("select count(*)::text from scan_results") != "0" {
		t.Fatal("a refused restore changed the database")
	}
	e.mustRun(0, "restore", "--yes", path)
	if got := e.query(fingerprint); got != want {
		t.Fatalf("restored data differs: %s != %s", got, want)
	}
	if e.query("select coalesce(to_regclass('from_the_future')::text, 'gone')") != "gone" {
		t.Fatal("a table created after the restore point survived the restore")
	}
	e.mustRun(0, "migrate", "--check")
}

func TestThePasswordNeverReachesAnyChildsArgv(t *testing.T) {
	e := newEnv(t)
	logDir := t.TempDir()
	shims := t.TempDir()
	bin, _ := pgtest.BinDir()
	for _, name := range []string{"pg_dump", "pg_restore", "psql"} {
		script := "#!/bin/sh\n{ printf 'argv:'; for a in \"$0\" \"$@\"; do printf ' %s' \"$a\"; done; printf '\\nenv: '; env | cut -d= -f1 | tr '\\n' ' '; printf '\\n'; } > " +
			logDir + "/$$.log\nexec " + filepath.Join(bin, name) + " \"$@\"\n"
		os.WriteFile(filepath.Join(shims, name), []byte(script), 0o755)
	}
	e.vars = []string{"PATH=" + shims + ":/usr/bin:/bin"}
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.mustRun(0, "migrate") // backup inside migrate
	path := strings.TrimSpace(e.mustRun(0, "backup").stdout)
	e.mustRun(0, "restore", "--yes", path)

	logs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	seen := map[string]int{}
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "argv:") {
				seen[filepath.Base(strings.Fields(line)[1])]++
				for _, leak := range []string{e.db.Password, url.QueryEscape(e.db.Password), e.db.Password[10:], "password=", "postgres://"} {
					if strings.Contains(line, leak) {
						t.Errorf("argv holds %q: %s", leak, line)
					}
				}
			}
		}
	}
	if seen["pg_dump"] != 2 || seen["pg_restore"] < 2 || seen["psql"] != 1 {
		t.Fatalf("children seen: %v; the shims did not observe every run", seen)
	}
}

func TestTwoConcurrentMigrateRunsBothSucceedAndApplyOnce(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = e.run("migrate") }()
	}
	wg.Wait()
	for _, r := range results {
		if r.code != 0 {
			t.Fatalf("a concurrent run failed: %s", r)
		}
	}
	if e.applied() != "20260101000001,20260101000002,20260101000003" {
		t.Fatalf("applied %s", e.applied())
	}
	applies := strings.Count(results[0].stdout+results[1].stdout, "Applying: 20260101000001")
	if applies != 1 {
		t.Fatalf("migration 1 was applied %d times:\n%s\n%s", applies, results[0], results[1])
	}
}

func TestEveryCommandExitsTwelveWhenTheDatabaseIsUnreachable(t *testing.T) {
	e := newEnv(t)
	e.writeSecrets("host=127.0.0.1 port=1 dbname=x user=y sslmode=disable connect_timeout=5")
	for _, args := range [][]string{{"migrate"}, {"migrate", "--status"}, {"migrate", "--status", "--json"}, {"backup"}} {
		r := e.run(args...)
		if r.code != ExitUnreachable || !strings.Contains(r.stderr, "openwatch migrate --check") {
			t.Errorf("openwatch %v: want exit 12 naming the next command, got %s", args, r)
		}
	}
	if len(e.dumps()) != 0 {
		t.Error("a restore point appeared")
	}
	dir := filepath.Join(t.TempDir(), "new-dir")
	if r := e.run("backup", "--dir", dir); r.code != ExitUnreachable {
		t.Errorf("backup --dir: %s", r)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("backup --dir created the directory although it could not connect")
	}
}

func TestABrokenUpgradeConfDoesNotBlockCheckButStopsMigrate(t *testing.T) {
	e := newEnv(t)
	e.writeConf("AUTO_BACKUP=perhaps\n")
	r := e.run("migrate", "--check")
	if r.code != ExitPending || !strings.Contains(r.stderr, "warning: ") || !strings.Contains(r.stderr, "AUTO_BACKUP") {
		t.Fatalf("--check with a broken upgrade.conf: %s", r)
	}
	r = e.run("migrate")
	if r.code != ExitConfig || !strings.Contains(r.stderr, "AUTO_BACKUP") || e.query("select count(*)::text from pg_tables where tablename = 'hosts'") != "0" {
		t.Fatalf("migrate with a broken upgrade.conf: %s", r)
	}
}
