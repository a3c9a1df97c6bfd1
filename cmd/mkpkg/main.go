// Command mkpkg builds the .deb and one .rpm per target distribution
// (openwatch-<version>-<release>.el9.x86_64.rpm…; see internal/pkgbuild),
// signed with -signing-key FILE (its passphrase, if any, in NFPM_PASSPHRASE:
// never on the command line).
//
//	go run ./cmd/mkpkg -version 1.1.0 -release 1 -binary build/openwatch -out dist [-signing-key key.asc]
package main

import (
	"errors"
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
	flag.StringVar(&o.SigningKey, "signing-key", "", "OpenPGP secret key file that signs every package (passphrase in $"+pkgbuild.PassphraseEnv+"); empty: unsigned")
	flag.Parse()
	o.Passphrase = os.Getenv(pkgbuild.PassphraseEnv)
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	res, err := pkgbuild.Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		if errors.Is(err, pkgbuild.ErrSigning) {
			fmt.Fprintf(os.Stderr, "mkpkg: the key file must hold one OpenPGP secret key that can sign; an encrypted one needs its passphrase in %s: %s=... make packages SIGNING_KEY=%s\n",
				pkgbuild.PassphraseEnv, pkgbuild.PassphraseEnv, o.SigningKey)
		}
		os.Exit(1)
	}
	if o.SigningKey == "" {
		fmt.Fprintln(os.Stderr, "mkpkg: the packages are NOT signed (no signing key given); to sign them: make packages SIGNING_KEY=FILE")
	} else {
		fmt.Fprintf(os.Stderr, "mkpkg: signed every package with %s\n", o.SigningKey)
	}
	for _, rpm := range res.RPMs {
		fmt.Println(rpm)
	}
	fmt.Println(res.DEB)
}
