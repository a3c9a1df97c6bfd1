// Command mkrepo publishes the packages of `make packages` as signed
// repositories (see internal/repo): dist/repo/rpm/<el8|el9|el10>/ for dnf,
// dist/repo/deb/ for apt, dist/repo/openwatch.asc the public key. The
// signing key's passphrase, if any, comes from NFPM_PASSPHRASE, never argv.
//
//	go run ./cmd/mkrepo -signing-key key.asc [-dist dist] [-out dist/repo]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/openwatch/openwatch/gen"
	"github.com/openwatch/openwatch/internal/pkgbuild"
	"github.com/openwatch/openwatch/internal/repo"
)

func main() {
	var o repo.Options
	dist := flag.String("dist", "dist", "where make packages wrote the packages")
	flag.StringVar(&o.OutDir, "out", "dist/repo", "the repository tree (replaced)")
	flag.StringVar(&o.SigningKey, "signing-key", "", "OpenPGP secret key file that signs the repositories (passphrase in $"+pkgbuild.PassphraseEnv+")")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	o.Passphrase = os.Getenv(pkgbuild.PassphraseEnv)
	spec := gen.Default()
	for _, t := range spec.Gate.RPMTargets {
		rpms, _ := filepath.Glob(filepath.Join(*dist, spec.Name+"-*."+t.Dist+".*.rpm"))
		if len(rpms) == 0 {
			fail(fmt.Errorf("no %s RPM in %s: run make packages first", t.Dist, *dist))
		}
		sort.Strings(rpms)
		o.RPMRepos = append(o.RPMRepos, repo.RPMRepo{Name: t.Dist, RPMs: rpms})
	}
	o.DEBs, _ = filepath.Glob(filepath.Join(*dist, spec.Name+"_*.deb"))
	if len(o.DEBs) == 0 {
		fail(fmt.Errorf("no .deb in %s: run make packages first", *dist))
	}
	res, err := repo.Build(o)
	if errors.Is(err, repo.ErrNoKey) {
		fail(errors.New("the repositories must be signed: make repo SIGNING_KEY=FILE (the key that signed the packages)"))
	}
	if errors.Is(err, repo.ErrKey) {
		fail(fmt.Errorf("%w\nthe key file must hold one OpenPGP secret key that can sign; an encrypted one needs its passphrase in %s", err, pkgbuild.PassphraseEnv))
	}
	if err != nil {
		fail(err)
	}
	names := make([]string, 0, len(res.RPMRepos))
	for n := range res.RPMRepos {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println(res.RPMRepos[n])
	}
	fmt.Println(res.DEBRepo)
	fmt.Println(res.PublicKey)
	fmt.Fprintf(os.Stderr, "mkrepo: signed by %s at %s\n", res.Fingerprint, res.Epoch.Format("2006-01-02T15:04:05Z"))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkrepo:", err)
	os.Exit(1)
}
