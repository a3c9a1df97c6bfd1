// Package pgtest starts a throwaway PostgreSQL server for tests: initdb into a
// temporary directory as the postgres user, a free port on 127.0.0.1, scram
// password authentication everywhere, removed afterwards.
//
// One server per test binary is the intended use:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		db := pgtest.Shared(t).NewDatabase(t)
//		... db.URL, db.KeywordValue(), db.Password ...
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL cluster owned by the test process.
type Server struct {
	Host          string // 127.0.0.1
	Port          int
	SocketDir     string // unix socket directory
	SuperUser     string // "postgres"
	SuperPassword string
	BinDir        string
	Root          string // the root directory the server runs chrooted in ("": this machine's)
	VersionNum    int    // server_version_num, e.g. 170002
	dir           string // temp dir holding data/, socket and log
	seq           atomic.Int64
}

// Database is a fresh database owned by a fresh login role.
type Database struct {
	Server   *Server
	Name     string
	User     string
	Password string // contains characters that need quoting in URLs and DSNs
}

var shared *Server

// Main starts one server, runs the tests, stops and removes the server, and
// returns the exit code for os.Exit.
func Main(m *testing.M) int {
	s, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	shared = s
	code := m.Run()
	s.Stop()
	return code
}

// Shared returns the server started by Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	if shared == nil {
		t.Fatal("pgtest: no server; call os.Exit(pgtest.Main(m)) from TestMain")
	}
	return shared
}

// BinDir finds the PostgreSQL server binaries: $PG_BINDIR, else the newest
// /usr/lib/postgresql/N/bin.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (run make test as root to install postgresql, or set PG_BINDIR)")
}

// StartOptions configure StartWith.
type StartOptions struct {
	// Dir is the directory the cluster's temp dir (data directory, socket,
	// log) is made in; "" means os.TempDir(). A test of what a file system
	// does puts the server on it this way.
	Dir string
	// Root runs the server chrooted in a root directory holding another
	// PostgreSQL (CachedRoot), with BinDir the major's directory there,
	// while the test and its clients run here. Its temp dir is
	// bind-mounted at the same path inside, so the socket and data
	// directory have one path for both.
	Root string

	// Fsync runs the server as a benchmark of clones and dumps must
	// measure it: durable, with PostgreSQL's defaults fsync=on and
	// full_page_writes=on (and initdb syncing its files), and autovacuum
	// at its default settings. Start turns fsync and full_page_writes
	// off, which tests do not need, and runs autovacuum aggressively
	// (Autovacuum).
	Fsync bool
}

// Autovacuum are the settings of a test server's autovacuum: a worker
// every second on every database where one row changed, so that tests meet
// at their sizes what real sizes meet at default settings, such as an
// autovacuum worker (a session of no role the database's owner may end)
// on a freshly loaded database.
var Autovacuum = []string{
	"autovacuum=on", "autovacuum_naptime=1s",
	"autovacuum_vacuum_threshold=1", "autovacuum_vacuum_scale_factor=0",
	"autovacuum_analyze_threshold=1", "autovacuum_analyze_scale_factor=0",
	"autovacuum_vacuum_insert_threshold=1", "autovacuum_vacuum_insert_scale_factor=0", // PostgreSQL 13+
	"autovacuum_vacuum_cost_delay=0",
}

// Start initialises and starts a new cluster with fsync=off,
// full_page_writes=off and aggressive autovacuum (Autovacuum).
func Start() (*Server, error) { return StartWith(StartOptions{}) }

