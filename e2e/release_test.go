package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openwatch/openwatch/internal/pgtest"
)

// A release is one line of releases.txt: a version and the commit its
// packages were built from.
type release struct {
	Version, Commit string
}

var releaseLine = regexp.MustCompile(`^(\d+\.\d+\.\d+)\s+([0-9a-f]{40})$`)

// readReleases reads releases.txt of the repository, oldest first.
func readReleases(repo string) ([]release, error) {
	f, err := os.Open(filepath.Join(repo, "releases.txt"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []release
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := releaseLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("releases.txt:%d: %q: want VERSION COMMIT (a full 40-digit commit)", n, line)
		}
		rs = append(rs, release{Version: m[1], Commit: m[2]})
	}
	return rs, sc.Err()
}

// releaseHistoryError says which release commit the clone lacks and how to
// get it.
func releaseHistoryError(repo string, r release, why string) error {
	fix := "fetch the history: git -C " + repo + " fetch origin " + r.Commit
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "--is-shallow-repository").Output(); err == nil && strings.TrimSpace(string(out)) == "true" {
		fix = "this is a shallow clone; fetch the whole history: git -C " + repo + " fetch --unshallow (in CI: clone with fetch-depth: 0)"
	}
	return fmt.Errorf("release %s (releases.txt) is built from commit %s, which %s: %s", r.Version, r.Commit, why, fix)
}

// buildRelease builds r's packages from the repository's own history: git
// archive of its commit into a temporary directory, then that tree's own
// `make packages VERSION=<version> RELEASE=1`, as it was released. The
// packages land under pkgDir/release-<version>, visible in every root
// created afterwards. It fails naming what is missing when the commit is not
// in this clone.
func buildRelease(repo string, r release) (*variant, error) {
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "--git-dir").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("release %s is built from the git history, but %s is not a git checkout (%v: %s); clone the repository with its history",
			r.Version, repo, err, strings.TrimSpace(string(out)))
	}
	if err := exec.Command("git", "-C", repo, "cat-file", "-e", r.Commit+"^{commit}").Run(); err != nil {
		return nil, releaseHistoryError(repo, r, "is not in this clone")
	}
	src, err := os.MkdirTemp("", "openwatch-e2e-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(src)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repo, r.Commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("git archive %s (release %s): %v\n%s", r.Commit, r.Version, err, out)
	}
	v := &variant{Name: "release-" + r.Version, Version: r.Version, Release: "1"}
	build := exec.CommandContext(ctx, "make", "--no-print-directory", "packages", "VERSION="+v.Version, "RELEASE="+v.Release)
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("release %s: make packages in its tree (commit %s): %v\n%s", r.Version, r.Commit, err, out)
	}
	out := filepath.Join(pkgDir, v.Name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	debs, _ := filepath.Glob(filepath.Join(src, "dist", "openwatch_"+v.FullVersion()+"_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(src, "dist", "openwatch-"+v.FullVersion()+"*.rpm"))
	if len(debs) != 1 || len(rpms) == 0 {
		return nil, fmt.Errorf("release %s: make packages left %v and %v in dist/, want one .deb and an .rpm", r.Version, debs, rpms)
	}
	for _, p := range []string{debs[0], rpms[0], filepath.Join(src, "build", "openwatch")} {
		if cp, err := exec.Command("cp", p, out+"/").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("copy %s: %v\n%s", p, err, cp)
		}
	}
	v.HostDEB, v.HostRPM = filepath.Join(out, filepath.Base(debs[0])), filepath.Join(out, filepath.Base(rpms[0]))
	v.DEB = "/e2e-pkgs/" + strings.TrimPrefix(v.HostDEB, pkgDir+"/")
	v.RPM = "/e2e-pkgs/" + strings.TrimPrefix(v.HostRPM, pkgDir+"/")
	v.Binary = filepath.Join(out, "openwatch")
	vs, err := migrationVersions(filepath.Join(src, "migrations"))
	if err != nil || len(vs) == 0 {
		return nil, fmt.Errorf("release %s: its migrations: %v (%d found)", r.Version, err, len(vs))
	}
	v.Head = vs[len(vs)-1]
	return v, nil
}

// nextMigration is the one, reversible, migration the build of this tree as
// the release after the real ones adds.
const nextMigration = `-- migrate:up
ALTER TABLE hosts ADD COLUMN e2e_notes text;

-- migrate:down
ALTER TABLE hosts DROP COLUMN e2e_notes;
`

const nextMigrationVersion = "29990101000000"

var (
	releasesOnce sync.Once
	releases     []*variant
	nextRelease  *variant // this tree plus nextMigration, as 1.1.0
	releasesErr  error
)

// realReleases builds, once per test binary, every release in releases.txt
// from the history, and this tree with one more reversible migration as
// the release after them.
func realReleases(t *testing.T) ([]*variant, *variant) {
	t.Helper()
	releasesOnce.Do(func() {
		start := time.Now()
		rs, err := readReleases(repoRoot)
		if err != nil {
			releasesErr = err
			return
		}
		for _, r := range rs {
			v, err := buildRelease(repoRoot, r)
			if err != nil {
				releasesErr = err
				return
			}
			releases = append(releases, v)
		}
		nextRelease, releasesErr = buildNext()
		fmt.Fprintf(os.Stderr, "e2e: built %d release(s) from the history and the next one in %v\n", len(releases), time.Since(start).Round(time.Second))
	})
	if releasesErr != nil {
		t.Fatalf("building the releases: %v", releasesErr)
	}
	return releases, nextRelease
}

// buildNext builds this tree with nextMigration as 1.1.0.
func buildNext() (*variant, error) {
	v := &variant{Name: "next", Version: "1.1.0", Release: "1", Head: nextMigrationVersion}
	src, err := os.MkdirTemp("", "openwatch-e2e-src-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(src)
	if err := copySource(src); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "migrations", nextMigrationVersion+"_e2e_notes.sql"), []byte(nextMigration), 0o644); err != nil {
		return nil, err
	}
	v.Binary = filepath.Join(pkgDir, "openwatch-next-"+v.FullVersion())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", v.Binary,
		"-ldflags", "-s -w -X github.com/openwatch/openwatch/internal/version.Version="+v.FullVersion(), "./cmd/openwatch")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build (next): %v\n%s", err, out)
	}
	deb, rpm, err := buildPackages(v)
	if err != nil {
		return nil, fmt.Errorf("packaging next: %w", err)
	}
	v.HostDEB, v.HostRPM = deb, rpm
	v.DEB = "/e2e-pkgs/" + strings.TrimPrefix(deb, pkgDir+"/")
	v.RPM = "/e2e-pkgs/" + strings.TrimPrefix(rpm, pkgDir+"/")
	return v, nil
}

