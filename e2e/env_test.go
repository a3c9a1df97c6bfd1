package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openwatch/openwatch/internal/pgtest"
)

// env is one case: a fresh disposable root, a fresh database, one format.
type env struct {
	t    *testing.T
	f    format
	r    *root
	db   *pgtest.Database
	vs   map[string]*variant
	runs []result // every package manager and operator command, for failure output
	kv   bool     // secrets.env holds a keyword/value DSN instead of a URL
}

func newEnv(t *testing.T, f format, shell string) *env {
	vs := variants(t)
	e := &env{t: t, f: f, vs: vs, db: pgtest.Shared(t).NewDatabase(t)}
	e.r = newRoot(t, shell)
	// Registered after the root, so it runs while the root still exists.
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("E2E_VERBOSE") == "" {
			return
		}
		for _, res := range e.runs {
			t.Logf("$ %s   (exit %d)\n%s", res.cmd, res.code, res.out)
		}
		t.Logf("events (systemctl calls, pg_* shim calls) since the last reset:\n%s", e.r.events())
		t.Logf("restore points: %v", e.r.glob(backupDir+"/*"))
	})
	return e
}

// pm runs a package manager command as operator does (every process's argv
// watched) and checks that the watcher saw it.
func (e *env) pm(argv ...string) result {
	e.t.Helper()
	res := e.operator(argv...)
	// The watcher must at least have seen the package manager itself, or
	// its silence proves nothing.
	if !slices.ContainsFunc(res.argv, func(a string) bool { return strings.Contains(a, strings.Join(argv, " ")) }) {
		e.t.Errorf("the argv watcher did not see %s running", res.cmd)
	}
	return res
}

// operator runs a command an operator would type, with a bounded time.
func (e *env) operator(argv ...string) result {
	e.t.Helper()
	res := e.r.runWatched(pmTimeout, argv...)
	e.runs = append(e.runs, res)
	if res.code < 0 {
		e.t.Fatalf("%s did not finish: %v\n%s", res.cmd, res.err, res.out)
	}
	e.assertNoPassword(res)
	return res
}

// mustOperator is operator, failing the test on a non-zero exit.
func (e *env) mustOperator(argv ...string) result {
	e.t.Helper()
	res := e.operator(argv...)
	if res.code != 0 {
		e.t.Fatalf("%s: exit %d\n%s", res.cmd, res.code, res.out)
	}
	return res
}

// dsn is the test database's DSN in the form this case writes.
func (e *env) dsn() string {
	if e.kv {
		return e.db.KeywordValue()
	}
	return e.db.URL()
}

