package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/pgtest"
)

const (
	dbName       = "openwatch"
	roleName     = "openwatch"
	pkgVersion   = "1.1.0-1"
	unit         = "openwatch.service"
	helperPath   = "dist/openwatch-upgrade.sh"
	shippedConf  = "dist/upgrade.conf"
	rtDB         = "openwatch_restore"
	recorderBody = `#!/bin/sh
# Recording systemctl for the benchmark: timestamps stop/start/try-restart,
# says every unit is active, does nothing else.
[ "$1" = --quiet ] && shift
printf '%s %s\n' "$1" "$(date +%s%N)" >>"$BENCH_SYSTEMCTL_LOG"
exit 0
`
	// Runs the real helper with the built binary and the benchmark's config
	// in place of /usr/bin/openwatch, /etc/openwatch, /var/lib/openwatch and
	// /run/systemd, inside a private mount namespace: the host's files are
	// never touched. A missing mount point is made in an overlay of its
	// parent directory (also private).
	nsScript = `set -eu
over() {
	if [ ! -e "$2" ]; then
		p=$(dirname "$2")
		d=$(mktemp -d "$W/ovl.XXXXXX")
		mkdir "$d/u" "$d/w"
		mount -t overlay overlay -o "lowerdir=$p,upperdir=$d/u,workdir=$d/w" "$p"
		if [ -d "$1" ]; then mkdir "$2"; else : >"$2"; fi
	fi
	mount --bind "$1" "$2"
}
over "$OW" /usr/bin/openwatch
over "$ETC" /etc/openwatch
over "$VARLIB" /var/lib/openwatch
over "$RUNSYSTEMD" /run/systemd
exec /bin/sh "$HELPER"
`
	// A: the usual approach, with the same recording systemctl.
	aScript = `set -e
systemctl stop openwatch.service
pg_dump --no-owner --no-privileges --file="$PLAIN"
"$OW" --config "$ETC/upgrade.conf" --secrets "$ETC/secrets.env" migrate --no-backup >/dev/null
systemctl start openwatch.service
`
)

type migration struct {
	version, up, down string
}

type env struct {
	srv                         *pgtest.Server
	root, work                  string
	ow, etc, varlib, runsystemd string
	bindir, backups, keep       string
	sysLog, plain               string
	password                    string
	defLevel                    string
	defJobs                     int
	confBase                    string
	newest                      migration
	newestFile                  string
	loader                      *loader
	baseEnv                     []string
}

func parseMigration(path string) (migration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return migration{}, err
	}
	s := string(b)
	i, j := strings.Index(s, "-- migrate:up"), strings.Index(s, "-- migrate:down")
	if i < 0 || j < i {
		return migration{}, fmt.Errorf("%s: no -- migrate:up / -- migrate:down sections", path)
	}
	return migration{version: strings.SplitN(filepath.Base(path), "_", 2)[0], up: s[i:j], down: s[j:]}, nil
}