// StartWith initialises and starts a new cluster as o says.
func StartWith(o StartOptions) (*Server, error) {
	var bin string
	var uid, gid int
	var err error
	if o.Root != "" {
		if bin, err = rootBinDir(o.Root); err != nil {
			return nil, err
		}
		if uid, gid, err = rootUser(o.Root, "postgres"); err != nil {
			return nil, err
		}
	} else {
		if bin, err = BinDir(); err != nil {
			return nil, err
		}
		pg, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("the postgres system user is needed to run initdb: %w", err)
		}
		uid, _ = strconv.Atoi(pg.Uid)
		gid, _ = strconv.Atoi(pg.Gid)
	}

	dir, err := os.MkdirTemp(o.Dir, "pgtest-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("chown %s to postgres (tests need root): %w", dir, err)
	}
	s := &Server{Host: "127.0.0.1", SocketDir: dir, SuperUser: "postgres", SuperPassword: randomPassword(), BinDir: bin, Root: o.Root, dir: dir}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(s.SuperPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	os.Chown(pwfile, uid, gid)
	data := filepath.Join(dir, "data")
	initdb := []string{"-D", data, "-U", "postgres", "--auth=scram-sha-256", "--pwfile=" + pwfile, "--encoding=UTF8", "--locale=C.UTF-8"}
	durability := "-c fsync=on -c full_page_writes=on"
	if !o.Fsync {
		initdb = append(initdb, "--no-sync")
		durability = "-c fsync=off -c full_page_writes=off"
		for _, setting := range Autovacuum {
			durability += " -c " + setting
		}
	}
	if out, err := s.asPostgres(filepath.Join(bin, "initdb"), initdb...); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)

	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s %s -c max_connections=100", port, dir, durability)
		out, err := s.asPostgres(filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			break
		}
		if attempt == 3 {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
		}
	}
	if err := s.checkVersion(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// MajorVar, when set, is the PostgreSQL major the tests must run against
// (scripts/pg-matrix.sh sets it for each root): a server of another major
// fails the start instead of testing the wrong version. Not a PG* name:
// the binary, run in-process by some tests, clears those.
const MajorVar = "OPENWATCH_TEST_MAJOR"

func (s *Server) checkVersion() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.SuperURL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "select current_setting('server_version_num')::int").Scan(&s.VersionNum); err != nil {
		return fmt.Errorf("read server_version_num: %w", err)
	}
	if want := os.Getenv(MajorVar); want != "" && s.Root == "" && want != strconv.Itoa(s.Major()) {
		return fmt.Errorf("%s=%s, but the server in %s is PostgreSQL %d", MajorVar, want, s.BinDir, s.Major())
	}
	return nil
}

// Major is the server's major version (13, …, 18).
func (s *Server) Major() int { return s.VersionNum / 10000 }

// CacheDir holds the roots scripts/pg-roots.sh builds, one per major:
// $OPENWATCH_TEST_CACHE, default /var/cache/openwatch-test.
func CacheDir() string {
	if d := os.Getenv("OPENWATCH_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/openwatch-test"
}

// CachedRoot is the root holding PostgreSQL major, built by
// scripts/pg-roots.sh; a missing one is an error naming the command that
// builds it.
func CachedRoot(major int) (string, error) {
	root := filepath.Join(CacheDir(), fmt.Sprintf("pg-%d", major))
	if _, err := os.Stat(filepath.Join(root, ".openwatch-test-root")); err != nil {
		return "", fmt.Errorf("no PostgreSQL %d test root in %s (make test builds it; or run as root: sh scripts/pg-roots.sh %d)", major, root, major)
	}
	return root, nil
}

// rootBinDir is the one major's server directory in root.
func rootBinDir(root string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(root, "usr/lib/postgresql/*/bin/initdb"))
	if len(dirs) != 1 {
		return "", fmt.Errorf("%s holds %d PostgreSQL servers, want 1", root, len(dirs))
	}
	return strings.TrimPrefix(filepath.Dir(dirs[0]), root), nil
}

// rootUser looks name up in root's /etc/passwd.
func rootUser(root, name string) (uid, gid int, err error) {
	b, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err := errors.Join(err1, err2); err != nil {
				return 0, 0, fmt.Errorf("%s/etc/passwd: %s: %w", root, name, err)
			}
			return uid, gid, nil
		}
	}
	return 0, 0, fmt.Errorf("%s/etc/passwd has no %s user", root, name)
}

// Stop stops the server and removes its files.
func (s *Server) Stop() {
	s.asPostgres(filepath.Join(s.BinDir, "pg_ctl"), "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(s.dir)
}

// Log returns the server log, for test failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	return string(b)
}

