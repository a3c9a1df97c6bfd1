package gen

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// realBinary is the openwatch binary built from this tree: the stubbed
// openwatch hands `migrate --record` (the journal's one writer) to it.
var realBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "owgen-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	realBinary = filepath.Join(dir, "openwatch")
	build := exec.Command("go", "build", "-o", realBinary, "../cmd/openwatch")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the openwatch binary for the helper's journal:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