// newReleaseEnv is newEnv without the tree's variants: the cases of the
// real releases need none of them.
func newReleaseEnv(t *testing.T, f format) *env {
	e := &env{t: t, f: f, db: pgtest.Shared(t).NewDatabase(t)}
	e.r = newRoot(t, "dash")
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("E2E_VERBOSE") == "" {
			return
		}
		for _, res := range e.runs {
			t.Logf("$ %s   (exit %d)\n%s", res.cmd, res.code, res.out)
		}
		t.Logf("events (systemctl calls, pg_* shim calls) since the last reset:\n%s", e.r.events())
	})
	return e
}

func TestReleaseHistoryMissingIsNamed(t *testing.T) {
	r := release{Version: "0.9.0", Commit: strings.Repeat("0", 40)}
	_, err := buildRelease(repoRoot, r)
	if err == nil || !strings.Contains(err.Error(), "release 0.9.0 (releases.txt) is built from commit "+r.Commit+", which is not in this clone") ||
		!strings.Contains(err.Error(), "git -C "+repoRoot+" fetch") {
		t.Fatalf("err = %v, want one naming the release, its commit and the fetch that brings it", err)
	}
	_, err = buildRelease(t.TempDir(), release{Version: "1.0.0", Commit: strings.Repeat("1", 40)})
	if err == nil || !strings.Contains(err.Error(), "is not a git checkout") {
		t.Fatalf("err = %v, want one saying the tree is not a git checkout", err)
	}
}

// TestUpgradeFromARealRelease: each real release, installed with its own
// package and initialised by the operator, upgrades with dpkg and rpm to this tree
// built as the next release (one more, reversible, migration): exit 0, the
// schema at the new head with the rows kept, one restore point, the service
// running, and the new migration's down section stored for the way back.
// Then the way back by hand (wayBackByHand): rows written after the
// upgrade, openwatch migrate --to the release's head, dpkg -i or
// rpm -U --oldpackage of the release: exit 0, the release installed and starting, the rows kept.
func TestUpgradeFromARealRelease(t *testing.T) {
	rels, next := realReleases(t)
	for _, rel := range rels {
		for _, f := range formats {
			t.Run(rel.FullVersion()+" to "+next.FullVersion()+" with "+f.Name, func(t *testing.T) {
				t.Parallel()
				upgradeFromRelease(t, f, rel, next)
			})
		}
	}
}

