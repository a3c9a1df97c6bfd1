package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// `dpkg --root DIR --force-script-chrootless` runs the maintainer scripts in
// the root that runs dpkg, with DPKG_ROOT=DIR. The outer root here has its
// own openwatch whose database is behind its binary (the new release
// unpacked, not yet configured), so a postinst that ran the outer helper
// would migrate it. Installing the old release into /target and upgrading it
// to the new one must create the system user and group in /target, leave
// the outer /etc/passwd, /etc/group and database exactly as they were, and
// name the command that migrates the target's database from inside it.
func TestDpkgRootChrootless(t *testing.T) {
	e := newEnv(t, formats[0], "dash")
	old, nw := e.vs["old"], e.vs["new"]
	e.installAndInitialise(old)
	if res := e.pm("dpkg", "--unpack", nw.DEB); res.code != 0 {
		t.Fatalf("dpkg --unpack %s: exit %d\n%s", nw.FullVersion(), res.code, res.out)
	}
	schema, data := e.schemaVersions(), e.data()
	passwd, group := e.r.readFile("/etc/passwd"), e.r.readFile("/etc/group")
	const target = "/target"
	setup := `set -e
T=` + target + `
mkdir -p $T/etc $T/var/lib/dpkg/info $T/var/lib/dpkg/updates $T/usr/sbin
: >$T/var/lib/dpkg/status
: >$T/var/lib/dpkg/available
printf 'root:x:0:0:root:/root:/bin/sh\n' >$T/etc/passwd
printf 'root:x:0:\n' >$T/etc/group
printf 'root:*:20000:0:99999:7:::\n' >$T/etc/shadow
printf 'root:*::\n' >$T/etc/gshadow
cp /usr/sbin/nologin $T/usr/sbin/nologin
`
	if res := e.r.run(30*time.Second, "sh", "-c", setup); res.code != 0 {
		t.Fatalf("preparing %s: %s", target, res.out)
	}
	outerUnchanged := func(when string) {
		t.Helper()
		if got := e.r.readFile("/etc/passwd"); got != passwd {
			t.Errorf("%s: the outer /etc/passwd changed:\n%s", when, got)
		}
		if got := e.r.readFile("/etc/group"); got != group {
			t.Errorf("%s: the outer /etc/group changed:\n%s", when, got)
		}
		if got := e.schemaVersions(); !slices.Equal(got, schema) {
			t.Errorf("%s: the outer database's schema_migrations = %v, want %v", when, got, schema)
		}
		if got := e.data(); got != data {
			t.Errorf("%s: the outer database's rows changed", when)
		}
	}
	dpkgRoot := func(v *variant) result {
		return e.pm("dpkg", "--root="+target, "--force-script-chrootless", "--force-depends", "-i", v.DEB)
	}

	res := dpkgRoot(old)
	if res.code != 0 {
		t.Fatalf("dpkg --root install of %s: exit %d\n%s", old.FullVersion(), res.code, res.out)
	}
	outerUnchanged("after the install into " + target)
	tp, tg := e.r.readFile(target+"/etc/passwd"), e.r.readFile(target+"/etc/group")
	if !strings.Contains(tp, "\nopenwatch:x:") || !strings.Contains(tp, ":/var/lib/openwatch:/usr/sbin/nologin\n") {
		t.Errorf("%s/etc/passwd lacks the openwatch user:\n%s", target, tp)
	}
	if !strings.Contains(tg, "\nopenwatch:x:") {
		t.Errorf("%s/etc/group lacks the openwatch group:\n%s", target, tg)
	}
	if !e.r.exists(target + backupDir) {
		t.Errorf("%s%s was not created", target, backupDir)
	}

	res = dpkgRoot(nw)
	if res.code != 0 {
		t.Fatalf("dpkg --root upgrade to %s: exit %d\n%s", nw.FullVersion(), res.code, res.out)
	}
	outerUnchanged("after the upgrade in " + target)
	if want := `run: chroot "` + target + `" ` + helperPath; !strings.Contains(res.out, want) {
		t.Errorf("the upgrade's output lacks %q:\n%s", want, res.out)
	}
	if got := e.r.readFile(target + "/etc/passwd"); got != tp {
		t.Errorf("the upgrade changed %s/etc/passwd:\n%s", target, got)
	}
}
