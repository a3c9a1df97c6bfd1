package dump

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var pruneNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// restorePoint writes a regular file named like a restore point taken age
// before pruneNow and returns its base name.
func restorePoint(t *testing.T, dir, pkgVersion string, age time.Duration) string {
	t.Helper()
	n := FileName(pkgVersion, "20260101000003", pruneNow.Add(-age))
	writeTestFile(t, filepath.Join(dir, n), "dump")
	return n
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out // ReadDir sorts by name
}

func sortedCopy(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestPruneRemovesOnlyOldRegularRestorePointsAndLeavesSymlinksInside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "backups")
	outside := filepath.Join(root, "outside")
	writeTestFile(t, filepath.Join(outside, "precious"), "keep")
	old1 := restorePoint(t, dir, "1.0.0-1", 40*day)
	old2 := restorePoint(t, dir, "1.0.0 with spaces", 31*day)
	keep := []string{
		restorePoint(t, dir, "1.1.0-1", 2*day),
		restorePoint(t, dir, "1.1.0-1", 29*day),
		"openwatch_notes.txt",                           // not a restore point
		"other_1.0.0_schema-1_20200101T000000Z.dump",    // another prefix
		"openwatch_1.0.0_schema-1_garbage.dump",         // undatable
		".openwatch-123.partial",                        // a backup being written
		"openwatch_1_schema-1_20200101T000000Z.dump.gz", // another suffix
	}
	for _, n := range keep[2:] {
		writeTestFile(t, filepath.Join(dir, n), "x")
	}
	// A symlink to a file outside, and one to an old restore point inside,
	// both named like old restore points; and a directory named like one.
	linkOut := FileName("0.9.0-1", "1", pruneNow.Add(-100*day))
	if err := os.Symlink(filepath.Join(outside, "precious"), filepath.Join(dir, linkOut)); err != nil {
		t.Fatal(err)
	}
	linkIn := FileName("0.9.1-1", "1", pruneNow.Add(-100*day))
	if err := os.Symlink(old1, filepath.Join(dir, linkIn)); err != nil {
		t.Fatal(err)
	}
	sub := FileName("0.8.0-1", "1", pruneNow.Add(-100*day))
	if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, linkOut, linkIn, sub)

	var said []string
	res, err := Prune(dir, 30, pruneNow, func(rp RestorePoint) { said = append(said, filepath.Base(rp.Name)) })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), sortedCopy(keep...); !slices.Equal(got, want) {
		t.Errorf("left in the directory:\n got %q\nwant %q", got, want)
	}
	if want := []string{old2, old1}; !slices.Equal(said, want) {
		t.Errorf("reported removed %q, want %q", said, want)
	}
	if len(res.Removed) != 2 || res.Kept != 2 || res.Dir != dir {
		t.Errorf("result %+v", res)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "precious")); err != nil || string(b) != "keep" {
		t.Errorf("the symlink's target was touched: %q, %v", b, err)
	}
}

func TestPruneAlwaysKeepsTheNewestEvenWhenItIsOld(t *testing.T) {
	dir := t.TempDir()
	newest := restorePoint(t, dir, "1.0.0-1", 50*day)
	restorePoint(t, dir, "1.0.0-1", 60*day)
	restorePoint(t, dir, "0.9.0-1", 70*day)
	res, err := Prune(dir, 30, pruneNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{newest}) {
		t.Errorf("left %q, want only the newest %s", got, newest)
	}
	if len(res.Removed) != 2 || res.Kept != 1 {
		t.Errorf("result %+v", res)
	}
}

func TestPruneCountsWholeDaysFromTheTimestampInTheName(t *testing.T) {
	dir := t.TempDir()
	newest := restorePoint(t, dir, "1.0.0-1", time.Hour)
	inside := restorePoint(t, dir, "1.0.0-1", 10*day-time.Second)
	restorePoint(t, dir, "1.0.0-1", 10*day+time.Second)
	// The file's mtime says nothing: only the name counts.
	os.Chtimes(filepath.Join(dir, inside), time.Unix(0, 0), time.Unix(0, 0))
	if _, err := Prune(dir, 10, pruneNow, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir), sortedCopy(newest, inside); !slices.Equal(got, want) {
		t.Errorf("left %q, want %q", got, want)
	}
}

// BACKUP_DIR itself may be a symlink to a directory on a bigger disk:
// Prune follows it, as Backup and List do, and leaves the symlink.
func TestPruneFollowsASymlinkedBackupDir(t *testing.T) {
	root := t.TempDir()
	target := filepath.Join(root, "bigdisk", "restore-points")
	old := restorePoint(t, target, "1.0.0-1", 90*day)
	newest := restorePoint(t, target, "1.1.0-1", day)
	link := filepath.Join(root, "backups")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	res, err := Prune(link, 30, pruneNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, target); !slices.Equal(got, []string{newest}) {
		t.Errorf("left in the target %q, want %q (old one: %s)", got, newest, old)
	}
	if len(res.Removed) != 1 || res.Removed[0].Name != filepath.Join(link, old) {
		t.Errorf("result %+v", res)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink itself: %v, %v", fi, err)
	}
}

func TestPruneOfAMissingDirDoesNothingButADanglingSymlinkIsAnError(t *testing.T) {
	root := t.TempDir()
	if res, err := Prune(filepath.Join(root, "absent"), 30, pruneNow, nil); err != nil || len(res.Removed) != 0 {
		t.Errorf("missing dir: %+v, %v", res, err)
	}
	link := filepath.Join(root, "backups")
	if err := os.Symlink(filepath.Join(root, "unmounted"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := Prune(link, 30, pruneNow, nil); err == nil {
		t.Error("a symlink to nothing pruned nothing, silently")
	}
}
