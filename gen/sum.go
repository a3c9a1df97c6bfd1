package gen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	dbmigrate "github.com/openwatch/openwatch/internal/migrate"
)

// SumFile lists every shipped migration, oldest first, with the sha256 of
// its file, in sha256sum's format ("HEX  NAME"; `sha256sum -c` checks it in
// migrations/). Only `make generate` writes it, and only by appending new
// migrations: a line, once there, is never rewritten.
const SumFile = "migrations/openwatch.sum"

// SumEntry is one line of the sum file.
type SumEntry struct{ Name, SHA256 string }

// ReadSum reads a sum file; a missing one is empty.
func ReadSum(path string) ([]SumEntry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []SumEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 || name == "" {
			return nil, fmt.Errorf("%s:%d: want \"SHA256  FILE\", got %q", path, n, sc.Text())
		}
		out = append(out, SumEntry{Name: name, SHA256: sum})
	}
	return out, sc.Err()
}

// SumError lists what changed in the migrations since the sum file was written.
type SumError struct {
	Edited, Removed []string // listed files whose bytes changed, or that are gone
	Reordered       []string // new files that sort before a listed one
	Unlisted        []string // new files after the last listed one
}

func (e *SumError) Error() string {
	var msgs []string
	for _, n := range e.Edited {
		msgs = append(msgs, fmt.Sprintf("%s was edited after it was listed in %s: a shipped migration must never change; add a new migration instead", n, SumFile))
	}
	for _, n := range e.Removed {
		msgs = append(msgs, fmt.Sprintf("%s is listed in %s but gone: a shipped migration must never be removed or renamed", n, SumFile))
	}
	for _, n := range e.Reordered {
		msgs = append(msgs, fmt.Sprintf("%s sorts before migrations already listed in %s: give it a later timestamp than every listed one", n, SumFile))
	}
	for _, n := range e.Unlisted {
		msgs = append(msgs, fmt.Sprintf("%s is not listed in %s: run make generate", n, SumFile))
	}
	return strings.Join(msgs, "\n")
}

// hasChanges reports changes make generate must not paper over.
func (e *SumError) hasChanges() bool {
	return len(e.Edited)+len(e.Removed)+len(e.Reordered) > 0
}

// VerifySum compares the migrations in dir with the sum file's entries.
func VerifySum(dir string, entries []SumEntry) error {
	known, err := dbmigrate.Known(os.DirFS(dir))
	if err != nil {
		return err
	}
	e := &SumError{}
	present := map[string]bool{}
	for _, m := range known {
		present[m.Name] = true
	}
	listed := map[string]bool{}
	last := ""
	for _, s := range entries {
		listed[s.Name] = true
		last = max(last, s.Name)
		if !present[s.Name] {
			e.Removed = append(e.Removed, s.Name)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, s.Name))
		if err != nil {
			return err
		}
		if dbmigrate.Checksum(b) != s.SHA256 {
			e.Edited = append(e.Edited, s.Name)
		}
	}
	for _, m := range known {
		switch {
		case listed[m.Name]:
		case m.Name < last:
			e.Reordered = append(e.Reordered, m.Name)
		default:
			e.Unlisted = append(e.Unlisted, m.Name)
		}
	}
	if len(e.Edited)+len(e.Removed)+len(e.Reordered)+len(e.Unlisted) > 0 {
		return e
	}
	return nil
}

// UpdateSum appends the migrations of root/migrations not yet listed to the
// sum file and returns their names. It refuses, changing nothing, when a
// listed migration was edited, removed or reordered.
func UpdateSum(root string) ([]string, error) {
	path := filepath.Join(root, filepath.FromSlash(SumFile))
	entries, err := ReadSum(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	err = VerifySum(dir, entries)
	var se *SumError
	if err == nil {
		return nil, nil
	}
	if !errors.As(err, &se) || se.hasChanges() {
		return nil, err
	}
	var b bytes.Buffer
	for _, s := range entries {
		fmt.Fprintf(&b, "%s  %s\n", s.SHA256, s.Name)
	}
	for _, name := range se.Unlisted {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s  %s\n", dbmigrate.Checksum(data), name)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return se.Unlisted, nil
}

// CheckSum verifies root's sum file against root/migrations.
func CheckSum(root string) error {
	path := filepath.Join(root, filepath.FromSlash(SumFile))
	entries, err := ReadSum(path)
	if err != nil {
		return err
	}
	return VerifySum(filepath.Dir(path), entries)
}
