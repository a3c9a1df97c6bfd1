package gen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/openwatch/openwatch/internal/fsync"
)

// Write writes files under root atomically: each goes to a temporary file in
// its own directory (renameio), is fsynced and renamed over the target, and
// the directory is fsynced so the rename survives a crash. Unchanged files
// are not rewritten.
func Write(root string, files map[string][]byte) error {
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		dst := filepath.Join(root, filepath.FromSlash(name))
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, content) {
			if st, err := os.Stat(dst); err == nil && st.Mode().Perm() == Mode(content) {
				continue
			}
		}
		dir := filepath.Dir(dst)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := renameio.WriteFile(dst, content, Mode(content), renameio.WithTempDir(dir)); err != nil {
			return fmt.Errorf("write %s: %w", dst, err)
		}
		// renameio applies the umask; set the mode we mean.
		if err := os.Chmod(dst, Mode(content)); err != nil {
			return err
		}
		if err := fsync.Dir(dir); err != nil {
			return fmt.Errorf("fsync %s: %w", dir, err)
		}
	}
	return nil
}

// ErrDrift is returned by Check when the files on disk differ from the render.
var ErrDrift = errors.New("generated files are out of date; run `make generate` and commit the result")

// Check compares files with what is under root and writes a unified diff of
// every difference to w. It returns ErrDrift if anything differs, including
// a stale file under the generated directories that nothing renders.
func Check(root string, files map[string][]byte, w io.Writer, generatedDirs ...string) error {
	drift := false
	for _, name := range slices.Sorted(maps.Keys(files)) {
		want := files[name]
		got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err != nil {
			fmt.Fprintf(w, "missing: %s\n", name)
			drift = true
			continue
		}
		if !bytes.Equal(got, want) {
			fmt.Fprint(w, Diff(name+" (committed)", name+" (rendered)", string(got), string(want)))
			drift = true
			continue
		}
		// Only the executable bit is ours: git and the umask decide the rest.
		if st, err := os.Stat(filepath.Join(root, filepath.FromSlash(name))); err == nil && st.Mode()&0o100 != Mode(want)&0o100 {
			fmt.Fprintf(w, "mode: %s is %v, want %v\n", name, st.Mode().Perm(), Mode(want))
			drift = true
		}
	}
	stale, err := Stale(root, files, generatedDirs...)
	if err != nil {
		return err
	}
	for _, rel := range stale {
		fmt.Fprintf(w, "stale: %s is not rendered by the spec any more; delete it\n", rel)
		drift = true
	}
	if drift {
		return ErrDrift
	}
	return nil
}

// Stale lists the files under the generated directories that the render
// does not produce (built .rpm and .deb files excepted), as slash paths
// relative to root.
func Stale(root string, files map[string][]byte, generatedDirs ...string) ([]string, error) {
	var stale []string
	for _, dir := range generatedDirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if strings.HasSuffix(rel, ".rpm") || strings.HasSuffix(rel, ".deb") || strings.HasPrefix(path.Base(rel), ".pkgbuild-") {
				return nil // built packages, ignored by git
			}
			if _, ok := files[rel]; !ok {
				stale = append(stale, rel)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return stale, nil
}
