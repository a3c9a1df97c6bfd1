// Package repo publishes built packages as signed repositories, with the
// tools a Debian or EL packager uses: one dnf repository per EL release
// (createrepo_c, repomd.xml signed by gpg into repomd.xml.asc) and one apt
// repository in the standard layout (apt-ftparchive; dists/<suite>/Release,
// Release.gpg and InRelease signed by gpg), plus the public key.
//
// The output is reproducible: the same packages and key give the same bytes.
// Every time written into the metadata is one epoch (SOURCE_DATE_EPOCH, else
// the newest package's own build time, and never before the key's creation,
// which apt's gpgv would refuse), and the signatures are made at that time
// (RSA signatures are deterministic).
package repo

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options say what to publish.
type Options struct {
	OutDir string // the repository tree, e.g. dist/repo; replaced as a whole
	// RPMRepos are the dnf repositories, each a directory under
	// OutDir/rpm (el8, el9, el10) and its RPMs.
	RPMRepos []RPMRepo
	DEBs     []string // the .debs of the apt repository under OutDir/deb
	// SigningKey is the OpenPGP secret key file (armored or binary, one
	// signing key) and Passphrase what unlocks it (from the environment).
	SigningKey, Passphrase string
	Suite, Component       string // apt: default stable, main
	Origin                 string // apt Release Origin and Label: default openwatch
	// Epoch is the time written into the metadata and the signatures
	// (zero: SOURCE_DATE_EPOCH, else the newest package's build time).
	Epoch time.Time
	// KeyName is the public key's file name in OutDir (default openwatch.asc).
	KeyName string
}

// RPMRepo is one dnf repository.
type RPMRepo struct {
	Name string   // directory under OutDir/rpm: el9
	RPMs []string // its packages
}

// Result says where things are.
type Result struct {
	PublicKey   string            // OutDir/openwatch.asc
	RPMRepos    map[string]string // name -> directory (baseurl)
	DEBRepo     string            // OutDir/deb (the URI of the sources line)
	Fingerprint string
	Epoch       time.Time
}

// Errors.
var (
	ErrNoKey      = errors.New("a repository must be signed: no signing key given")
	ErrNoPackages = errors.New("no packages to publish")
	ErrKey        = errors.New("cannot use the signing key")
)

// Build writes the repositories into a new directory beside OutDir and then
// puts it in OutDir's place: a failed build leaves the previous tree.
func Build(o Options) (Result, error) {
	var res Result
	if o.SigningKey == "" {
		return res, ErrNoKey
	}
	if len(o.RPMRepos) == 0 && len(o.DEBs) == 0 {
		return res, ErrNoPackages
	}
	for _, r := range o.RPMRepos {
		if len(r.RPMs) == 0 || r.Name == "" || strings.ContainsAny(r.Name, "/.") {
			return res, fmt.Errorf("%w for the dnf repository %q", ErrNoPackages, r.Name)
		}
	}
	if o.Suite == "" {
		o.Suite = "stable"
	}
	if o.Component == "" {
		o.Component = "main"
	}
	if o.Origin == "" {
		o.Origin = "openwatch"
	}
	if o.KeyName == "" {
		o.KeyName = "openwatch.asc"
	}
	out, err := filepath.Abs(o.OutDir)
	if err != nil {
		return res, err
	}
	g, err := newSigner(o.SigningKey, o.Passphrase)
	if err != nil {
		return res, err
	}
	defer g.close()
	res.Fingerprint = g.fpr

	epoch := o.Epoch
	if epoch.IsZero() {
		if epoch, err = packagesEpoch(o); err != nil {
			return res, err
		}
	}
	if epoch.Before(g.created) {
		epoch = g.created // gpgv refuses a signature older than its key
	}
	epoch = epoch.UTC().Truncate(time.Second)
	res.Epoch = epoch
	g.at = epoch

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".repo-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return res, err
	}

	res.RPMRepos = map[string]string{}
	for _, r := range o.RPMRepos {
		if err := rpmRepo(g, filepath.Join(tmp, "rpm", r.Name), r.RPMs, epoch); err != nil {
			return res, fmt.Errorf("dnf repository %s: %w", r.Name, err)
		}
		res.RPMRepos[r.Name] = filepath.Join(out, "rpm", r.Name)
	}
	if len(o.DEBs) > 0 {
		if err := debRepo(g, filepath.Join(tmp, "deb"), o, epoch); err != nil {
			return res, fmt.Errorf("apt repository: %w", err)
		}
		res.DEBRepo = filepath.Join(out, "deb")
	}
	pub, err := g.gpg("", "--armor", "--export", g.fpr)
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(tmp, o.KeyName), pub, 0o644); err != nil {
		return res, err
	}
	res.PublicKey = filepath.Join(out, o.KeyName)
	if err := setTimes(tmp, epoch); err != nil {
		return res, err
	}
	if err := os.RemoveAll(out); err != nil {
		return res, err
	}
	return res, os.Rename(tmp, out)
}

// rpmRepo copies the RPMs into dir and runs createrepo_c there: gzip
// metadata (EL 8's dnf reads no zstd), no sqlite databases (not
// reproducible, and dnf does not need them), every timestamp the epoch.
func rpmRepo(g *signer, dir string, rpms []string, epoch time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range rpms {
		if err := copyFile(f, filepath.Join(dir, filepath.Base(f)), epoch); err != nil {
			return err
		}
	}
	rev := strconv.FormatInt(epoch.Unix(), 10)
	if err := run(dir, nil, "createrepo_c", "--quiet", "--no-database", "--general-compress-type=gz",
		"--revision", rev, "--set-timestamp-to-revision", "."); err != nil {
		return err
	}
	md := filepath.Join(dir, "repodata", "repomd.xml")
	return g.sign(md, md+".asc", "--armor", "--detach-sign")
}

