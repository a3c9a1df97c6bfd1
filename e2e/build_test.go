package e2e

import (
	"path/filepath"

	"github.com/openwatch/openwatch/internal/pkgbuild"
)

// buildPackages builds the .deb and .rpm for a variant from the repository's
// nfpm.yaml with its binary, into a directory of its own under pkgDir, and
// returns their host paths.
func buildPackages(v *variant) (deb, rpm string, err error) {
	res, err := pkgbuild.Build(pkgbuild.Options{
		Config:  filepath.Join(srcRoot, "nfpm.yaml"),
		Version: v.Version,
		Release: v.Release,
		Binary:  v.Binary,
		OutDir:  filepath.Join(pkgDir, v.Name),
	})
	if err != nil {
		return "", "", err
	}
	return res.DEB, res.RPM, nil
}
