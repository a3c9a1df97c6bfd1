package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
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
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/defaults"
	"github.com/openwatch/openwatch/internal/dump"
	"github.com/openwatch/openwatch/internal/migrate/rehearse"
	"github.com/openwatch/openwatch/internal/pgtest"
)

const (
	dbName       = "openwatch"
	roleName     = "openwatch"
	pkgVersion   = "1.1.0-1"
	helperPath   = "dist/openwatch-upgrade.sh"
	shippedConf  = "dist/upgrade.conf"
	rtDB         = "openwatch_restore"
	systemdDir   = "/run/systemd" // the helper tests for its system/ (the spec's SystemdRunDir; not in internal/defaults)
	recorderBody = `#!/bin/sh
# Recording systemctl for the benchmark: timestamps stop/start/try-restart,
# says every unit is active, does nothing else.
[ "$1" = --quiet ] && shift
printf '%s %s\n' "$1" "$(date +%s%N)" >>"$BENCH_SYSTEMCTL_LOG"
exit 0
`
	// Runs the real helper with the built binary and the benchmark's config
	// in place of the installed binary, config directory, state directory
	// ($BIN_PATH, $ETC_DIR, $VARLIB_DIR: internal/defaults) and /run/systemd,
	// inside a private mount namespace: the host's files are never touched.
	// A missing mount point is made in an overlay of its parent directory
	// (also private).
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
over "$OW" "$BIN_PATH"
over "$ETC" "$ETC_DIR"
over "$VARLIB" "$VARLIB_DIR"
over "$RUNSYSTEMD" "$SYSTEMD_DIR"
exec /bin/sh "$HELPER"
`
	// A: the usual approach, with the same recording systemctl.
	aScript = `set -e
systemctl stop "$UNIT"
pg_dump --no-owner --no-privileges --file="$PLAIN"
"$OW" --config "$ETC/upgrade.conf" --secrets "$ETC/secrets.env" --journal "$VARLIB/upgrade.state" migrate --no-backup >/dev/null
systemctl start "$UNIT"
`
)

// The installed paths the helper uses, from the spec (internal/defaults):
// the benchmark mounts its own files over them.
var (
	etcDir    = filepath.Dir(defaults.ConfigPath)
	varlibDir = filepath.Dir(defaults.JournalPath)
)

type migration struct {
	version, up, down string
}

type env struct {
	// noRehearse: REHEARSE=no for every B run (-only: the rehearsal runs
	// before the stop, so it is no part of the downtime, and takes minutes
	// on a loaded machine).
	noRehearse                  bool
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
	if filepath.Dir(defaults.SecretsPath) != etcDir {
		return nil, fmt.Errorf("%s and %s are in different directories: the benchmark mounts one config directory", defaults.ConfigPath, defaults.SecretsPath)
	}
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
	if err := e.writeConf(e.defLevel, confValue(e.confBase, "RESTORE_POINT")); err != nil {
		return nil, err
	}

	lit := "'" + strings.ReplaceAll(e.password, "'", "''") + "'"
	// CREATEDB and owning the database: what a clone restore point needs
	// (docs/UPGRADING.md, "Two kinds of restore point").
	if err := srv.Exec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD %s", roleName, lit)); err != nil {
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
		"RUNSYSTEMD="+e.runsystemd, "W="+work, "HELPER="+filepath.Join(root, helperPath), "PLAIN="+e.plain,
		"UNIT="+defaults.AppUnit, "BIN_PATH="+defaults.Binary, "ETC_DIR="+etcDir, "VARLIB_DIR="+varlibDir, "SYSTEMD_DIR="+systemdDir)

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
// BACKUP_DIR, the given compression level and RESTORE_POINT. The
// compression alternatives run with REHEARSE=no: the rehearsal does not
// depend on the level, and at 1 GB it would add half a minute to each.
func (e *env) writeConf(level, restorePoint string) error {
	c := regexp.MustCompile(`(?m)^BACKUP_DIR=.*$`).ReplaceAllString(e.confBase, "BACKUP_DIR='"+e.backups+"'")
	rehearse := confValue(e.confBase, "REHEARSE")
	if level != e.defLevel || e.noRehearse {
		rehearse = "no"
	}
	for _, kv := range [][2]string{{"BACKUP_COMPRESSION", level}, {"RESTORE_POINT", restorePoint}, {"REHEARSE", rehearse}} {
		line := kv[0] + "=" + kv[1]
		if re := regexp.MustCompile(`(?m)^` + kv[0] + `=.*$`); re.MatchString(c) {
			c = re.ReplaceAllString(c, line)
		} else {
			c += "\n" + line + "\n"
		}
	}
	return os.WriteFile(filepath.Join(e.etc, "upgrade.conf"), []byte(c), 0o600)
}

func (e *env) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(roleName, e.password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(e.srv.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (e *env) owCmd(ctx context.Context, args ...string) *exec.Cmd {
	return e.owCmdSecrets(ctx, filepath.Join(e.etc, "secrets.env"), args...)
}

// owCmdSecrets runs the binary with the benchmark's files, never the host's:
// the journal (and clone.timing next to it) in the work directory.
func (e *env) owCmdSecrets(ctx context.Context, secrets string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, e.ow, append([]string{"--config", filepath.Join(e.etc, "upgrade.conf"), "--secrets", secrets,
		"--journal", filepath.Join(e.varlib, "upgrade.state")}, args...)...)
	c.Env = e.baseEnv
	return c
}

// pgInfo reads the server's version and the settings that bear on what is
// measured, as the server reports them.
func (e *env) pgInfo(ctx context.Context) (version, settings string) {
	conn, err := pgx.Connect(ctx, e.srv.SuperURL("postgres"))
	if err != nil {
		return "?", "?"
	}
	defer conn.Close(ctx)
	conn.QueryRow(ctx, "SHOW server_version").Scan(&version)
	conn.QueryRow(ctx, `SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY array_position($1, name::text))
		FROM pg_settings WHERE name = ANY($1)`, []string{"fsync", "full_page_writes", "synchronous_commit", "wal_sync_method", "shared_buffers", "max_wal_size"}).Scan(&settings)
	return version, settings
}

// dataFS names the file system holding the server's data directory (a
// clone copies files there).
func (e *env) dataFS(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", e.srv.SocketDir).Output()
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(out)), " on ")
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
	approach string // A, B-file, B-clone, D, P, F; B for the no-op upgrade
	level    string // B: BACKUP_COMPRESSION
}

// restorePointMode is the RESTORE_POINT a B variant runs with: B-file
// insists on a file; B-clone runs the shipped default (auto), and measure
// fails unless it took a clone.
func restorePointMode(approach string) string {
	switch approach {
	case "B-file":
		return "file"
	case "B-clone":
		return "auto"
	}
	return ""
}

type sample struct {
	Approach  string  `json:"approach"`
	Level     string  `json:"level,omitempty"`
	Noop      bool    `json:"noop"`
	Size      int     `json:"size"`
	Rep       int     `json:"rep"`
	Downtime  float64 `json:"downtime_s"`
	Wall      float64 `json:"wall_s"`
	DumpBytes int64   `json:"restore_point_bytes"` // B-clone: the file the export wrote
	MaxRSSKB  int64   `json:"peak_rss_kb"`
	Copied    int64   `json:"copied_bytes,omitempty"`
	// B: RESTORE_POINT in upgrade.conf, and what the binary took (from its
	// output, checked against the files and databases left behind).
	Mode         string `json:"restore_point_mode,omitempty"`
	RestorePoint string `json:"restore_point_kind,omitempty"` // file or clone
	// B-clone: CREATE DATABASE … TEMPLATE as the binary timed it ("taken in").
	CloneSeconds float64 `json:"clone_s,omitempty"`
	// CloneCost: what the binary says the clone cost on the file system
	// (shared blocks, or a copy, and the bytes written).
	CloneCost string `json:"clone_cost,omitempty"`
	// B (pending): the recorded systemctl start to the helper's exit (the
	// helper's `backup --export`, in the foreground without systemd), and
	// to the export's first line ("exporting the clone restore point").
	ExportSeconds float64 `json:"export_s,omitempty"`
	ExportStart   float64 `json:"export_start_after_start_s,omitempty"`
	// B (pending): the preflight's rehearsal (REHEARSE=auto as shipped),
	// before the stop: its first line to its result line as they arrived,
	// the copy's size on the server, and the migrations' time on the copy
	// (the downtime estimate the preflight prints).
	RehearsalSeconds  float64 `json:"rehearsal_s,omitempty"`
	RehearsalCopy     int64   `json:"rehearsal_copy_bytes,omitempty"`
	RehearsalEstimate float64 `json:"rehearsal_estimate_s,omitempty"`
	// B-file: the downtime in parts (seconds, by fileParts' names), from
	// the recorded stop and start and the lines of the helper's output as
	// they arrived, and the binary's own times of the dump, sync and
	// verification (its backup line).
	Parts map[string]float64 `json:"b_file_parts,omitempty"`
	// B-file: the file as the downtime left it, and its compression after
	// the start (`openwatch backup --export`, timed here in the
	// foreground), when it was left uncompressed.
	DowntimeBytes   int64   `json:"restore_point_downtime_bytes,omitempty"`
	CompressSeconds float64 `json:"compress_s,omitempty"`
}

// fileParts names B-file's downtime parts, in order.
var fileParts = []struct{ key, what string }{
	{"before", "`systemctl stop` → the dump starts: the helper, `openwatch migrate` starting, its connection, schema state, migration lock, the restore point's checks (directory, lock, free space)"},
	{"dump", "pg_dump (as the binary times it)"},
	{"sync", "the final fsync of the file (its pages were handed to the disk while pg_dump wrote)"},
	{"verify", "the verification (`pg_restore --list`)"},
	{"place", "rename into place, directory fsync, the binary's lines"},
	{"migrate", "the migration (dbmate), its checksum, the journal"},
	{"start", "`openwatch migrate` exits → `systemctl start`: the helper's journal and checks"},
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

// systemctlLog is what the recording systemctl wrote: the last stop and
// start (Unix nanoseconds, 0 when absent), and whether a restart was asked.
type systemctlLog struct {
	stop, start int64
	restart     bool
	text        string
}

func (e *env) readSystemctl() (systemctlLog, error) {
	b, err := os.ReadFile(e.sysLog)
	if err != nil && !os.IsNotExist(err) {
		return systemctlLog{}, err
	}
	l := systemctlLog{text: string(b)}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "stop":
			l.stop = ns
		case "start":
			l.start = ns
		case "try-restart", "restart":
			l.restart = true
		}
	}
	return l, nil
}

// downtime is stop → start, or 0 for a try-restart (the restart every
// approach pays; the recorder takes none).
func (l systemctlLog) downtime() (float64, error) {
	switch {
	case l.stop != 0 && l.start > l.stop:
		return float64(l.start-l.stop) / 1e9, nil
	case l.stop == 0 && l.start == 0 && l.restart:
		return 0, nil
	}
	return 0, fmt.Errorf("systemctl log has no stop/start pair:\n%s", l.text)
}

// lineLog keeps a command's output with the time each line arrived.
type lineLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	lines   []timedLine
}

type timedLine struct {
	at   time.Time
	text string
}

func (l *lineLog) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, timedLine{now, string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

// first is the first line matching re, and its submatches.
func (l *lineLog) first(re *regexp.Regexp) (timedLine, []string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range append(l.lines, timedLine{text: string(l.partial)}) {
		if m := re.FindStringSubmatch(t.text); m != nil {
			return t, m, true
		}
	}
	return timedLine{}, nil, false
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// What the binary says about the restore point it took (internal/cli): a
// clone, or a file's path; and the export's first line.
var (
	cloneLineRE = regexp.MustCompile(`restore point: (` + regexp.QuoteMeta(clone.Prefix) + `[0-9a-z_]+), a clone of the database taken in (\S+)`)
	cloneCostRE = regexp.MustCompile(`taken in \S+ \(([^)]*)\)`)
	fileLineRE  = regexp.MustCompile(`^restore point: (/\S+)$`)
	// The backup's last line (internal/dump), its first progress line, and
	// the migration's last line.
	backupLineRE  = regexp.MustCompile(`^backup: (/\S+) in (\S+) \(pg_dump --compress=(\S+) (\S+), sync (\S+), verify (\S+)\)`)
	backupStartRE = regexp.MustCompile(`^backup: started`)
	appliedLineRE = regexp.MustCompile(`^applied \d+ migration\(s\); schema now at `)
	deferredRE    = regexp.MustCompile(`(?m)^backup: .*; uncompressed, to be compressed once the service runs`)
	// The preflight's rehearsal: its first line, the copy, its result.
	rehearsalStartRE = regexp.MustCompile(`^rehearsal: copying database `)
	rehearsalCopyRE  = regexp.MustCompile(`^rehearsal: copied in \S+; the copy takes ([0-9.]+) (B|KiB|MiB|GiB|TiB) on the database server$`)
	rehearsalDoneRE  = regexp.MustCompile(`^preflight: rehearsal: all \d+ migration\(s\) succeeded on a copy of the database`)
	rehearsalEstRE   = regexp.MustCompile(`^preflight: estimated downtime: (\S+) for the migrations`)
	exportLineRE     = regexp.MustCompile(`^exporting the clone restore point (` + regexp.QuoteMeta(clone.Prefix) + `[0-9a-z_]+) to `)
)

// clones lists the databases named like clones (clone.Prefix), with or
// without openwatch's record, and like a rehearsal's scratch database
// (rehearse.Prefix).
func (e *env) clones(ctx context.Context) ([]string, error) {
	conn, err := pgx.Connect(ctx, e.srv.SuperURL("postgres"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1) OR starts_with(datname, $2) ORDER BY 1", clone.Prefix, rehearse.Prefix)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
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
	case "B", "B-file", "B-clone":
		s.Mode = restorePointMode(v.approach)
		if noop {
			s.Mode = confValue(e.confBase, "RESTORE_POINT") // as shipped
		}
		if err := e.writeConf(v.level, s.Mode); err != nil {
			return s, err
		}
		c := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", nsScript)
		c.Env = e.baseEnv
		var out lineLog
		c.Stdout, c.Stderr = &out, &out
		t0 := time.Now()
		err := c.Run()
		exited := time.Now()
		s.Wall = exited.Sub(t0).Seconds()
		if err != nil {
			return s, fmt.Errorf("upgrade helper: %v\n%s", err, out.String())
		}
		s.MaxRSSKB = maxRSS(c.ProcessState)
		if err := e.checkB(ctx, &s, &out, exited, keep); err != nil {
			return s, fmt.Errorf("%w\nhelper output:\n%s", err, out.String())
		}
	}
	ok, err := e.applied(ctx)
	if err != nil {
		return s, err
	}
	if !ok {
		return s, fmt.Errorf("the migration was not applied")
	}
	l, err := e.readSystemctl()
	if err != nil {
		return s, err
	}
	if s.Downtime, err = l.downtime(); err != nil {
		return s, err
	}
	return s, nil
}

// checkB checks what a run of the helper left behind against what the
// variant is meant to measure, and fills in the restore point and the
// export: a row must never measure another path than its name says.
func (e *env) checkB(ctx context.Context, s *sample, out *lineLog, exited time.Time, keep bool) error {
	files, err := filepath.Glob(filepath.Join(e.backups, dump.FileGlob))
	if err != nil {
		return err
	}
	left, err := e.clones(ctx)
	if err != nil {
		return err
	}
	if len(left) != 0 {
		return fmt.Errorf("clone or scratch databases left on the server after the helper: %s", strings.Join(left, ", "))
	}
	if strings.Contains(out.String(), "could not be exported") {
		return fmt.Errorf("the helper could not export the clone restore point")
	}
	cloneAt, cloneLine, isClone := out.first(cloneLineRE)
	_, fileLine, isFile := out.first(fileLineRE)
	if s.Noop {
		if len(files) != 0 || isClone || isFile {
			return fmt.Errorf("no-op upgrade took a restore point")
		}
		return nil
	}
	if len(files) != 1 {
		return fmt.Errorf("want one restore point file in %s, found %d", e.backups, len(files))
	}
	if s.Level == e.defLevel && !e.noRehearse {
		if err := rehearsal(s, out); err != nil {
			return err
		}
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		return err
	}
	s.DumpBytes = fi.Size()
	l, err := e.readSystemctl()
	if err != nil {
		return err
	}
	if l.start == 0 {
		return fmt.Errorf("the helper did not start the service:\n%s", l.text)
	}
	started := time.Unix(0, l.start)
	s.ExportSeconds = exited.Sub(started).Seconds()
	switch s.Approach {
	case "B-file":
		if isClone || !isFile || fileLine[1] != files[0] {
			return fmt.Errorf("B-file (RESTORE_POINT=file): the binary did not report the file %s as its restore point", files[0])
		}
		s.RestorePoint = "file"
		if err := e.fileParts(ctx, s, out, l, files[0]); err != nil {
			return err
		}
		if keep {
			return os.Rename(files[0], filepath.Join(e.keep, "level-"+s.Level+".dump"))
		}
		return nil
	case "B-clone":
		if !isClone || isFile {
			return fmt.Errorf("B-clone (RESTORE_POINT=%s): the binary took no clone", s.Mode)
		}
		s.RestorePoint = "clone"
		name := cloneLine[1]
		if !clone.IsName(name) {
			return fmt.Errorf("%q is not a clone's name", name)
		}
		took, err := time.ParseDuration(strings.TrimSuffix(cloneLine[2], ","))
		if err != nil {
			return fmt.Errorf("the clone's time %q: %w", cloneLine[2], err)
		}
		s.CloneSeconds = took.Seconds()
		if m := cloneCostRE.FindStringSubmatch(cloneAt.text); m != nil {
			s.CloneCost = m[1]
		}
		// The export: after systemctl start, of this clone, into exactly
		// one file named for it, which pg_restore reads as a dump of the
		// clone; the clone is gone (checked above).
		exp, m, ok := out.first(exportLineRE)
		if !ok || m[1] != name {
			return fmt.Errorf("the helper did not export the clone %s in the foreground", name)
		}
		if !exp.at.After(started) {
			return fmt.Errorf("the export of %s started at %s, not after systemctl start at %s", name, exp.at.Format(time.RFC3339Nano), started.Format(time.RFC3339Nano))
		}
		s.ExportStart = exp.at.Sub(started).Seconds()
		rps, err := dump.List(e.backups)
		if err != nil || len(rps) != 1 {
			return fmt.Errorf("dump.List(%s): %d restore points, %v", e.backups, len(rps), err)
		}
		if want, _ := clone.Name(rps[0].SchemaVersion, rps[0].Created); want != name {
			return fmt.Errorf("the exported file %s is named for the clone %s, not %s", rps[0].Name, want, name)
		}
		list, err := exec.CommandContext(ctx, "pg_restore", "--list", files[0]).Output()
		if err != nil {
			return fmt.Errorf("pg_restore --list %s: %w", files[0], err)
		}
		if !regexp.MustCompile(`(?m)^;\s+dbname: ` + regexp.QuoteMeta(name) + `$`).Match(list) {
			return fmt.Errorf("pg_restore --list %s: not a dump of the database %s", files[0], name)
		}
		return nil
	}
	return fmt.Errorf("measure: unknown variant %s", s.Approach)
}

// fileParts splits B-file's downtime into its parts and, when the binary
// left the file uncompressed, compresses it as the helper does after the
// start (`openwatch backup --export`, here in the foreground, timed), checks
// that the file under the same name is then compressed and reads as an
// archive, and records both sizes.
func (e *env) fileParts(ctx context.Context, s *sample, out *lineLog, l systemctlLog, file string) error {
	started, _, ok1 := out.first(backupStartRE)
	_, m, ok2 := out.first(backupLineRE)
	restorePoint, _, ok3 := out.first(fileLineRE)
	applied, _, ok4 := out.first(appliedLineRE)
	if !ok1 || !ok2 || !ok3 || !ok4 || m[1] != file {
		return fmt.Errorf("B-file: the output lacks the backup's lines or the migration's")
	}
	dur := func(v string) float64 {
		d, err := time.ParseDuration(v)
		if err != nil {
			return math.NaN()
		}
		return d.Seconds()
	}
	dumped, sync, verify := dur(m[4]), dur(m[5]), dur(m[6])
	stop, start := time.Unix(0, l.stop), time.Unix(0, l.start)
	s.Parts = map[string]float64{
		"before":  started.at.Sub(stop).Seconds(),
		"dump":    dumped,
		"sync":    sync,
		"verify":  verify,
		"place":   restorePoint.at.Sub(started.at).Seconds() - dumped - sync - verify,
		"migrate": applied.at.Sub(restorePoint.at).Seconds(),
		"start":   start.Sub(applied.at).Seconds(),
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	s.DowntimeBytes = fi.Size()
	if !deferredRE.MatchString(out.String()) {
		return nil // written as it stays (BACKUP_COMPRESSION=0, or compressed while it was written)
	}
	c := e.owCmd(ctx, "backup", "--export")
	t0 := time.Now()
	o, err := c.CombinedOutput()
	s.CompressSeconds = time.Since(t0).Seconds()
	if err != nil || !strings.Contains(string(o), "compressed "+file) {
		return fmt.Errorf("openwatch backup --export did not compress %s: %v\n%s", file, err, o)
	}
	if fi, err = os.Stat(file); err != nil {
		return err
	}
	s.DumpBytes = fi.Size()
	if compressed, err := dump.ArchiveCompressed(file); err != nil || !compressed {
		return fmt.Errorf("%s after backup --export: compressed %v, %v", file, compressed, err)
	}
	if err := exec.CommandContext(ctx, "pg_restore", "--list", file).Run(); err != nil {
		return fmt.Errorf("pg_restore --list %s after the compression: %w", file, err)
	}
	return nil
}

// rehearsal fills in the preflight's rehearsal from the helper's output; the
// role has CREATEDB and the database is small, so REHEARSE=auto must have
// rehearsed (and left no scratch database: checked with the clones).
func rehearsal(s *sample, out *lineLog) error {
	start, _, ok1 := out.first(rehearsalStartRE)
	_, cp, ok2 := out.first(rehearsalCopyRE)
	done, _, ok3 := out.first(rehearsalDoneRE)
	_, est, ok4 := out.first(rehearsalEstRE)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return fmt.Errorf("the preflight did not rehearse the migration (REHEARSE=auto, CREATEDB)")
	}
	s.RehearsalSeconds = done.at.Sub(start.at).Seconds()
	n, _ := strconv.ParseFloat(cp[1], 64)
	s.RehearsalCopy = int64(n * float64(map[string]int64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[cp[2]]))
	d, err := time.ParseDuration(est[1])
	if err != nil {
		return fmt.Errorf("the rehearsal's estimate %q: %w", est[1], err)
	}
	s.RehearsalEstimate = d.Seconds()
	return nil
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
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	c.Stderr = &stderr
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
// could buy), each into an empty database; and openwatch restore --yes of a
// clone, the swap by renaming, into the benchmark's own database.
func (e *env) restores(ctx context.Context, o options) ([]restoreSample, error) {
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
	jobs := []job{{kind: "plain"}, {kind: "swap"}}
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
			// Plain, the swap and the default are repeated; alternatives run once.
			if rep > 0 && !(j.kind == "plain" || j.kind == "swap" || (j.kind == "openwatch" && j.level == e.defLevel)) {
				continue
			}
			if j.kind == "swap" {
				d, rss, err := e.swapRestore(ctx)
				if err != nil {
					return nil, err
				}
				out = append(out, restoreSample{Kind: j.kind, Rep: rep, Seconds: d, MaxRSSKB: rss})
				logf("  restore %-10s         rep %d: %.3fs", j.kind, rep+1, d)
				continue
			}
			if err := e.freshRestoreDB(ctx); err != nil {
				return nil, err
			}
			var c *exec.Cmd
			switch j.kind {
			case "plain":
				c = exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", filepath.Join(e.keep, "plain.sql"))
				c.Env = env
			case "openwatch":
				c = e.owCmdSecrets(ctx, rtSecrets, "restore", "--yes", filepath.Join(e.keep, "level-"+j.level+".dump"))
				c.Env = env
			case "pg_restore":
				c = exec.CommandContext(ctx, "pg_restore", "--no-owner", "--exit-on-error", "-j", strconv.Itoa(j.jobs), "-d", rtDB, filepath.Join(e.keep, "level-"+j.level+".dump"))
				c.Env = env
			}
			d, rss, err := e.timed(ctx, c)
			if err != nil {
				return nil, err
			}
			out = append(out, restoreSample{Kind: j.kind, Level: j.level, Jobs: j.jobs, Rep: rep, Seconds: d, MaxRSSKB: rss})
			logf("  restore %-10s %-3s %s rep %d: %.2fs", j.kind, j.level, map[bool]string{true: fmt.Sprintf("-j%d", j.jobs), false: "   "}[j.jobs > 0], rep+1, d)
		}
	}
	e.super(ctx, "postgres", "DROP DATABASE IF EXISTS "+rtDB+" WITH (FORCE)")
	return out, nil
}

// What `openwatch restore` of a clone says about the database it swapped
// out (internal/cli restoreClone): clone.KeptName(db, time), whose prefix is
// the name without its time.
var keptRE = regexp.MustCompile(`Drop it once you no longer need it: DROP DATABASE "?(` +
	regexp.QuoteMeta(strings.TrimRight(clone.KeptName(dbName, time.Unix(0, 0)), "0123456789tz")) + `[0-9]{8}t[0-9]{6}z)"?;`)