func (s *Server) asPostgres(name string, args ...string) ([]byte, error) {
	argv := append([]string{"runuser", "-u", "postgres", "--", name}, args...)
	if s.Root != "" {
		// A private mount namespace, left when the postmaster exits.
		argv = append([]string{"unshare", "-m", "sh", "-c", `r=$1 d=$2 && shift 2 &&
			mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" && mount -t tmpfs tmpfs "$r/tmp" && mkdir -p "$r$d" && mount --bind "$d" "$r$d" &&
			exec chroot "$r" "$@"`, "sh", s.Root, s.dir}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// SuperURL is a URL DSN for the superuser and the given database.
func (s *Server) SuperURL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(s.SuperUser, s.SuperPassword),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Exec runs SQL as the superuser in database db.
func (s *Server) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, s.SuperURL(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// NewDatabase creates a database and an owning login role with a password full
// of characters that need quoting; both are dropped when the test ends.
func (s *Server) NewDatabase(t testing.TB) *Database {
	t.Helper()
	n := s.seq.Add(1)
	d := &Database{Server: s, Name: fmt.Sprintf("ow_db_%d_%d", os.Getpid(), n), User: fmt.Sprintf("ow_user_%d_%d", os.Getpid(), n),
		Password: "p a$s'w\"o\\r:d@/?#%" + randomPassword()[:8]}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Exec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", pgx.Identifier{d.User}.Sanitize(), quoteLiteral(d.Password))); err != nil {
		t.Fatalf("create role: %v", err)
	}
	if err := s.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{d.Name}.Sanitize(), pgx.Identifier{d.User}.Sanitize())); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Exec(ctx, "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{d.Name}.Sanitize()))
		s.Exec(ctx, "postgres", fmt.Sprintf("DROP ROLE IF EXISTS %s", pgx.Identifier{d.User}.Sanitize()))
	})
	return d
}

// URL is a postgres:// DSN (sslmode=disable) for the database's owner.
func (d *Database) URL() string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(d.User, d.Password),
		Host: net.JoinHostPort(d.Server.Host, strconv.Itoa(d.Server.Port)), Path: "/" + d.Name, RawQuery: "sslmode=disable"}
	return u.String()
}

// KeywordValue is a keyword/value DSN (sslmode=disable) for the database's owner.
func (d *Database) KeywordValue() string {
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s password=%s sslmode=disable",
		d.Server.Host, d.Server.Port, d.Name, d.User, kvQuote(d.Password))
}

// SocketKeywordValue connects over the server's unix socket.
func (d *Database) SocketKeywordValue() string {
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s password=%s sslmode=disable",
		d.Server.SocketDir, d.Server.Port, d.Name, d.User, kvQuote(d.Password))
}

// Conn opens a connection as the database owner, closed at test end.
func (d *Database) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, d.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// IdleInTransaction opens a session named app (its application_name) that
// runs sql in a transaction it leaves open, holding sql's locks, as a report
// job or a forgotten psql session would. It returns the session, on which
// "rollback" releases them, and its backend pid. The session is closed at
// test end.
func (d *Database) IdleInTransaction(t testing.TB, app, sql string) (*pgx.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := d.Conn(t)
	var pid int
	if _, err := c.Exec(ctx, "set application_name = "+quoteLiteral(app)); err != nil {
		t.Fatalf("set application_name: %v", err)
	}
	if err := c.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("pg_backend_pid: %v", err)
	}
	if _, err := c.Exec(ctx, "begin; "+sql); err != nil {
		t.Fatalf("begin; %s: %v", sql, err)
	}
	return c, pid
}

// QueryString runs sql as the database owner and returns its single value as
// text; any error fails the test.
func (d *Database) QueryString(t testing.TB, sql string) string {
	t.Helper()
	var s string
	c := d.Conn(t)
	defer c.Close(context.Background()) // no session lingers until the test ends
	if err := c.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// MustExec runs sql as the database owner; any error fails the test.
func (d *Database) MustExec(t testing.TB, sql string) {
	t.Helper()
	c := d.Conn(t)
	defer c.Close(context.Background()) // no session lingers until the test ends
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func kvQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