// writeSecrets points secrets.env at dsn, the way the operator would write
// it: a URL (no quotes or backslashes after percent-encoding) in single
// quotes, anything else in double quotes with systemd's escapes.
func (e *env) writeSecrets(dsn string) {
	e.t.Helper()
	value := "'" + dsn + "'"
	if strings.ContainsAny(dsn, `'"\`) {
		value = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`", `$`, `\$`).Replace(dsn) + `"`
	}
	e.r.writeFile(secretsPath, "# written by the operator\nOPENWATCH_DATABASE_DSN="+value+"\n", 0o640)
	// The group exists once the package's preinst/%pre has run.
	e.r.run(10*time.Second, "chgrp", "openwatch", secretsPath)
}

// closedDSN points at a port on which nothing listens.
func (e *env) closedDSN() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return strings.Replace(e.db.URL(), fmt.Sprintf(":%d/", e.db.Server.Port), fmt.Sprintf(":%d/", port), 1)
}

// installAndInitialise is the state before every upgrade: v freshly
// installed, secrets.env written, the schema initialised by the operator
// with `openwatch migrate`, rows seeded, the appliance running, and the
// recorded events cleared.
func (e *env) installAndInitialise(v *variant) {
	e.t.Helper()
	if res := e.pm(e.f.install(e.f.pkg(v))...); res.code != 0 {
		e.t.Fatalf("fresh install of %s: exit %d\n%s", v.FullVersion(), res.code, res.out)
	}
	e.initialise(v)
}

// --- the database ---

func (e *env) conn() *pgx.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.db.URL())
	if err != nil {
		e.t.Fatalf("connect to the test database: %v", err)
	}
	return c
}

func (e *env) exec(sql string) {
	e.t.Helper()
	c := e.conn()
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, sql); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) queryStrings(sql string) []string {
	e.t.Helper()
	c := e.conn()
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := c.Query(ctx, sql)
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// schemaVersions lists the applied migrations, nil when dbmate never ran.
func (e *env) schemaVersions() []string {
	e.t.Helper()
	if e.queryStrings("SELECT coalesce(to_regclass('public.schema_migrations')::text, '')")[0] == "" {
		return nil
	}
	return e.queryStrings("SELECT version::text FROM schema_migrations ORDER BY version")
}

// schemaShape describes every column, index and constraint in public.
func (e *env) schemaShape() string {
	e.t.Helper()
	return strings.Join(e.queryStrings(`
SELECT format('column %s.%s %s %s', table_name, column_name, data_type, is_nullable)
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1`), "\n")
}

// seed puts rows in the tables every version has.
func (e *env) seed() {
	e.t.Helper()
	e.exec(`
INSERT INTO hosts (hostname, address) VALUES ('db-1.example', '10.0.0.1'), ('web-1.example', '10.0.0.2'), ('edge ''quoted''', '2001:db8::1');
INSERT INTO scan_results (host_id, status, findings)
SELECT id, 'warning', jsonb_build_object('open_ports', jsonb_build_array(22, 443), 'host', hostname) FROM hosts;`)
}

// data is the content of the seeded tables, for before/after comparisons.
func (e *env) data() string {
	e.t.Helper()
	return strings.Join(e.queryStrings(`
SELECT 'hosts ' || coalesce(jsonb_agg(to_jsonb(h) ORDER BY h.id)::text, '[]') FROM hosts h
UNION ALL
SELECT 'scan_results ' || coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.id)::text, '[]') FROM scan_results s`), "\n")
}

// --- the root ---

// backupFiles lists every file in the backup directory.
func (e *env) backupFiles() []string { return e.r.glob(backupDir + "/*") }

var restorePointName = regexp.MustCompile(`^openwatch_([A-Za-z0-9.+~_-]+)_schema-(\d+)_(\d{8}T\d{6}Z)\.dump$`)

// oneRestorePoint asserts the backup directory holds exactly one restore
// point, made by v for schema version, readable by root only; it returns its path.
func (e *env) oneRestorePoint(v *variant, schema string) string {
	e.t.Helper()
	files := e.backupFiles()
	if len(files) != 1 {
		e.t.Fatalf("backup directory holds %d files, want exactly one restore point: %v", len(files), files)
	}
	name := path.Base(files[0])
	m := restorePointName.FindStringSubmatch(name)
	if m == nil {
		e.t.Fatalf("restore point %q does not match openwatch_<package-version>_schema-<version>_<UTC time>.dump", name)
	}
	if m[1] != v.FullVersion() || m[2] != schema {
		e.t.Errorf("restore point %q: package version %s schema %s, want %s and %s", name, m[1], m[2], v.FullVersion(), schema)
	}
	if mode := e.r.mode(files[0]); mode != 0o600 {
		e.t.Errorf("restore point mode %o, want 600", mode)
	}
	return files[0]
}

func (e *env) assertNoRestorePoint() {
	e.t.Helper()
	if files := e.backupFiles(); len(files) != 0 {
		e.t.Errorf("backup directory should be empty, holds %v", files)
	}
}

// assertNoPassword fails when the database password (or its random part, in
// whatever encoding) shows in the output, any process's argv during the run,
// or the argv the pg_* shims recorded.
func (e *env) assertNoPassword(res result) {
	e.t.Helper()
	pw := e.db.Password
	token := pw[len(pw)-8:] // random hex: survives URL and DSN quoting
	leaks := func(s string) bool { return strings.Contains(s, pw) || strings.Contains(s, token) }
	if leaks(res.out) {
		e.t.Errorf("%s printed the database password", res.cmd)
	}
	for _, a := range res.argv {
		if leaks(a) {
			e.t.Errorf("during %s a process had the database password in its argv: %s", res.cmd, redact(a, pw, token))
		}
	}
	for _, line := range strings.Split(e.r.events(), "\n") {
		if leaks(line) {
			e.t.Errorf("recorded call has the database password on its command line: %s", redact(line, pw, token))
		}
	}
}

func redact(s, pw, token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, pw, "<PASSWORD>"), token, "<PASSWORD-PART>")
}

// --- the recorded events ---

// eventIndex is the line number of the first event at or after from that
// satisfies ok, -1 when none does.
func eventIndex(events []string, from int, ok func(string) bool) int {
	for i := from; i < len(events); i++ {
		if ok(events[i]) {
			return i
		}
	}
	return -1
}

// isCall matches a systemctl call with one of verbs naming unit.
func isCall(unit string, verbs ...string) func(string) bool {
	return func(line string) bool {
		cs := systemctlCalls(line)
		if len(cs) != 1 || !cs[0].has(unit) {
			return false
		}
		for _, v := range verbs {
			if cs[0].Verb == v {
				return true
			}
		}
		return false
	}
}

// startedUnit reports a systemctl call that brings unit up from any state.
func startedUnit(unit string) func(string) bool {
	return isCall(unit, "start", "restart", "reload-or-restart")
}

// startIndex is the line number of the first call at or after from that
// started unit and was not refused by the start guard, -1 when none did.
func startIndex(events []string, from int, unit string) int {
	for i := from; i < len(events); i++ {
		if i = eventIndex(events, i, startedUnit(unit)); i < 0 {
			return -1
		}
		refused := false
		for j := i + 1; j < len(events) && j <= i+2; j++ {
			refused = refused || events[j] == "e2e-note refused start "+unit
		}
		if !refused {
			return i
		}
	}
	return -1
}

func hasPrefix(p string) func(string) bool {
	return func(line string) bool { return strings.HasPrefix(line, p) }
}

// journal returns a setting of the upgrade journal ("" when absent).
func (e *env) journal(key string) string {
	for _, l := range strings.Split(e.r.readFile(journalPath), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			// The binary writes systemd EnvironmentFile values in double
			// quotes, escaping \ " $ and `.
			v = strings.Trim(v, `"'`)
			return strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\$`, `$`, "\\`", "`").Replace(v)
		}
	}
	return ""
}
