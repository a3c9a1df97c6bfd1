// Command gen renders dist/ and nfpm.yaml from the spec in package gen.
//
//	go run ./cmd/gen          write the generated files
//	go run ./cmd/gen -check   fail, printing a diff, if they are out of date
//
// It also appends new migrations to migrations/openwatch.sum (gen.SumFile),
// and refuses when a listed one was edited, removed or reordered.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/openwatch/openwatch/gen"
)

func main() {
	check := flag.Bool("check", false, "compare instead of writing; exit 1 and print a diff on drift")
	root := flag.String("root", ".", "repository root to write into")
	flag.Parse()

	spec := gen.Default()
	files, err := gen.Render(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if *check {
		if err := gen.Check(*root, files, os.Stdout, spec.DistDir); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		if err := gen.CheckSum(*root); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		return
	}
	added, err := gen.UpdateSum(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	for _, name := range added {
		fmt.Fprintf(os.Stderr, "gen: listed %s in %s\n", name, gen.SumFile)
	}
	if err := gen.Write(*root, files); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	// Files the spec no longer renders would otherwise linger in dist/.
	stale, err := gen.Stale(*root, files, spec.DistDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	for _, rel := range stale {
		if err := os.Remove(filepath.Join(*root, filepath.FromSlash(rel))); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "gen: removed stale", rel)
	}
}
