package e2e

import (
	"regexp"
	"strings"
	"time"
)

// pmTimeout bounds one package manager run: a migration, a dump and a
// lintian-free install take seconds here.
const pmTimeout = 3 * time.Minute

// format is one package manager and how an operator drives it.
type format struct {
	Name      string
	pkg       func(v *variant) string
	install   func(pkg string) []string
	upgrade   func(pkg string) []string
	downgrade func(pkg string) []string
	reinstall func(pkg string) []string
	remove    []string
	purge     []string // nil when the format has no purge
	recover   []string // the documented command after a failed upgrade
	version   []string // prints the installed version
	// reportsFailure tells whether the package manager told the operator
	// that a post-install script failed.
	reportsFailure func(res result) bool
}

// Debian's rpm database knows none of this machine's packages, so every rpm
// transaction here runs with --nodeps; dpkg sees the real dpkg database.
var formats = []format{
	{
		Name:      "deb",
		pkg:       func(v *variant) string { return v.DEB },
		install:   func(p string) []string { return []string{"dpkg", "-i", p} },
		upgrade:   func(p string) []string { return []string{"dpkg", "-i", p} },
		downgrade: func(p string) []string { return []string{"dpkg", "-i", p} },
		reinstall: func(p string) []string { return []string{"dpkg", "-i", p} },
		remove:    []string{"dpkg", "-r", "openwatch"},
		purge:     []string{"dpkg", "-P", "openwatch"},
		recover:   []string{"dpkg", "--configure", "-a"},
		version:   []string{"dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", "openwatch"},
		reportsFailure: func(res result) bool {
			return res.code != 0 && dpkgPostinstFailed.MatchString(res.out)
		},
	},
	{
		Name:      "rpm",
		pkg:       func(v *variant) string { return v.RPM },
		install:   func(p string) []string { return []string{"rpm", "-i", "--nodeps", p} },
		upgrade:   func(p string) []string { return []string{"rpm", "-U", "--nodeps", p} },
		downgrade: func(p string) []string { return []string{"rpm", "-U", "--oldpackage", "--nodeps", p} },
		reinstall: func(p string) []string { return []string{"rpm", "-U", "--replacepkgs", "--nodeps", p} },
		remove:    []string{"rpm", "-e", "--nodeps", "openwatch"},
		recover:   []string{helperPath},
		version:   []string{"rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", "openwatch"},
		// rpm (4.18 here, as on RHEL 9) takes a failed %post as a warning and
		// still exits 0; dnf likewise prints "Error in POSTIN scriptlet" and
		// completes. The warning is what the operator gets.
		reportsFailure: func(res result) bool {
			return rpmPostFailed.MatchString(res.out)
		},
	},
}

var (
	dpkgPostinstFailed = regexp.MustCompile(`installed openwatch package post-installation script subprocess returned error exit status [1-9]`)
	rpmPostFailed      = regexp.MustCompile(`warning: %post\(openwatch-[^)]*\) scriptlet failed, exit status [1-9]`)
)

// installedVersion is the package version the package manager records, and
// for dpkg its status abbreviation ("ii ", "iF " for half-configured).
func (e *env) installedVersion() string {
	return strings.TrimSpace(e.r.run(30*time.Second, e.f.version...).out)
}