func upgradeFromRelease(t *testing.T, f format, rel, next *variant) {
	e := newReleaseEnv(t, f)
	e.installAndInitialise(rel)
	before := releaseData(e)
	res := e.pm(e.f.upgrade(e.f.pkg(next))...)
	if res.code != 0 {
		e.t.Fatalf("upgrade %s → %s: exit %d", rel.FullVersion(), next.FullVersion(), res.code)
	}
	if got := e.schemaVersions(); len(got) == 0 || got[len(got)-1] != nextMigrationVersion || !slices.Contains(got, rel.Head) {
		t.Errorf("schema_migrations = %v, want %s's %s and then %s", got, rel.FullVersion(), rel.Head, nextMigrationVersion)
	}
	if got := releaseData(e); got != before {
		t.Errorf("data changed by the upgrade:\nbefore %s\nafter  %s", before, got)
	}
	e.oneRestorePoint(next, rel.Head)
	if !e.r.active(applianceUnit) {
		t.Errorf("%s is not running after the upgrade", applianceUnit)
	}
	if got := e.installedVersion(); got != installed(f, next) {
		t.Errorf("installed: %q, want %s", got, installed(f, next))
	}
	stored := e.queryStrings("SELECT version || ' ' || down FROM openwatch_migration_down ORDER BY version")
	if len(stored) != len(e.schemaVersions()) || !strings.Contains(stored[len(stored)-1], "ALTER TABLE hosts DROP COLUMN e2e_notes;") {
		t.Errorf("down sections stored after the upgrade: %q, want one for each applied migration", stored)
	}
	if t.Failed() {
		return
	}
	wayBackByHand(e, rel, next)
}

// installed is what e.installedVersion says when v is installed.
func installed(f format, v *variant) string {
	if f.Name == "deb" {
		return v.FullVersion() + " ii"
	}
	return v.FullVersion()
}

// releaseData is the content of the seeded tables without the column the
// next release adds.
func releaseData(e *env) string {
	e.t.Helper()
	return strings.Join(e.queryStrings(`
SELECT 'hosts ' || coalesce(jsonb_agg(to_jsonb(h) - 'e2e_notes' ORDER BY h.id)::text, '[]') FROM hosts h
UNION ALL
SELECT 'scan_results ' || coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.id)::text, '[]') FROM scan_results s`), "\n")
}

// wayBackByHand is the documented way back to a release without a gate
// (docs/UPGRADING.md): with the service stopped, the newer binary takes the
// schema down to the release's head (openwatch migrate --to), then the
// release's package is installed again; the rows written since the upgrade
// stay, and the service starts on the older version.
func wayBackByHand(e *env, rel, next *variant) {
	e.t.Helper()
	e.exec("INSERT INTO hosts (hostname, address, e2e_notes) VALUES ('written-after-the-upgrade', '10.9.9.9', 'kept')")
	rows := e.queryStrings("SELECT hostname FROM hosts ORDER BY id")
	e.r.run(30*time.Second, "systemctl", "stop", applianceUnit)
	res := e.mustOperator("openwatch", "migrate", "--to", rel.Head)
	if !strings.Contains(res.out, "rolled back 1 migration(s): "+nextMigrationVersion+"_e2e_notes.sql; schema now at "+rel.Head) {
		e.t.Errorf("openwatch migrate --to %s said:\n%s", rel.Head, res.out)
	}
	if got := e.schemaVersions(); len(got) == 0 || got[len(got)-1] != rel.Head {
		e.t.Fatalf("schema_migrations = %v after migrate --to %s", got, rel.Head)
	}
	res = e.pm(e.f.downgrade(e.f.pkg(rel))...)
	if res.code != 0 {
		e.t.Fatalf("downgrade %s → %s: exit %d", next.FullVersion(), rel.FullVersion(), res.code)
	}
	if got := e.installedVersion(); got != installed(e.f, rel) {
		e.t.Errorf("installed: %q, want %s", got, installed(e.f, rel))
	}
	if got := e.queryStrings("SELECT hostname FROM hosts ORDER BY id"); !slices.Equal(got, rows) {
		e.t.Errorf("hosts after the way back: %v, want %v (the row written after the upgrade kept)", got, rows)
	}
	if got := e.queryStrings("SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'hosts' AND column_name = 'e2e_notes'"); got[0] != "0" {
		e.t.Errorf("the next release's column is still there after the way back")
	}
	e.r.run(30*time.Second, "systemctl", "start", applianceUnit)
	if !e.r.active(applianceUnit) {
		e.t.Errorf("%s does not start on %s after the way back (its start guard refused?)", applianceUnit, rel.FullVersion())
	}
	e.mustOperator("openwatch", "migrate", "--check")
}