// debRepo lays out pool/<component>/<letter>/<source>/ and
// dists/<suite>/<component>/binary-<arch>/Packages{,.gz} with
// apt-ftparchive, then the signed Release.
func debRepo(g *signer, dir string, o Options, epoch time.Time) error {
	comp := o.Component
	archs := map[string]bool{}
	for _, f := range o.DEBs {
		base := filepath.Base(f)
		name, _, _ := strings.Cut(base, "_")
		arch := strings.TrimSuffix(base[strings.LastIndex(base, "_")+1:], ".deb")
		if name == "" || arch == "" || !strings.HasSuffix(base, ".deb") {
			return fmt.Errorf("%s is not named NAME_VERSION_ARCH.deb", base)
		}
		archs[arch] = true
		pool := filepath.Join(dir, "pool", comp, name[:1], name)
		if err := os.MkdirAll(pool, 0o755); err != nil {
			return err
		}
		if err := copyFile(f, filepath.Join(pool, base), epoch); err != nil {
			return err
		}
	}
	if archs["all"] {
		delete(archs, "all")
		if len(archs) == 0 {
			archs["amd64"] = true
		}
	}
	var archList []string
	for a := range archs {
		archList = append(archList, a)
	}
	sort.Strings(archList)
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch.Unix(), 10)}
	suite := filepath.Join(dir, "dists", o.Suite)
	for _, arch := range archList {
		bin := filepath.Join(suite, comp, "binary-"+arch)
		if err := os.MkdirAll(bin, 0o755); err != nil {
			return err
		}
		pkgs, err := output(dir, env, "apt-ftparchive", "--arch", arch, "packages", filepath.Join("pool", comp))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(bin, "Packages"), pkgs, 0o644); err != nil {
			return err
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression) // no name, no time: reproducible
		zw.Write(pkgs)
		if err := zw.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(bin, "Packages.gz"), gz.Bytes(), 0o644); err != nil {
			return err
		}
	}
	set := func(k, v string) []string { return []string{"-o", "APT::FTPArchive::Release::" + k + "=" + v} }
	args := []string{}
	for _, kv := range [][2]string{{"Origin", o.Origin}, {"Label", o.Origin}, {"Suite", o.Suite}, {"Codename", o.Suite},
		{"Architectures", strings.Join(archList, " ")}, {"Components", comp},
		{"Description", o.Origin + " packages"}} {
		args = append(args, set(kv[0], kv[1])...)
	}
	rel, err := output(dir, env, "apt-ftparchive", append(args, "release", filepath.Join("dists", o.Suite))...)
	if err != nil {
		return err
	}
	// apt-ftparchive 2.6 dates Release now, whatever SOURCE_DATE_EPOCH says:
	// the epoch replaces its Date line (apt's own format), so that the same
	// packages give the same Release.
	rel = dateRE.ReplaceAll(rel, []byte("Date: "+epoch.UTC().Format("Mon, 02 Jan 2006 15:04:05 +0000")))
	release := filepath.Join(suite, "Release")
	if err := os.WriteFile(release, rel, 0o644); err != nil {
		return err
	}
	if err := g.sign(release, filepath.Join(suite, "Release.gpg"), "--armor", "--detach-sign"); err != nil {
		return err
	}
	return g.sign(release, filepath.Join(suite, "InRelease"), "--clearsign")
}

var dateRE = regexp.MustCompile(`(?m)^Date: .*$`)

// packagesEpoch is SOURCE_DATE_EPOCH, else the newest package's own build
// time: an RPM's BUILDTIME, a .deb's member time (both nfpm's mtime).
func packagesEpoch(o Options) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
		}
		return time.Unix(n, 0), nil
	}
	var newest time.Time
	for _, r := range o.RPMRepos {
		for _, f := range r.RPMs {
			out, err := output("", nil, "rpm", "-qp", "--qf", "%{BUILDTIME}", f)
			if err != nil {
				return newest, err
			}
			n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				return newest, fmt.Errorf("%s: BUILDTIME %q", f, out)
			}
			if t := time.Unix(n, 0); t.After(newest) {
				newest = t
			}
		}
	}
	for _, f := range o.DEBs {
		t, err := arTime(f)
		if err != nil {
			return newest, err
		}
		if t.After(newest) {
			newest = t
		}
	}
	return newest, nil
}

// arTime is the modification time of a .deb's first member (debian-binary).
func arTime(deb string) (time.Time, error) {
	f, err := os.Open(deb)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	hdr := make([]byte, 8+60)
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr[:8]) != "!<arch>\n" {
		return time.Time{}, fmt.Errorf("%s is not a .deb (ar archive): %v", deb, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(hdr[8+16:8+28])), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: member time: %w", deb, err)
	}
	return time.Unix(n, 0), nil
}

func copyFile(src, dst string, t time.Time) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return err
	}
	return os.Chtimes(dst, t, t)
}

// setTimes gives every file and directory under root the epoch.
func setTimes(root string, t time.Time) error {
	var paths []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		return err
	}
	for i := len(paths) - 1; i >= 0; i-- { // children before their directory
		if err := os.Chtimes(paths[i], t, t); err != nil {
			return err
		}
	}
	return nil
}

func run(dir string, env []string, name string, args ...string) error {
	_, err := output(dir, env, name, args...)
	return err
}

func output(dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
