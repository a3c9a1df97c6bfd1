package e2e

import "errors"

// buildPackages builds the .deb and .rpm for a variant into pkgDir and
// returns their host paths.
func buildPackages(v *variant) (deb, rpm string, err error) {
	return "", "", errors.New("internal/pkgbuild has not landed yet")
}