// TestAReleaseRunsWithThisTreesUpgradeConf is the cross-version contract
// (docs/INTERFACES.md, "Across versions") with the real releases: the gate
// of this version runs an older release's binary with this version's
// upgrade.conf. A release before the contract refuses the settings it does
// not know (1.0.0: REHEARSE, exit 19), and names each as an unknown setting
// in `migrate --check`'s warning; without those keys its preflight is ready.
// This tree's binary ignores a later version's setting with a warning.
func TestAReleaseRunsWithThisTreesUpgradeConf(t *testing.T) {
	rels, next := realReleases(t)
	db := pgtest.Shared(t).NewDatabase(t)
	conf, err := os.ReadFile(filepath.Join(srcRoot, "dist", "upgrade.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "upgrade.conf")
	text := strings.Replace(string(conf), "BACKUP_DIR='/var/backups/openwatch'", "BACKUP_DIR='"+filepath.Join(dir, "backups")+"'", 1)
	if err := os.WriteFile(full, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(bin, conf string, args ...string) (int, string) {
		cmd := exec.Command(bin, append(args, "--config", conf, "--secrets", filepath.Join(dir, "absent.env"))...)
		cmd.Env = []string{"PATH=" + pgBinDir + ":/usr/bin:/bin", "OPENWATCH_DATABASE_DSN=" + db.URL()}
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := run(next.Binary, full, "migrate"); code != 0 {
		t.Fatalf("initialising with this tree's binary: exit %d\n%s", code, out)
	}
	for _, rel := range rels {
		code, out := run(rel.Binary, full, "migrate", "--check")
		var unknown []string
		for _, m := range regexp.MustCompile(`unknown setting ([A-Z][A-Z0-9_]*) \(did you mean`).FindAllStringSubmatch(out, -1) {
			unknown = append(unknown, m[1])
		}
		// The settings this tree's upgrade.conf holds that 1.0.0 did not know.
		if want := []string{"METRICS_DIR", "REHEARSE"}; rel.Version == "1.0.0" && !slices.Equal(unknown, want) {
			t.Errorf("1.0.0 named %v as unknown settings, want %v\n%s", unknown, want, out)
		}
		if code != 11 {
			t.Errorf("%s migrate --check on the newer schema: exit %d, want 11\n%s", rel.FullVersion(), code, out)
		}
		filtered := filepath.Join(dir, rel.FullVersion()+".conf")
		var keep []string
		for _, line := range strings.Split(text, "\n") {
			key, _, _ := strings.Cut(line, "=")
			if !slices.Contains(unknown, strings.TrimSpace(key)) {
				keep = append(keep, line)
			}
		}
		if err := os.WriteFile(filtered, []byte(strings.Join(keep, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, out := run(rel.Binary, filtered, "migrate", "--check"); code != 11 || strings.Contains(out, "unknown setting") {
			t.Errorf("%s with the settings it knows: exit %d, want 11 and no unknown setting (dropped %v)\n%s", rel.FullVersion(), code, unknown, out)
		}
	}
	later := filepath.Join(dir, "later.conf")
	if err := os.WriteFile(later, []byte(text+"METRICS_EXPORT_DIR=/srv/metrics\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run(next.Binary, later, "migrate", "--preflight"); code != 0 || !strings.Contains(out, "ignoring METRICS_EXPORT_DIR") {
		t.Errorf("this tree's preflight with a later version's setting: exit %d, want 0 and a warning naming it\n%s", code, out)
	}
	if code, out := run(next.Binary, later+"x", "migrate", "--preflight"); code != 19 {
		t.Errorf("a --config that does not exist: exit %d\n%s", code, out)
	}
	misspelt := filepath.Join(dir, "misspelt.conf")
	if err := os.WriteFile(misspelt, []byte(text+"REHERSE=no\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run(next.Binary, misspelt, "migrate", "--preflight"); code != 19 || !strings.Contains(out, "unknown setting REHERSE (did you mean REHEARSE?)") {
		t.Errorf("this tree's preflight with a misspelt setting: exit %d, want 19 naming REHEARSE\n%s", code, out)
	}
}
