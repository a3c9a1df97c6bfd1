// Package e2e installs, upgrades, downgrades and removes the real .deb and
// .rpm with the real dpkg and rpm, in disposable copies of this machine,
// against a real PostgreSQL, and checks what an operator would see.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/pgtest"
)

var (
	pgBinDir string // PostgreSQL client tools the shims run
	pkgDir   string // built packages, bound read-only at /e2e-pkgs in every root
	repoRoot string
	// srcRoot is what the packages are built from: the working tree, or with
	// E2E_GIT_REV=<rev> a snapshot of that commit (a stable target while
	// others edit the tree).
	srcRoot string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if pgBinDir, err = pgtest.BinDir(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if repoRoot, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests install packages in disposable roots and need root (unshare, mount, chroot)")
		return 1
	}
	if pkgDir, err = os.MkdirTemp("", "openwatch-e2e-pkgs-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(pkgDir)
	srcRoot = repoRoot
	if rev := os.Getenv("E2E_GIT_REV"); rev != "" {
		if srcRoot, err = gitSnapshot(rev); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(srcRoot)
	}
	before := hostFingerprint()
	code := pgtest.Main(m)
	if after := hostFingerprint(); after != before {
		fmt.Fprintf(os.Stderr, "e2e: THE HOST CHANGED during the tests; a write escaped a disposable root:\nbefore %s\nafter  %s\n", before, after)
		return 1
	}
	return code
}

// hostFingerprint describes the host files a disposable root replaces, so a
// write that escaped it fails the run loudly.
func hostFingerprint() string {
	var b strings.Builder
	paths := []string{"/usr/bin/sh", "/usr/bin/systemctl", "/usr/local/sbin/systemctl", "/usr/bin/pg_dump", "/usr/bin/pg_restore", "/usr/bin/psql", "/usr/sbin/policy-rc.d", "/etc/systemd/system/" + applianceUnit, eventsLog}
	// And the package's own payload: a tool that unpacks it (rpm2cpio | cpio
	// with nfpm's absolute member names) would write it onto the host.
	for _, p := range append(paths, hostLeftovers...) {
		fi, err := os.Lstat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s:absent ", p)
			continue
		}
		target, _ := os.Readlink(p)
		fmt.Fprintf(&b, "%s:%v:%d:%s ", p, fi.Mode(), fi.Size(), target)
	}
	return b.String()
}

// A variant is one build of the binary and its two packages.
type variant struct {
	Name     string // old, new, failing
	Version  string // package version, e.g. 1.1.0
	Release  string
	DEB, RPM string // paths inside a root (under /e2e-pkgs)
	HostDEB  string // the same files seen from the host
	HostRPM  string
	Head     string // newest migration version it knows
	Binary   string // host path of the built binary
}

func (v *variant) FullVersion() string { return v.Version + "-" + v.Release }

// failingMigration fails while the table e2e_block_migration exists, so the
// test "fixes the cause" with a database action, as an operator would. It
// first makes a change of its own, which must be rolled back.
const failingMigration = `-- migrate:up
CREATE TABLE e2e_partial (id integer);
DO $$
BEGIN
    IF to_regclass('public.e2e_block_migration') IS NOT NULL THEN
        RAISE EXCEPTION 'e2e: blocked while table e2e_block_migration exists';
    END IF;
END
$$;

-- migrate:down
DROP TABLE e2e_partial;
`

var (
	buildOnce sync.Once
	built     map[string]*variant
	buildErr  error
	// Versions of the repository's migrations, oldest first.
	repoMigrations []string
)

// variants builds, once per test binary, the old package (newest migration
// left out), the new one (this tree) and a failing one (this tree plus a
// migration that fails), and a patch release of the new one with the same
// migrations, each with the binary stamped with its version.
func variants(t *testing.T) map[string]*variant {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		built, buildErr = buildVariants()
		fmt.Fprintf(os.Stderr, "e2e: built packages in %v\n", time.Since(start).Round(time.Second))
	})
	if buildErr != nil {
		t.Fatalf("building the packages: %v", buildErr)
	}
	return built
}

var migrationName = regexp.MustCompile(`^(\d{14})_.*\.sql$`)

func migrationVersions(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var vs []string
	for _, e := range entries {
		if m := migrationName.FindStringSubmatch(e.Name()); m != nil {
			vs = append(vs, m[1])
		}
	}
	sort.Strings(vs)
	return vs, nil
}

func buildVariants() (map[string]*variant, error) {
	vs, err := migrationVersions(filepath.Join(srcRoot, "migrations"))
	if err != nil {
		return nil, err
	}
	if len(vs) < 2 {
		return nil, fmt.Errorf("need at least two migrations in migrations/, found %d", len(vs))
	}
	repoMigrations = vs
	head := vs[len(vs)-1]
	failVersion := "29991231235959"
	out := map[string]*variant{
		"old":     {Name: "old", Version: "1.0.0", Release: "1", Head: vs[len(vs)-2]},
		"new":     {Name: "new", Version: "1.1.0", Release: "1", Head: head},
		"patch":   {Name: "patch", Version: "1.1.1", Release: "1", Head: head},
		"failing": {Name: "failing", Version: "1.2.0", Release: "1", Head: failVersion},
	}
	for _, name := range []string{"old", "new", "patch", "failing"} {
		v := out[name]
		src, err := os.MkdirTemp("", "openwatch-e2e-src-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(src)
		if err := copySource(src); err != nil {
			return nil, err
		}
		switch name {
		case "old":
			matches, _ := filepath.Glob(filepath.Join(src, "migrations", head+"_*.sql"))
			for _, m := range matches {
				if err := os.Remove(m); err != nil {
					return nil, err
				}
			}
		case "failing":
			if err := os.WriteFile(filepath.Join(src, "migrations", failVersion+"_e2e_fails.sql"), []byte(failingMigration), 0o644); err != nil {
				return nil, err
			}
		}
		v.Binary = filepath.Join(pkgDir, "openwatch-"+v.FullVersion())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", v.Binary,
			"-ldflags", "-s -w -X github.com/openwatch/openwatch/internal/version.Version="+v.FullVersion(), "./cmd/openwatch")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("go build (%s): %v\n%s", name, err, out)
		}
		deb, rpm, err := buildPackages(v)
		if err != nil {
			return nil, fmt.Errorf("packaging %s: %w", name, err)
		}
		v.HostDEB, v.HostRPM = deb, rpm
		v.DEB = "/e2e-pkgs/" + strings.TrimPrefix(deb, pkgDir+"/")
		v.RPM = "/e2e-pkgs/" + strings.TrimPrefix(rpm, pkgDir+"/")
	}
	return out, nil
}

// copySource copies what the binary is built from into dir.
func copySource(dir string) error {
	for _, p := range []string{"go.mod", "go.sum", "cmd", "internal", "migrations"} {
		cmd := exec.Command("cp", "-a", filepath.Join(srcRoot, p), dir+"/")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: %v\n%s", p, err, out)
		}
	}
	return nil
}

// gitSnapshot extracts what the packages are built from at rev.
func gitSnapshot(rev string) (string, error) {
	dir, err := os.MkdirTemp("", "openwatch-e2e-git-")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repoRoot, rev, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("git archive %s: %v\n%s", rev, err, out)
	}
	return dir, nil
}
