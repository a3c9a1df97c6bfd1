package clone

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/openwatch/openwatch/internal/progress"
)

// Mode is the operator's choice of restore point (upgrade.conf RESTORE_POINT).
type Mode string

const (
	ModeAuto  Mode = "auto"  // a clone where it is safe and its free space is known, else a file
	ModeClone Mode = "clone" // a clone even where the free space cannot be checked
	ModeFile  Mode = "file"  // always a file
)

// ParseMode parses RESTORE_POINT; "" is auto.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ModeAuto, nil
	case ModeAuto, ModeClone, ModeFile:
		return m, nil
	}
	return "", fmt.Errorf("RESTORE_POINT=%q is not one of auto, clone, file", s)
}

// Options configure Eligible.
type Options struct {
	Mode Mode // "" is auto
	// Running is set by the preflight, while the service still runs: its
	// sessions are expected, and only the service being stopped decides
	// whether others remain. Everything else is checked as for the clone.
	Running bool
}

// The two kinds of restore point.
const (
	MethodClone = "clone"
	MethodFile  = "file"
)

// Decision says which restore point to take and why.
type Decision struct {
	Method string // MethodClone or MethodFile
	// Reason is, for a file, why not a clone; for a clone, what was not
	// checked ("" when everything was).
	Reason       string
	SpaceChecked bool
	Space        Space // when SpaceChecked
}

// Space is the free-space check of a clone.
type Space struct {
	Dir    string // the database's directory on the server, resolved
	Free   int64  // bytes available to unprivileged users (PostgreSQL is one)
	Total  int64  // the file system's size
	DBSize int64  // pg_database_size: what the clone takes
	Need   int64  // DBSize plus the margin that must stay free
}

// The margin that must remain free after a clone: 10% of the file system,
// at least 1 GiB. After the clone the upgrade migrates the database (a table
// rewrite needs room for a second copy of the table) and PostgreSQL writes
// WAL (max_wal_size is 1 GB by default, and WAL can outgrow it between
// checkpoints); a server that cannot write WAL stops. Keeping 10% free also
// keeps the file system out of the 90%-full range where monitoring alarms
// and file systems slow down.
const (
	marginPercent = 10
	marginMin     = 1 << 30
)

// needSpace is the room a clone of dbSize bytes needs on a file system of
// total bytes, and whether free bytes are enough.
func needSpace(free, total, dbSize int64) (need int64, ok bool) {
	margin := max(total/100*marginPercent, int64(marginMin))
	need = dbSize + margin
	return need, free >= need
}

func (s Space) String() string {
	return fmt.Sprintf("%s free in %s, a clone needs %s (the database's %s plus %d%% of the file system, at least %s, left free for the migration and WAL)",
		progress.Bytes(s.Free), s.Dir, progress.Bytes(s.Need), progress.Bytes(s.DBSize), marginPercent, progress.Bytes(marginMin))
}

// Eligible decides whether a clone restore point of the database conn is
// connected to is possible and safe now, and says why not otherwise. Call it
// after the service is stopped, and close conn before Create: a clone needs
// the database to have no other session. Establishing the free space reads
// the server's process data in /proc, which needs root and a server on this
// machine.
func Eligible(ctx context.Context, conn *pgx.Conn, opts Options) (Decision, error) {
	mode := opts.Mode
	if mode == "" {
		mode = ModeAuto
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return Decision{}, err
	}
	file := func(format string, a ...any) (Decision, error) {
		return Decision{Method: MethodFile, Reason: fmt.Sprintf(format, a...)}, nil
	}
	if mode == ModeFile {
		return file("RESTORE_POINT=file in the configuration")
	}
	var user, db, owner string
	var super, createdb bool
	err := conn.QueryRow(ctx, `select current_user, current_database(), r.rolsuper, r.rolcreatedb, pg_get_userbyid(d.datdba)
		from pg_roles r, pg_database d where r.rolname = current_user and d.datname = current_database()`).Scan(&user, &db, &super, &createdb, &owner)
	if err != nil {
		return Decision{}, fmt.Errorf("read the role's privileges: %w", err)
	}
	if !super && !createdb {
		return file("role %q lacks CREATEDB, which a clone needs (as a superuser: ALTER ROLE %s CREATEDB;)", user, ident(user))
	}
	if !super && owner != user {
		return file("role %q does not own database %q (%q does), which a clone needs", user, db, owner)
	}
	if n, apps, err := sessions(ctx, conn, db); err != nil {
		return Decision{}, err
	} else if n > 0 && !opts.Running {
		return file("%d other session(s) use database %q (applications: %s), and a clone needs none (stop the service first: %s)", n, db, strings.Join(apps, ", "), StopCommand)
	}
	props, err := readProperties(ctx, conn, db)
	if err != nil {
		return Decision{}, err
	}
	if err := dryRun(ctx, conn, db, props); err != nil {
		return file("role %q could not restore database %q's own properties after swapping a clone in: %v", user, db, err)
	}

	space, err := measureSpace(ctx, conn)
	return decideSpace(mode, space, err), nil
}

// decideSpace is the decision once everything but the free space allowed a
// clone: space is the measurement, or err why there is none.
func decideSpace(mode Mode, space Space, err error) Decision {
	if err != nil {
		if mode == ModeClone {
			return Decision{Method: MethodClone, Reason: "RESTORE_POINT=clone: the free space on the server was not checked: " + err.Error()}
		}
		return Decision{Method: MethodFile, Reason: fmt.Sprintf("the free space on the database server cannot be checked (%v), and a clone must not fill the server's disk (set RESTORE_POINT=clone to take clones without the check)", err)}
	}
	var ok bool
	if space.Need, ok = needSpace(space.Free, space.Total, space.DBSize); !ok {
		return Decision{Method: MethodFile, Reason: "not enough free space for a clone: " + space.String(), SpaceChecked: true, Space: space}
	}
	return Decision{Method: MethodClone, SpaceChecked: true, Space: space}
}