func newEnv(ctx context.Context, srv *pgtest.Server, root string, o options) (*env, error) {
	work, err := os.MkdirTemp("", "owbench-")
	if err != nil {
		return nil, err
	}
	e := &env{srv: srv, root: root, work: work, password: fmt.Sprintf("bench-%d", time.Now().UnixNano())}
	for _, d := range []string{"etc", "varlib", "run-systemd/system", "bin", "backups", "keep"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o700); err != nil {
			return nil, err
		}
	}
	e.ow = filepath.Join(work, "openwatch")
	e.etc, e.varlib, e.runsystemd = filepath.Join(work, "etc"), filepath.Join(work, "varlib"), filepath.Join(work, "run-systemd")
	e.bindir, e.backups, e.keep = filepath.Join(work, "bin"), filepath.Join(work, "backups"), filepath.Join(work, "keep")
	e.sysLog, e.plain = filepath.Join(work, "systemctl.log"), filepath.Join(work, "plain.sql")

	files, _ := filepath.Glob(filepath.Join(root, "migrations", "*.sql"))
	sort.Strings(files)
	if len(files) < 2 {
		return nil, fmt.Errorf("need at least two migrations in migrations/ (the newest one is the pending upgrade)")
	}
	if e.newest, err = parseMigration(files[len(files)-1]); err != nil {
		return nil, err
	}
	e.newestFile = filepath.Base(files[len(files)-1])
	logf("pending migration for the benchmark: %s", e.newestFile)

	logf("building the binary (version %s)", pkgVersion)
	build := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X github.com/openwatch/openwatch/internal/version.Version="+pkgVersion, "-o", e.ow, "./cmd/openwatch")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/openwatch: %w", err)
	}
	if err := os.WriteFile(filepath.Join(e.bindir, "systemctl"), []byte(recorderBody), 0o755); err != nil {
		return nil, err
	}

	// The shipped upgrade.conf is the default being measured.
	conf, err := os.ReadFile(filepath.Join(root, shippedConf))
	if err != nil {
		return nil, err
	}
	e.confBase = string(conf)
	e.defLevel, e.defJobs = confValue(e.confBase, "BACKUP_COMPRESSION"), 1
	if j, err := strconv.Atoi(confValue(e.confBase, "RESTORE_JOBS")); err == nil {
		e.defJobs = j
	}
	if e.defLevel == "" {
		e.defLevel = "1"
	}
	if err := e.writeConf(e.defLevel); err != nil {
		return nil, err
	}

	lit := "'" + strings.ReplaceAll(e.password, "'", "''") + "'"
	if err := srv.Exec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", roleName, lit)); err != nil {
		return nil, err
	}
	if err := srv.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", dbName, roleName)); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.etc, "secrets.env"), []byte("OPENWATCH_DATABASE_DSN='"+e.url(dbName)+"'\n"), 0o600); err != nil {
		return nil, err
	}
	e.baseEnv = append(os.Environ(), "PATH="+e.bindir+":"+os.Getenv("PATH"), "BENCH_SYSTEMCTL_LOG="+e.sysLog,
		"PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(srv.Port), "PGUSER="+roleName, "PGPASSWORD="+e.password,
		"PGDATABASE="+dbName, "PGSSLMODE=disable", "OW="+e.ow, "ETC="+e.etc, "VARLIB="+e.varlib,
		"RUNSYSTEMD="+e.runsystemd, "W="+work, "HELPER="+filepath.Join(root, helperPath), "PLAIN="+e.plain)

	// The real schema, applied by the binary, then the newest migration
	// rolled back: the dataset lives at the previous head.
	if out, err := e.owCmd(ctx, "migrate", "--no-backup").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("openwatch migrate: %v\n%s", err, out)
	}
	if err := e.toPending(ctx); err != nil {
		return nil, err
	}
	hosts := int(o.size / (128 * 1024))
	e.loader = &loader{url: e.url(dbName), g: newGen(1, max(hosts, 200))}
	return e, nil
}

func confValue(conf, key string) string {
	re := regexp.MustCompile(`(?m)^\s*` + key + `=['"]?([^'"\n]*)['"]?\s*$`)
	if m := re.FindStringSubmatch(conf); m != nil {
		return m[1]
	}
	return ""
}

// writeConf writes upgrade.conf: the shipped file with the benchmark's
// BACKUP_DIR and the given compression level.
func (e *env) writeConf(level string) error {
	c := regexp.MustCompile(`(?m)^BACKUP_DIR=.*$`).ReplaceAllString(e.confBase, "BACKUP_DIR='"+e.backups+"'")
	c = regexp.MustCompile(`(?m)^BACKUP_COMPRESSION=.*$`).ReplaceAllString(c, "BACKUP_COMPRESSION="+level)
	if !strings.Contains(c, "BACKUP_COMPRESSION=") {
		c += "\nBACKUP_COMPRESSION=" + level + "\n"
	}
	return os.WriteFile(filepath.Join(e.etc, "upgrade.conf"), []byte(c), 0o600)
}

func (e *env) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(roleName, e.password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(e.srv.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (e *env) owCmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, e.ow, append([]string{"--config", filepath.Join(e.etc, "upgrade.conf"), "--secrets", filepath.Join(e.etc, "secrets.env")}, args...)...)
	c.Env = e.baseEnv
	return c
}

func (e *env) pgVersion(ctx context.Context) string {
	conn, err := pgx.Connect(ctx, e.srv.SuperURL("postgres"))
	if err != nil {
		return "?"
	}
	defer conn.Close(ctx)
	var v string
	conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v
}

func (e *env) super(ctx context.Context, db, sql string, args ...any) error {
	return e.srv.Exec(ctx, db, sql, args...)
}

func (e *env) applied(ctx context.Context) (bool, error) {
	conn, err := pgx.Connect(ctx, e.srv.SuperURL(dbName))
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE version = $1", e.newest.version).Scan(&n)
	return n == 1, err
}

