// Package pkgbuild builds the .rpm and .deb from the rendered nfpm.yaml with
// nfpm used as a Go library: no nfpm, rpmbuild or dpkg-deb is needed.
package pkgbuild

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/openwatch/openwatch/gen"
)

// Options says what to build.
type Options struct {
	Config  string // nfpm.yaml; its content src paths are relative to its directory
	Version string // package version, e.g. 1.1.0 (default: nfpm.yaml's)
	Release string // package release, e.g. 1 (default: nfpm.yaml's)
	Binary  string // the built binary; replaces the binary's src in nfpm.yaml
	OutDir  string // where the packages are written
	// BinaryDst is the installed path that identifies the binary's entry
	// (default: the spec's Paths.Binary).
	BinaryDst string
}

// Result holds the paths of the built packages.
type Result struct {
	RPM, DEB string
}

// Errors Build returns, wrapped with context.
var (
	ErrNoConfig = errors.New("nfpm config not given")
	ErrNoBinary = errors.New("binary not given")
	ErrNoEntry  = errors.New("nfpm config has no entry for the binary")
)

// Build writes the .rpm and the .deb into opts.OutDir.
func Build(opts Options) (Result, error) {
	var res Result
	if opts.Config == "" {
		return res, ErrNoConfig
	}
	if opts.Binary == "" {
		return res, ErrNoBinary
	}
	if opts.OutDir == "" {
		opts.OutDir = "."
	}
	if opts.BinaryDst == "" {
		opts.BinaryDst = gen.Default().Paths.Binary
	}
	binary, err := filepath.Abs(opts.Binary)
	if err != nil {
		return res, err
	}
	if st, err := os.Stat(binary); err != nil {
		return res, fmt.Errorf("binary: %w", err)
	} else if st.IsDir() {
		return res, fmt.Errorf("binary %s is a directory", binary)
	}
	cfgDir, err := filepath.Abs(filepath.Dir(opts.Config))
	if err != nil {
		return res, err
	}
	config, err := nfpm.ParseFile(opts.Config)
	if err != nil {
		return res, fmt.Errorf("parse %s: %w", opts.Config, err)
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return res, err
	}
	for _, format := range []string{"rpm", "deb"} {
		info, err := config.Get(format)
		if err != nil {
			return res, fmt.Errorf("%s: %w", format, err)
		}
		if opts.Version != "" {
			info.Version = opts.Version
		}
		if opts.Release != "" {
			info.Release = opts.Release
		}
		info = nfpm.WithDefaults(info)
		if err := resolve(info, cfgDir, binary, opts.BinaryDst); err != nil {
			return res, fmt.Errorf("%s: %w", format, err)
		}
		out, err := write(info, format, opts.OutDir)
		if err != nil {
			return res, err
		}
		if format == "rpm" {
			res.RPM = out
		} else {
			res.DEB = out
		}
	}
	return res, nil
}

// resolve makes src paths absolute against the config's directory and puts
// the binary in.
func resolve(info *nfpm.Info, dir, binary, binaryDst string) error {
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	found := false
	for _, c := range info.Contents {
		if c.Destination == binaryDst && c.Type == "" {
			c.Source = binary
			found = true
			continue
		}
		rel(&c.Source)
	}
	if !found {
		return fmt.Errorf("%w (dst %s)", ErrNoEntry, binaryDst)
	}
	for _, p := range []*string{
		&info.Scripts.PreInstall, &info.Scripts.PostInstall,
		&info.Scripts.PreRemove, &info.Scripts.PostRemove,
		&info.RPM.Scripts.PreTrans, &info.RPM.Scripts.PostTrans,
	} {
		rel(p)
	}
	return nil
}

// write packages info into outDir atomically (a failed build leaves no
// partial package) and returns the package's path.
func write(info *nfpm.Info, format, outDir string) (string, error) {
	pkg, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	target := filepath.Join(outDir, pkg.ConventionalFileName(info))
	f, err := os.CreateTemp(outDir, ".pkgbuild-*."+format)
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	info.Target = target
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("build %s: %w", format, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), target); err != nil {
		return "", err
	}
	return target, nil
}
