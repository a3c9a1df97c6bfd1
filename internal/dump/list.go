package dump

import (
	"os"
	"path/filepath"
	"regexp"
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

// fileNameRE matches FileName's output.
var fileNameRE = regexp.MustCompile(`^openwatch_(.+)_schema-([0-9]+|none)_([0-9]{8}T[0-9]{6}Z)\.dump$`)

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
		m := fileNameRE.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		created, err := time.Parse("20060102T150405Z", m[3])
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		rps = append(rps, RestorePoint{Name: filepath.Join(dir, e.Name()), Kind: "file", Created: created,
			PackageVersion: m[1], SchemaVersion: m[2], Size: fi.Size()})
	}
	sort.SliceStable(rps, func(i, j int) bool { return rps[i].Created.After(rps[j].Created) })
	return rps, nil
}
