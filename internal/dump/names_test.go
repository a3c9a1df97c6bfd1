package dump

import (
	"path/filepath"
	"testing"
	"time"
)

// The name, its parser, the glob and the partial-file pattern are one
// contract: what FileName writes, List reads back and the glob matches, and
// no file being written matches either.
func TestFileNameParserAndGlobAgree(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct{ pkg, schema, wantSchema string }{
		{"1.1.0-1", "20240601120000", "20240601120000"},
		{"2.0.0~rc1+git-1", "", "none"},
		{"1.0.0_with_underscores_schema-3", "7", "7"},
	} {
		name := FileName(c.pkg, c.schema, when)
		pkg, schema, created, ok := parseFileName(name)
		if !ok || pkg != c.pkg || schema != c.wantSchema || !created.Equal(when) {
			t.Errorf("parseFileName(%q) = %q, %q, %v, %v; want %q, %q, %v, true", name, pkg, schema, created, ok, c.pkg, c.wantSchema, when)
		}
		if got := PackageVersionOf(filepath.Join("/var/backups/x", name)); got != c.pkg {
			t.Errorf("PackageVersionOf(…/%s) = %q, want %q", name, got, c.pkg)
		}
		if m, _ := filepath.Match(FileGlob, name); !m {
			t.Errorf("FileGlob %q does not match %q", FileGlob, name)
		}
		if m, _ := filepath.Match(PartialPattern, name); m {
			t.Errorf("PartialPattern %q matches the restore point %q", PartialPattern, name)
		}
	}
	partial := ".openwatch-123456.partial"
	if m, _ := filepath.Match(PartialPattern, partial); !m {
		t.Errorf("PartialPattern %q does not match %q", PartialPattern, partial)
	}
	if m, _ := filepath.Match(FileGlob, partial); m {
		t.Errorf("FileGlob %q matches the partial file %q", FileGlob, partial)
	}
	for _, other := range []string{"openwatch_1_schema-x_20260102T030405Z.dump", "openwatch_1_schema-1_20260102T030405Z.dump.bak", "notes.txt"} {
		if got := PackageVersionOf(other); got != "" {
			t.Errorf("PackageVersionOf(%q) = %q for a name FileName never writes", other, got)
		}
		if _, _, _, ok := parseFileName(other); ok {
			t.Errorf("parseFileName(%q) accepted a name FileName never writes", other)
		}
	}
}
