// Command mkpkg builds the .deb and one .rpm per target distribution
// (openwatch-<version>-<release>.el9.x86_64.rpm…; see internal/pkgbuild).
//
//	go run ./cmd/mkpkg -version 1.1.0 -release 1 -binary build/openwatch -out dist
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/openwatch/openwatch/internal/pkgbuild"
)

func main() {
	var o pkgbuild.Options
	flag.StringVar(&o.Config, "config", "nfpm.yaml", "nfpm config (src paths relative to its directory)")
	flag.StringVar(&o.Version, "version", "", "package version (default: the config's)")
	flag.StringVar(&o.Release, "release", "", "package release (default: the config's)")
	flag.StringVar(&o.Binary, "binary", "build/openwatch", "the built binary")
	flag.StringVar(&o.OutDir, "out", "dist", "output directory")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	res, err := pkgbuild.Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
	for _, rpm := range res.RPMs {
		fmt.Println(rpm)
	}
	fmt.Println(res.DEB)
}
