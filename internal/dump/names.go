package dump

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/openwatch/openwatch/internal/defaults"
)

// A restore point file is named by defaults.RestorePointFile, the spec's
// pattern (docs/INTERFACES.md), e.g.
// openwatch_1.1.0-1_schema-20240601120000_20250102T030405Z.dump. FileName,
// the parser List uses and the glob operators are shown all derive from it.
const timeLayout = "20060102T150405Z"

var (
	fileNamer = strings.NewReplacer("{package}", "%[1]s", "{schema}", "%[2]s", "{time}", "%[3]s").
			Replace(strings.ReplaceAll(defaults.RestorePointFile, "%", "%%"))
	fileNameRE = regexp.MustCompile("^" + strings.NewReplacer(
		`\{package\}`, `(?P<package>.+)`,
		`\{schema\}`, `(?P<schema>[0-9]+|none)`,
		`\{time\}`, `(?P<time>[0-9]{8}T[0-9]{6}Z)`,
	).Replace(regexp.QuoteMeta(defaults.RestorePointFile)) + "$")
	// FileGlob matches restore point files, never partial files.
	FileGlob = strings.NewReplacer("{package}", "*", "{schema}", "*", "{time}", "*").Replace(defaults.RestorePointFile)
)

// PartialPattern is the os.CreateTemp pattern of files being written; it
// never matches FileGlob.
const PartialPattern = "." + defaults.PackageName + "-*.partial"

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9.+~-]`)

// FileName is the restore point file name for package version pkgVersion
// (characters unsafe in a file name become "_"), schema version
// schemaVersion ("none" when empty) and time t.
func FileName(pkgVersion, schemaVersion string, t time.Time) string {
	if schemaVersion == "" {
		schemaVersion = "none"
	}
	return fmt.Sprintf(fileNamer, unsafeChars.ReplaceAllString(pkgVersion, "_"), schemaVersion, t.UTC().Format(timeLayout))
}

// PackageVersionOf is the package version in the name of the restore point
// file path (as in the name: "_" for characters unsafe in a file name), or
// "" when it is not named like one.
func PackageVersionOf(path string) string {
	v, _, _, ok := parseFileName(filepath.Base(path))
	if !ok {
		return ""
	}
	return v
}

// parseFileName reads a restore point file name; ok is false for any other.
func parseFileName(name string) (pkgVersion, schemaVersion string, created time.Time, ok bool) {
	m := fileNameRE.FindStringSubmatch(name)
	if m == nil {
		return "", "", time.Time{}, false
	}
	created, err := time.Parse(timeLayout, m[fileNameRE.SubexpIndex("time")])
	if err != nil {
		return "", "", time.Time{}, false
	}
	return m[fileNameRE.SubexpIndex("package")], m[fileNameRE.SubexpIndex("schema")], created, true
}