// toPending rolls the newest migration back (its own down section), so an
// upgrade has exactly it to apply.
func (e *env) toPending(ctx context.Context) error {
	ok, err := e.applied(ctx)
	if err != nil {
		return err
	}
	if ok {
		if err := e.super(ctx, dbName, "BEGIN;\n"+e.newest.down+"\nDELETE FROM schema_migrations WHERE version = '"+e.newest.version+"';\nCOMMIT;"); err != nil {
			return fmt.Errorf("roll back %s: %w", e.newest.version, err)
		}
	}
	return e.super(ctx, "postgres", "CHECKPOINT")
}

func (e *env) toHead(ctx context.Context) error {
	if out, err := e.owCmd(ctx, "migrate", "--no-backup").CombinedOutput(); err != nil {
		return fmt.Errorf("openwatch migrate: %v\n%s", err, out)
	}
	return e.super(ctx, "postgres", "CHECKPOINT")
}

type dataset struct {
	Target, Bytes  int64
	Hosts, Scans   int64
	ScanTableBytes int64
	ScanIndexBytes int64
	LoadSeconds    float64
	PlainDumpBytes int64 // filled from A's samples in the report
	Label          string
}

func (e *env) describe(ctx context.Context, actual int64) dataset {
	d := dataset{Bytes: actual}
	conn, err := pgx.Connect(ctx, e.srv.SuperURL(dbName))
	if err != nil {
		return d
	}
	defer conn.Close(ctx)
	conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM hosts), (SELECT count(*) FROM scan_results), pg_table_size('scan_results'), pg_indexes_size('scan_results')").
		Scan(&d.Hosts, &d.Scans, &d.ScanTableBytes, &d.ScanIndexBytes)
	d.Label = human(actual)
	return d
}

type variant struct {
	approach string // A, B, F
	level    string // B: BACKUP_COMPRESSION
}

type sample struct {
	Approach  string  `json:"approach"`
	Level     string  `json:"level,omitempty"`
	Noop      bool    `json:"noop"`
	Size      int     `json:"size"`
	Rep       int     `json:"rep"`
	Downtime  float64 `json:"downtime_s"`
	Wall      float64 `json:"wall_s"`
	DumpBytes int64   `json:"restore_point_bytes"`
	MaxRSSKB  int64   `json:"peak_rss_kb"`
	Copied    int64   `json:"copied_bytes,omitempty"`
}

func maxRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// downtime reads the recording systemctl's log: stop → start, or 0 for a
// try-restart (the restart every approach pays; the recorder takes none).
func (e *env) downtime() (float64, error) {
	b, err := os.ReadFile(e.sysLog)
	if err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	var stop, start int64
	restart := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "stop":
			stop = ns
		case "start":
			start = ns
		case "try-restart", "restart":
			restart = true
		}
	}
	switch {
	case stop != 0 && start > stop:
		return float64(start-stop) / 1e9, nil
	case stop == 0 && start == 0 && restart:
		return 0, nil
	}
	return 0, fmt.Errorf("systemctl log has no stop/start pair:\n%s", b)
}

func clearDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		os.RemoveAll(filepath.Join(dir, en.Name()))
	}
}

