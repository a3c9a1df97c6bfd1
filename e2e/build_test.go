package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/goreleaser/nfpm/v2"

	"github.com/openwatch/openwatch/gen"
	"github.com/openwatch/openwatch/internal/pkgbuild"
)

// buildPackages builds the .deb and .rpm for a variant from the repository's
// nfpm.yaml with its binary, into a directory of its own under pkgDir, and
// returns their host paths. The RPM is the one for the dnf on this machine
// (Debian's), so that its plugin is where that dnf looks.
func buildPackages(v *variant) (deb, rpm string, err error) {
	targets, err := hostRPMTargets()
	if err != nil {
		return "", "", err
	}
	res, err := pkgbuild.Build(pkgbuild.Options{
		Config:     filepath.Join(srcRoot, "nfpm.yaml"),
		Version:    v.Version,
		Release:    v.Release,
		Binary:     v.Binary,
		OutDir:     filepath.Join(pkgDir, v.Name),
		RPMTargets: targets,
	})
	if err != nil {
		return "", "", err
	}
	return res.DEB, res.RPM, nil
}

var (
	hostTargetsOnce sync.Once
	hostTargets     []gen.RPMTarget
	hostTargetsErr  error
)

// hostRPMTargets is the one RPM target matching this machine's dnf: no
// dist tag, and the plugin directory that dnf (the Python it runs on) loads
// plugins from, as dnf itself says.
func hostRPMTargets() ([]gen.RPMTarget, error) {
	hostTargetsOnce.Do(func() {
		out, err := exec.Command("/usr/bin/python3", "-c", "import dnf.const; print(dnf.const.PLUGINPATH)").Output()
		if err != nil {
			hostTargetsErr = fmt.Errorf("asking dnf for its plugin directory: %v", err)
			return
		}
		hostTargets = []gen.RPMTarget{{PluginDir: strings.TrimSpace(string(out))}}
	})
	return hostTargets, hostTargetsErr
}

var (
	baseRPMOnce sync.Once
	baseRPM     string
	baseRPMErr  error
)

// systemRPM builds, once, an empty RPM that provides what the openwatch RPM
// requires, so that dnf, on this machine's empty rpm database, can resolve
// it; it returns its path inside a root.
func systemRPM() (string, error) {
	baseRPMOnce.Do(func() {
		dir := filepath.Join(pkgDir, "e2e-system")
		if baseRPMErr = os.MkdirAll(dir, 0o755); baseRPMErr != nil {
			return
		}
		info := nfpm.WithDefaults(&nfpm.Info{
			Name: "e2e-system", Arch: "noarch", Platform: "linux", Version: "1", Release: "1",
			Maintainer: "e2e", Description: "stands in for the system packages dnf cannot see here",
			Overridables: nfpm.Overridables{Provides: append([]string{}, gen.Default().RPMRequires...)},
		})
		p, err := nfpm.Get("rpm")
		if err != nil {
			baseRPMErr = err
			return
		}
		path := filepath.Join(dir, p.ConventionalFileName(info))
		f, err := os.Create(path)
		if err != nil {
			baseRPMErr = err
			return
		}
		if err := p.Package(info, f); err != nil {
			f.Close()
			baseRPMErr = err
			return
		}
		baseRPMErr = f.Close()
		baseRPM = "/e2e-pkgs/" + strings.TrimPrefix(path, pkgDir+"/")
	})
	return baseRPM, baseRPMErr
}