// measureSpace finds the file system(s) holding the database's files and
// returns the tightest.
func measureSpace(ctx context.Context, conn *pgx.Conn) (Space, error) {
	dirs, err := databaseDirs(ctx, conn)
	if err != nil {
		return Space{}, err
	}
	var size int64
	if err := conn.QueryRow(ctx, "select pg_database_size(current_database())").Scan(&size); err != nil {
		return Space{}, fmt.Errorf("read the database's size: %w", err)
	}
	var tightest Space
	for i, dir := range dirs {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return Space{}, fmt.Errorf("statfs %s: %w", dir, err)
		}
		s := Space{Dir: dir, Free: int64(st.Bavail) * st.Bsize, Total: int64(st.Blocks) * st.Bsize, DBSize: size}
		if resolved, err := filepath.EvalSymlinks(dir); err == nil {
			s.Dir = resolved
		}
		s.Need, _ = needSpace(s.Free, s.Total, s.DBSize)
		if i == 0 || s.Free-s.Need < tightest.Free-tightest.Need {
			tightest = s
		}
	}
	return tightest, nil
}

// databaseDirs returns the directories holding the database's files, as
// paths this process can statfs: through /proc/<postmaster>/cwd (the
// postmaster's working directory is its data directory) and
// /proc/<postmaster>/root, which work whatever mount namespace the server
// runs in. A database with tables in several tablespaces has several.
func databaseDirs(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	pm, err := postmaster(ctx, conn)
	if err != nil {
		return nil, err
	}
	proc := fmt.Sprintf("/proc/%d", pm)
	rows, err := conn.Query(ctx, `select d.oid, t.oid, pg_tablespace_location(t.oid)
		from pg_database d, pg_tablespace t
		where d.datname = current_database()
		  and (t.oid = d.dattablespace or t.oid in (select reltablespace from pg_class where reltablespace <> 0))
		order by t.oid`)
	if err != nil {
		return nil, fmt.Errorf("read the database's tablespaces: %w", err)
	}
	var dirs []string
	for rows.Next() {
		var dbOID, spcOID uint32
		var location string
		if err := rows.Scan(&dbOID, &spcOID, &location); err != nil {
			return nil, err
		}
		switch {
		case location != "":
			dirs = append(dirs, filepath.Join(proc, "root", location))
		case spcOID == 1664: // pg_global: shared catalogs, not the database's
		default:
			dirs = append(dirs, filepath.Join(proc, "cwd", "base", strconv.FormatUint(uint64(dbOID), 10)))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the database's tablespaces: %w", err)
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("the database's tablespaces have no location")
	}
	return dirs, nil
}

// postmaster finds the process ID of the server conn is connected to, when
// it runs on this machine: over a unix socket, from the socket's lock file
// (its first line is the postmaster's PID); over TCP to this machine's
// loopback, as the parent of our own backend, after checking that the
// backend sees our connection's port (so the PID is this machine's and not a
// container's). Either way the process's data directory must hold a
// postmaster.pid naming it and the port.
func postmaster(ctx context.Context, conn *pgx.Conn) (int, error) {
	cfg := conn.Config()
	host, port := cfg.Host, int(cfg.Port)
	var pm int
	switch {
	case strings.HasPrefix(host, "/"):
		lock := filepath.Join(host, fmt.Sprintf(".s.PGSQL.%d.lock", port))
		lines, err := readLines(lock, 1)
		if err != nil {
			return 0, fmt.Errorf("read the server's socket lock file: %w", err)
		}
		if pm, err = strconv.Atoi(strings.TrimSpace(lines[0])); err != nil || pm <= 0 {
			return 0, fmt.Errorf("%s: the first line is not the server's process ID", lock)
		}
	case isLoopback(host):
		local, ok := conn.PgConn().Conn().LocalAddr().(*net.TCPAddr)
		if !ok {
			return 0, fmt.Errorf("the connection to %s is not TCP", host)
		}
		var backend int
		var seen *int
		if err := conn.QueryRow(ctx, "select pg_backend_pid(), inet_client_port()").Scan(&backend, &seen); err != nil {
			return 0, fmt.Errorf("read the backend's process ID: %w", err)
		}
		if seen == nil || *seen != local.Port {
			return 0, fmt.Errorf("the server on %s does not see this connection's own port (a server in a container or behind a proxy?), so its files cannot be found from here", host)
		}
		var err error
		if pm, err = parentPID(backend); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("the server %s is not on this machine", host)
	}
	pidFile := fmt.Sprintf("/proc/%d/cwd/postmaster.pid", pm)
	lines, err := readLines(pidFile, 4)
	if errors.Is(err, fs.ErrPermission) {
		return 0, fmt.Errorf("the server's data directory is readable only by root: %w", err)
	}
	if err != nil {
		return 0, fmt.Errorf("find the server's data directory: %w", err)
	}
	if strings.TrimSpace(lines[0]) != strconv.Itoa(pm) || strings.TrimSpace(lines[3]) != strconv.Itoa(port) {
		return 0, fmt.Errorf("%s names process %s and port %s, not the server's %d and %d", pidFile, strings.TrimSpace(lines[0]), strings.TrimSpace(lines[3]), pm, port)
	}
	return pm, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parentPID(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read the server's backend process: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PPid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no PPid", pid)
}

// readLines returns the first n lines of a file, failing when it has fewer.
func readLines(path string, n int) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < n {
		return nil, fmt.Errorf("%s has %d lines, expected at least %d", path, len(lines), n)
	}
	return lines[:n], nil
}