// measure runs one upgrade. keep saves the restore point for the restore
// measurements.
func (e *env) measure(ctx context.Context, v variant, noop, keep bool) (sample, error) {
	s := sample{Approach: v.approach, Level: v.level, Noop: noop}
	clearDir(e.backups)
	clearDir(e.varlib)
	os.Remove(e.sysLog)
	os.Remove(e.plain)
	switch v.approach {
	case "F":
		t0 := time.Now()
		n, err := e.floor(ctx)
		s.Wall = time.Since(t0).Seconds()
		s.Downtime, s.Copied = s.Wall, n
		return s, err
	case "D":
		out := filepath.Join(e.backups, "dump-alone.dump")
		c := exec.CommandContext(ctx, "pg_dump", "--format=custom", "--compress="+v.level, "--file="+out)
		c.Env = e.baseEnv
		d, rss, err := e.timed(ctx, c)
		s.Wall, s.Downtime, s.MaxRSSKB = d, d, rss
		if fi, err := os.Stat(out); err == nil {
			s.DumpBytes = fi.Size()
		}
		return s, err
	case "P":
		out := filepath.Join(e.backups, "dump-dir")
		c := exec.CommandContext(ctx, "pg_dump", "--format=directory", "-j", strconv.Itoa(runtime.NumCPU()), "--compress="+v.level, "--file="+out)
		c.Env = e.baseEnv
		d, rss, err := e.timed(ctx, c)
		s.Wall, s.Downtime, s.MaxRSSKB = d, d, rss
		s.DumpBytes = dirSize(out)
		return s, err
	case "A":
		c := exec.CommandContext(ctx, "/bin/sh", "-c", aScript)
		c.Env = e.baseEnv
		t0 := time.Now()
		out, err := c.CombinedOutput()
		s.Wall = time.Since(t0).Seconds()
		if err != nil {
			return s, fmt.Errorf("%v\n%s", err, out)
		}
		s.MaxRSSKB = maxRSS(c.ProcessState)
		if fi, err := os.Stat(e.plain); err == nil {
			s.DumpBytes = fi.Size()
		}
		if keep {
			os.Rename(e.plain, filepath.Join(e.keep, "plain.sql"))
		}
	case "B":
		if err := e.writeConf(v.level); err != nil {
			return s, err
		}
		c := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", nsScript)
		c.Env = e.baseEnv
		t0 := time.Now()
		out, err := c.CombinedOutput()
		s.Wall = time.Since(t0).Seconds()
		if err != nil {
			return s, fmt.Errorf("upgrade helper: %v\n%s", err, out)
		}
		s.MaxRSSKB = maxRSS(c.ProcessState)
		dumps, _ := filepath.Glob(filepath.Join(e.backups, "openwatch_*_schema-*_*.dump"))
		switch {
		case noop && len(dumps) != 0:
			return s, fmt.Errorf("no-op upgrade took a restore point")
		case !noop && len(dumps) != 1:
			return s, fmt.Errorf("want one restore point in %s, found %d; helper output:\n%s", e.backups, len(dumps), out)
		}
		if len(dumps) == 1 {
			fi, _ := os.Stat(dumps[0])
			s.DumpBytes = fi.Size()
			if keep {
				os.Rename(dumps[0], filepath.Join(e.keep, "level-"+v.level+".dump"))
			}
		}
	}
	ok, err := e.applied(ctx)
	if err != nil {
		return s, err
	}
	if !ok {
		return s, fmt.Errorf("the migration was not applied")
	}
	if s.Downtime, err = e.downtime(); err != nil {
		return s, err
	}
	return s, nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// floor: connect, COPY every table to nowhere, apply the migration and record
// it, as the database owner.
func (e *env) floor(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, e.url(dbName))
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
	if err != nil {
		return 0, err
	}
	var tables []string
	for rows.Next() {
		var t string
		rows.Scan(&t)
		tables = append(tables, t)
	}
	rows.Close()
	var w countWriter
	for _, t := range tables {
		if _, err := conn.PgConn().CopyTo(ctx, &w, "COPY "+t+" TO STDOUT"); err != nil {
			return 0, err
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, e.newest.up); err != nil {
		tx.Rollback(ctx)
		return 0, err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", e.newest.version); err != nil {
		tx.Rollback(ctx)
		return 0, err
	}
	return w.n, tx.Commit(ctx)
}

type checkStats struct {
	Runs                  int
	Median, P90, Min, Max float64
	// VersionMedian is `openwatch --version`: the process start alone.
	VersionMedian float64 `json:",omitempty"`
}

func (e *env) checkLatency(ctx context.Context, n int) (checkStats, error) {
	var d []float64
	for i := 0; i < n; i++ {
		c := e.owCmd(ctx, "migrate", "--check")
		t0 := time.Now()
		out, err := c.CombinedOutput()
		d = append(d, time.Since(t0).Seconds())
		if err != nil {
			return checkStats{}, fmt.Errorf("migrate --check at head: %v\n%s", err, out)
		}
	}
	var v []float64
	for i := 0; i < n; i++ {
		c := exec.CommandContext(ctx, e.ow, "--version")
		t0 := time.Now()
		if out, err := c.CombinedOutput(); err != nil {
			return checkStats{}, fmt.Errorf("openwatch --version: %v\n%s", err, out)
		}
		v = append(v, time.Since(t0).Seconds())
	}
	sort.Float64s(d)
	return checkStats{Runs: n, VersionMedian: median(v), Median: median(d), P90: d[(len(d)*9)/10-boolInt(len(d) >= 10)], Min: d[0], Max: d[len(d)-1]}, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type restoreSample struct {
	Kind     string  `json:"kind"` // plain, openwatch, pg_restore
	Level    string  `json:"level,omitempty"`
	Jobs     int     `json:"jobs,omitempty"`
	Rep      int     `json:"rep"`
	Seconds  float64 `json:"seconds"`
	MaxRSSKB int64   `json:"peak_rss_kb"`
}

func (e *env) freshRestoreDB(ctx context.Context) error {
	if err := e.super(ctx, "postgres", "DROP DATABASE IF EXISTS "+rtDB+" WITH (FORCE)"); err != nil {
		return err
	}
	if err := e.super(ctx, "postgres", "CREATE DATABASE "+rtDB+" OWNER "+roleName); err != nil {
		return err
	}
	return e.super(ctx, "postgres", "CHECKPOINT")
}

func (e *env) timed(ctx context.Context, c *exec.Cmd) (float64, int64, error) {
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = io.Discard, &stderr
	t0 := time.Now()
	err := c.Run()
	d := time.Since(t0).Seconds()
	if err != nil {
		return d, 0, fmt.Errorf("%s: %v\n%s", strings.Join(c.Args, " "), err, tailOf(stderr.String(), 2000))
	}
	return d, maxRSS(c.ProcessState), nil
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// restores: plain psql -f, openwatch restore --yes for every kept restore
// point, and pg_restore -j N straight into the database (what RESTORE_JOBS
// could buy), each into an empty database.
func (e *env) restores(ctx context.Context, o options, size int) ([]restoreSample, error) {
	rtSecrets := filepath.Join(e.work, "restore-secrets.env")
	if err := os.WriteFile(rtSecrets, []byte("OPENWATCH_DATABASE_DSN='"+e.url(rtDB)+"'\n"), 0o600); err != nil {
		return nil, err
	}
	env := append(append([]string{}, e.baseEnv...), "PGDATABASE="+rtDB)
	var levels []string
	for _, l := range append([]string{e.defLevel}, o.levels...) {
		if _, err := os.Stat(filepath.Join(e.keep, "level-"+l+".dump")); err == nil && !contains(levels, l) {
			levels = append(levels, l)
		}
	}
	type job struct {
		kind, level string
		jobs        int
	}
	jobs := []job{{kind: "plain"}}
	for _, l := range levels {
		jobs = append(jobs, job{kind: "openwatch", level: l})
	}
	for _, j := range o.jobs {
		jobs = append(jobs, job{kind: "pg_restore", level: e.defLevel, jobs: j})
	}
	var out []restoreSample
	for rep := 0; rep < o.restoreReps; rep++ {
		for k := range jobs {
			j := jobs[(k+rep)%len(jobs)]
			// Plain and the default are repeated; alternatives run once.
			if rep > 0 && !(j.kind == "plain" || (j.kind == "openwatch" && j.level == e.defLevel)) {
				continue
			}
			if err := e.freshRestoreDB(ctx); err != nil {
				return nil, err
			}
			var c *exec.Cmd
			switch j.kind {
			case "plain":
				c = exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", filepath.Join(e.keep, "plain.sql"))
			case "openwatch":
				c = exec.CommandContext(ctx, e.ow, "--config", filepath.Join(e.etc, "upgrade.conf"), "--secrets", rtSecrets, "restore", "--yes", filepath.Join(e.keep, "level-"+j.level+".dump"))
			case "pg_restore":
				c = exec.CommandContext(ctx, "pg_restore", "--no-owner", "--exit-on-error", "-j", strconv.Itoa(j.jobs), "-d", rtDB, filepath.Join(e.keep, "level-"+j.level+".dump"))
			}
			c.Env = env
			d, rss, err := e.timed(ctx, c)
			if err != nil {
				return nil, err
			}
			out = append(out, restoreSample{Kind: j.kind, Level: j.level, Jobs: j.jobs, Rep: rep, Seconds: d, MaxRSSKB: rss})
			logf("  restore %-10s %-3s %s rep %d: %.2fs", j.kind, j.level, map[bool]string{true: fmt.Sprintf("-j%d", j.jobs), false: "   "}[j.jobs > 0], rep+1, d)
		}
	}
	e.super(ctx, "postgres", "DROP DATABASE IF EXISTS "+rtDB+" WITH (FORCE)")
	_ = size
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
