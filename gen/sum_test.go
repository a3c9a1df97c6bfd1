package gen

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The guard packagers rely on: make test fails when a shipped migration
// changed since make generate listed it.
func TestTheShippedMigrationsMatchTheirSumFile(t *testing.T) {
	if err := CheckSum(".."); err != nil {
		t.Fatal(err)
	}
}

func sumRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		writeFile(t, filepath.Join(root, "migrations", name), body, 0o644)
	}
	return root
}

func TestTheSumFileNamesEveryEditedRemovedReorderedOrUnlistedMigration(t *testing.T) {
	root := sumRoot(t, map[string]string{"002_b.sql": "b", "004_d.sql": "d", "006_f.sql": "f"})
	if added, err := UpdateSum(root); err != nil || !reflect.DeepEqual(added, []string{"002_b.sql", "004_d.sql", "006_f.sql"}) {
		t.Fatalf("UpdateSum = %v, %v", added, err)
	}
	if err := CheckSum(root); err != nil {
		t.Fatalf("fresh sum: %v", err)
	}
	dir := filepath.Join(root, "migrations")
	writeFile(t, filepath.Join(dir, "002_b.sql"), "b edited", 0o644)
	os.Remove(filepath.Join(dir, "006_f.sql"))
	writeFile(t, filepath.Join(dir, "003_c.sql"), "c", 0o644)
	writeFile(t, filepath.Join(dir, "007_g.sql"), "g", 0o644)
	err := CheckSum(root)
	var se *SumError
	if !errors.As(err, &se) || !reflect.DeepEqual(se, &SumError{Edited: []string{"002_b.sql"}, Removed: []string{"006_f.sql"},
		Reordered: []string{"003_c.sql"}, Unlisted: []string{"007_g.sql"}}) {
		t.Fatalf("CheckSum = %#v", err)
	}
	for _, w := range []string{"002_b.sql was edited", "006_f.sql is listed", "003_c.sql sorts before", "007_g.sql is not listed in migrations/openwatch.sum: run make generate"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message lacks %q:\n%v", w, err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(root, SumFile))
	if _, err := UpdateSum(root); err == nil || !strings.Contains(err.Error(), "002_b.sql was edited") {
		t.Fatalf("make generate accepted an edited migration: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(root, SumFile)); string(after) != string(before) {
		t.Fatal("a refused make generate changed the sum file")
	}
}

func TestMakeGenerateListsANewMigrationAndKeepsTheOthers(t *testing.T) {
	root := sumRoot(t, map[string]string{"001_a.sql": "a"})
	if _, err := UpdateSum(root); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "migrations", "002_b.sql"), "b", 0o644)
	if err := CheckSum(root); err == nil || !strings.Contains(err.Error(), "002_b.sql is not listed") {
		t.Fatalf("CheckSum before generate = %v", err)
	}
	if added, err := UpdateSum(root); err != nil || !reflect.DeepEqual(added, []string{"002_b.sql"}) {
		t.Fatalf("UpdateSum = %v, %v", added, err)
	}
	b, _ := os.ReadFile(filepath.Join(root, SumFile))
	want := "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  001_a.sql\n" +
		"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d  002_b.sql\n"
	if string(b) != want {
		t.Fatalf("sum file:\n%s\nwant:\n%s", b, want)
	}
}
