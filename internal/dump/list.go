package dump

import (
	"os"
	"path/filepath"
	"sort"
	"time"
)

// RestorePoint is one restore point file, as listed for operators and
// `migrate --status --json`.
type RestorePoint struct {
	Name           string    `json:"name"` // the path `openwatch restore` accepts
	Kind           string    `json:"kind"` // "file"
	Created        time.Time `json:"created"`
	PackageVersion string    `json:"package_version"`
	SchemaVersion  string    `json:"schema_version"`
	Size           int64     `json:"size"`
}

// List returns the restore points in dir, newest first. Only regular files
// with a restore point's name count; a symlink inside dir is not followed.
// A missing dir has none.
func List(dir string) ([]RestorePoint, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rps []RestorePoint
	for _, e := range entries {
		pkgVersion, schema, created, ok := parseFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		rps = append(rps, RestorePoint{Name: filepath.Join(dir, e.Name()), Kind: "file", Created: created,
			PackageVersion: pkgVersion, SchemaVersion: schema, Size: fi.Size()})
	}
	sort.SliceStable(rps, func(i, j int) bool { return rps[i].Created.After(rps[j].Created) })
	return rps, nil
}