// swapRestore takes a fresh clone with the binary (`openwatch migrate` with
// RESTORE_POINT=clone, at the previous head: the clone, then the
// migration), times `openwatch restore --yes <clone>`, checks that the
// database is the clone again (the migration undone) and drops the database
// the swap kept aside, by the name the output gives.
func (e *env) swapRestore(ctx context.Context) (float64, int64, error) {
	if err := e.toPending(ctx); err != nil {
		return 0, 0, err
	}
	if err := e.writeConf(e.defLevel, "clone"); err != nil {
		return 0, 0, err
	}
	out, err := e.owCmd(ctx, "migrate").CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("openwatch migrate (RESTORE_POINT=clone): %v\n%s", err, out)
	}
	m := cloneLineRE.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("openwatch migrate (RESTORE_POINT=clone) took no clone:\n%s", out)
	}
	name := string(m[1])
	if ok, err := e.applied(ctx); err != nil || !ok {
		return 0, 0, fmt.Errorf("openwatch migrate did not apply the migration (%v):\n%s", err, out)
	}
	if err := e.super(ctx, "postgres", "CHECKPOINT"); err != nil {
		return 0, 0, err
	}
	var stdout bytes.Buffer
	c := e.owCmd(ctx, "restore", "--yes", name)
	c.Stdout = &stdout
	d, rss, err := e.timed(ctx, c)
	if err != nil {
		return d, rss, err
	}
	k := keptRE.FindStringSubmatch(stdout.String())
	if k == nil {
		return d, rss, fmt.Errorf("openwatch restore --yes %s names no database kept aside:\n%s", name, stdout.String())
	}
	if err := e.super(ctx, "postgres", "DROP DATABASE "+pgx.Identifier{k[1]}.Sanitize()); err != nil {
		return d, rss, fmt.Errorf("drop the database the swap kept aside, %s: %w", k[1], err)
	}
	if left, err := e.clones(ctx); err != nil || len(left) != 0 {
		return d, rss, fmt.Errorf("after the swap: clones %v left (%v)", left, err)
	}
	if ok, err := e.applied(ctx); err != nil || ok {
		return d, rss, fmt.Errorf("after the swap the database is not the clone taken before the migration (migration applied: %v, %v)", ok, err)
	}
	return d, rss, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
