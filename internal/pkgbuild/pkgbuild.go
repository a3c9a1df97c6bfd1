// Package pkgbuild builds the .rpm and .deb from the rendered nfpm.yaml with
// nfpm used as a Go library: no nfpm, rpmbuild or dpkg-deb is needed.
package pkgbuild

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
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
	// RPMTargets are the RPMs to build, one per distribution's dnf (default:
	// the spec's Gate.RPMTargets): each gets the dist tag on its release and
	// the dnf plugin in that target's plugin directory.
	RPMTargets []gen.RPMTarget
	// PluginDst is the dnf plugin's destination in the config, which each
	// target replaces (default: the spec's DNFPluginPath()).
	PluginDst string
	// SigningKey is an OpenPGP secret key file (armored or binary) holding
	// exactly one key that can sign: every RPM gets header and
	// header+payload signatures (what rpm -K checks), the DEB a debsign
	// _gpgorigin member. Empty: unsigned packages.
	SigningKey string
	// Passphrase unlocks SigningKey when it is encrypted (callers read it
	// from the environment, never from argv: cmd/mkpkg takes PassphraseEnv).
	Passphrase string
}

// PassphraseEnv is the environment variable cmd/mkpkg reads the signing
// key's passphrase from: nfpm's own name for it.
const PassphraseEnv = "NFPM_PASSPHRASE"

// Result holds the paths of the built packages.
type Result struct {
	RPM  string   // the first target's
	RPMs []string // every target's, in the order of Options.RPMTargets
	DEB  string
}

// Errors Build returns, wrapped with context.
var (
	ErrNoConfig = errors.New("nfpm config not given")
	ErrNoBinary = errors.New("binary not given")
	ErrNoEntry  = errors.New("nfpm config has no entry for the binary")
	ErrNoPlugin = errors.New("nfpm config has no entry for the dnf plugin")
	ErrSigning  = errors.New("cannot sign with the signing key")
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
	if opts.SigningKey != "" {
		key, err := filepath.Abs(opts.SigningKey)
		if err != nil {
			return res, err
		}
		if _, err := os.Stat(key); err != nil {
			return res, fmt.Errorf("%w: %w", ErrSigning, err)
		}
		opts.SigningKey = key
	}
	spec := gen.Default()
	if opts.BinaryDst == "" {
		opts.BinaryDst = spec.Paths.Binary
	}
	if len(opts.RPMTargets) == 0 {
		opts.RPMTargets = spec.Gate.RPMTargets
	}
	if opts.PluginDst == "" {
		opts.PluginDst = spec.DNFPluginPath()
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
	type build struct {
		format string
		target gen.RPMTarget
	}
	var builds []build
	for _, t := range opts.RPMTargets {
		builds = append(builds, build{"rpm", t})
	}
	builds = append(builds, build{format: "deb"})
	for _, b := range builds {
		info, err := config.Get(b.format)
		if err != nil {
			return res, fmt.Errorf("%s: %w", b.format, err)
		}
		if opts.Version != "" {
			info.Version = opts.Version
		}
		if opts.Release != "" {
			info.Release = opts.Release
		}
		info.Contents = copyContents(info.Contents)
		if b.format == "rpm" {
			if b.target.Dist != "" {
				info.Release += "." + b.target.Dist
			}
			if err := placePlugin(info, opts.PluginDst, b.target.PluginDir); err != nil {
				return res, fmt.Errorf("rpm %s: %w", b.target.Dist, err)
			}
			if b.target.Python != "" {
				info.Depends = append(append([]string{}, info.Depends...), "python(abi) = "+b.target.Python)
			}
		}
		sign(info, opts.SigningKey, opts.Passphrase)
		info = nfpm.WithDefaults(info)
		if err := resolve(info, cfgDir, binary, opts.BinaryDst); err != nil {
			return res, fmt.Errorf("%s: %w", b.format, err)
		}
		out, err := write(info, b.format, opts.OutDir)
		if err != nil {
			if errors.As(err, new(*nfpm.ErrSigningFailure)) {
				return res, fmt.Errorf("%w %s: %w", ErrSigning, opts.SigningKey, err)
			}
			return res, err
		}
		if b.format == "rpm" {
			res.RPMs = append(res.RPMs, out)
		} else {
			res.DEB = out
		}
	}
	res.RPM = res.RPMs[0]
	return res, nil
}

// sign sets nfpm's native signing (pure Go; no gpg, rpmsign or debsigs) on
// info, or clears it: a config's signature section never signs by accident.
func sign(info *nfpm.Info, key, passphrase string) {
	info.RPM.Signature = nfpm.RPMSignature{}
	info.Deb.Signature = nfpm.DebSignature{}
	if key == "" {
		return
	}
	info.RPM.Signature.KeyFile = key
	info.RPM.Signature.KeyPassphrase = passphrase
	// debsign's layout (an _gpgorigin member over debian-binary, control
	// and data), which debsig-verify and dpkg-sig's successors check.
	info.Deb.Signature.KeyFile = key
	info.Deb.Signature.KeyPassphrase = passphrase
	info.Deb.Signature.Method = "debsign"
	info.Deb.Signature.Type = "origin"
}

// copyContents copies the entries, so that one build's changes stay its own.
func copyContents(in files.Contents) files.Contents {
	out := make(files.Contents, 0, len(in))
	for _, c := range in {
		cc := *c
		if c.FileInfo != nil {
			fi := *c.FileInfo
			cc.FileInfo = &fi
		}
		out = append(out, &cc)
	}
	return out
}

// placePlugin moves the dnf plugin's entry (destination dst) into dir.
func placePlugin(info *nfpm.Info, dst, dir string) error {
	for _, c := range info.Contents {
		if c.Destination == dst {
			c.Destination = path.Join(dir, path.Base(dst))
			return nil
		}
	}
	return fmt.Errorf("%w (dst %s)", ErrNoPlugin, dst)
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
