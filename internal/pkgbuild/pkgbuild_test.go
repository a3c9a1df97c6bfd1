package pkgbuild

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

const repoRoot = "../.."

var (
	buildOnce sync.Once
	built     Result
	buildErr  error
)

// packages builds the binary (whatever cmd/openwatch is today) and both
// packages once, as `make packages` does (stripped, as the Makefile builds it).
func packages(t *testing.T) Result {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pkgbuild")
		if err != nil {
			buildErr = err
			return
		}
		bin := filepath.Join(dir, "openwatch")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/openwatch")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New("go build: " + err.Error() + "\n" + string(out))
			return
		}
		built, buildErr = Build(Options{
			Config: filepath.Join(repoRoot, "nfpm.yaml"), Version: "1.1.0", Release: "2",
			Binary: bin, OutDir: filepath.Join(dir, "out"),
		})
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.RPM != "" {
		os.RemoveAll(filepath.Dir(filepath.Dir(built.RPM)))
	}
	os.Exit(code)
}

// hostEnv is the environment for rpm, dpkg-deb, lintian and rpmlint with
// every place they write for themselves moved into t's temporary directory:
// rpm creates ~/.rpmdb (Debian's rpm keeps its database under HOME),
// rpmlint's spell checker ~/.config/enchant, lintian /tmp/mldbm-elf-* files.
func hostEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{"HOME=" + home, "TMPDIR=" + t.TempDir(),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"), "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"), "XDG_STATE_HOME=" + filepath.Join(home, ".local", "state")}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "TMPDIR", "TMP", "TEMP", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = hostEnv(t)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return string(out)
}

func dist(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "dist", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// payload is the expected content: path -> "mode owner group".
var payload = map[string]string{
	"/etc/openwatch":                                                   "drwxr-x--- root openwatch",
	"/etc/openwatch/upgrade.conf":                                      "-rw-r----- root openwatch",
	"/usr/bin/openwatch":                                               "-rwxr-xr-x root root",
	"/usr/lib/openwatch":                                               "drwxr-xr-x root root",
	"/usr/lib/openwatch/openwatch-upgrade.sh":                          "-rwxr-xr-x root root",
	"/usr/lib/openwatch/openwatch-gate.sh":                             "-rwxr-xr-x root root",
	"/usr/lib/systemd/system/openwatch-backup-cleanup.service":         "-rw-r--r-- root root",
	"/usr/lib/systemd/system/openwatch-backup-cleanup.timer":           "-rw-r--r-- root root",
	"/usr/lib/systemd/system/openwatch.service.d":                      "drwxr-xr-x root root",
	"/usr/lib/systemd/system/openwatch.service.d/50-schema-guard.conf": "-rw-r--r-- root root",
	"/var/lib/openwatch":                                               "drwxr-x--- openwatch openwatch",
	"/var/lib/openwatch-upgrade":                                       "drwxr-x--- root openwatch",
	"/usr/share/doc/openwatch/UPGRADING.md":                            "-rw-r--r-- root root",
}

func TestRPM(t *testing.T) {
	rpm := packages(t).RPM
	if got := filepath.Base(rpm); got != "openwatch-1.1.0-2.el9.x86_64.rpm" {
		t.Errorf("file name %s", got)
	}
	if got := run(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}", rpm); got != "openwatch 1.1.0 2.el9 x86_64" {
		t.Errorf("NVRA %q", got)
	}
	// Owners and modes, by name (rpm -qlv shortens names to 8 characters).
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, "rpm", "-qp", "--qf",
		"[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME}\n]", rpm)), "\n") {
		f := strings.SplitN(l, " ", 2)
		got[f[0]] = f[1]
	}
	want := map[string]string{"/usr/lib/python3.9/site-packages/dnf-plugins/openwatch.py": "-rw-r--r-- root root"}
	for k, v := range payload {
		want[k] = v
	}
	compare(t, "rpm payload", want, got)
	run(t, "rpm", "-qplv", rpm) // readable listing works

	if got := strings.TrimSpace(run(t, "rpm", "-qpd", rpm)); got != "/usr/share/doc/openwatch/UPGRADING.md" {
		t.Errorf("doc files: %q", got)
	}
	if got := strings.TrimSpace(run(t, "rpm", "-qpc", rpm)); got != "/etc/openwatch/upgrade.conf" {
		t.Errorf("config files: %q", got)
	}
	flags := run(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm)
	if !strings.Contains(flags, "/etc/openwatch/upgrade.conf cn\n") {
		t.Errorf("upgrade.conf is not %%config(noreplace):\n%s", flags)
	}
	for tag, file := range map[string]string{"PREIN": "rpm/pre.sh", "POSTIN": "rpm/post.sh", "PREUN": "rpm/preun.sh", "POSTUN": "rpm/postun.sh"} {
		body := run(t, "rpm", "-qp", "--qf", "%{"+tag+"}", rpm)
		if strings.TrimSpace(body) != strings.TrimSpace(dist(t, file)) {
			t.Errorf("%%{%s} is not dist/%s:\n%s", tag, file, body)
		}
		if prog := run(t, "rpm", "-qp", "--qf", "%{"+tag+"PROG}", rpm); prog != "/bin/sh" {
			t.Errorf("%s runs under %q", tag, prog)
		}
	}
	scripts := run(t, "rpm", "-qp", "--scripts", rpm)
	for _, s := range []string{"preinstall scriptlet", "postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("--scripts lacks %s", s)
		}
	}
	if req := run(t, "rpm", "-qp", "--requires", rpm); !strings.Contains(req, "postgresql\n") {
		t.Errorf("requires:\n%s", req)
	}
}

// One RPM per EL release, each named with its dist tag, with the dnf plugin
// where that release's dnf loads it, and requiring that Python, so that dnf
// refuses the RPM of another release.
func TestRPMPerTarget(t *testing.T) {
	res := packages(t)
	want := []struct{ file, plugin, python string }{
		{"openwatch-1.1.0-2.el9.x86_64.rpm", "/usr/lib/python3.9/site-packages/dnf-plugins/openwatch.py", "3.9"},
		{"openwatch-1.1.0-2.el8.x86_64.rpm", "/usr/lib/python3.6/site-packages/dnf-plugins/openwatch.py", "3.6"},
		{"openwatch-1.1.0-2.el10.x86_64.rpm", "/usr/lib/python3.12/site-packages/dnf-plugins/openwatch.py", "3.12"},
	}
	if len(res.RPMs) != len(want) || res.RPM != res.RPMs[0] {
		t.Fatalf("built %v (first %s), want %d RPMs", res.RPMs, res.RPM, len(want))
	}
	plugin := dist(t, "dnf/openwatch.py")
	for i, w := range want {
		rpm := res.RPMs[i]
		if got := filepath.Base(rpm); got != w.file {
			t.Errorf("RPM %d: %s, want %s", i, got, w.file)
		}
		var plugins []string
		for _, f := range strings.Fields(run(t, "rpm", "-qpl", rpm)) {
			if strings.Contains(f, "dnf-plugins") {
				plugins = append(plugins, f)
			}
		}
		if len(plugins) != 1 || plugins[0] != w.plugin {
			t.Errorf("%s: dnf plugin at %v, want %s", w.file, plugins, w.plugin)
		}
		if req := run(t, "rpm", "-qp", "--requires", rpm); !strings.Contains(req, "python(abi) = "+w.python+"\n") {
			t.Errorf("%s requires:\n%s", w.file, req)
		}
		dir := t.TempDir()
		cmd := exec.Command("sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet --no-absolute-filenames "*dnf-plugins/openwatch.py" 2>/dev/null`, "sh", rpm)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("unpacking the plugin: %v\n%s", err, out)
		}
		if b, err := os.ReadFile(filepath.Join(dir, w.plugin)); err != nil || string(b) != plugin {
			t.Errorf("%s: the plugin is not dist/dnf/openwatch.py (%v)", w.file, err)
		}
	}
}

func TestDEB(t *testing.T) {
	deb := packages(t).DEB
	if got := filepath.Base(deb); got != "openwatch_1.1.0-2_amd64.deb" {
		t.Errorf("file name %s", got)
	}
	for field, want := range map[string]string{
		"Package": "openwatch", "Version": "1.1.0-2", "Architecture": "amd64",
		"Depends": "postgresql-client | postgresql-client-15 | postgresql-client-16 | postgresql-client-17, init-system-helpers (>= 1.54~)",
	} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	want := map[string]string{
		"/usr/share/lintian/overrides/openwatch": "-rw-r--r-- root root",
		"/usr/share/doc/openwatch/copyright":     "-rw-r--r-- root root",
		"/etc/apt/apt.conf.d/50openwatch-gate":   "-rw-r--r-- root root",
	}
	for k, v := range payload {
		want[k] = v
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		// drwxr-x--- root/openwatch 0 2026-11-24 15:10 ./etc/openwatch/
		f := strings.Fields(l)
		name := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if strings.HasSuffix(f[5], "/") && (!strings.Contains(name, "openwatch") || name == "/etc/apt" || name == "/etc/apt/apt.conf.d") {
			continue // standard parent directories (/usr, /usr/share/doc…)
		}
		owner := strings.SplitN(f[1], "/", 2)
		got[name] = f[0] + " " + owner[0] + " " + owner[1]
	}
	delete(got, "/usr/share/doc/openwatch") // implicit parent
	compare(t, "deb payload", want, got)

	ctrl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctrl)
	conffiles, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/apt/apt.conf.d/50openwatch-gate\n/etc/openwatch/upgrade.conf" {
		t.Errorf("conffiles: %q", conffiles)
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		b, err := os.ReadFile(filepath.Join(ctrl, s))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != dist(t, "deb/"+s) {
			t.Errorf("%s is not dist/deb/%s", s, s)
		}
		if st, _ := os.Stat(filepath.Join(ctrl, s)); st.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v", s, st.Mode())
		}
	}
	if info := run(t, "dpkg-deb", "-I", deb); !strings.Contains(info, "conffiles") {
		t.Errorf("dpkg-deb -I:\n%s", info)
	}
}

func TestBuildErrors(t *testing.T) {
	if _, err := Build(Options{Binary: "x"}); !errors.Is(err, ErrNoConfig) {
		t.Errorf("no config: %v", err)
	}
	if _, err := Build(Options{Config: "nfpm.yaml"}); !errors.Is(err, ErrNoBinary) {
		t.Errorf("no binary: %v", err)
	}
	if _, err := Build(Options{Config: filepath.Join(repoRoot, "nfpm.yaml"), Binary: "does-not-exist", OutDir: t.TempDir()}); err == nil {
		t.Error("missing binary accepted")
	}
}

func compare(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if want[k] != got[k] {
			t.Errorf("%s: %s: got %q, want %q", what, k, got[k], want[k])
		}
	}
}

// TestLinters runs lintian and rpmlint on the built packages with the
// overrides and filters the spec renders (each with a one-line reason): no
// hint may remain, and no override may go unused.
func TestLinters(t *testing.T) {
	res := packages(t)
	cmd := exec.Command("lintian", "--no-cfg", "--display-info", "--pedantic", "--display-experimental",
		"--fail-on", "error,warning,info,pedantic", res.DEB)
	cmd.Env = hostEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), ": ") {
		t.Errorf("lintian: %v\n%s", err, out)
	}
	// rpmlint unpacks the payload with `rpm2cpio | cpio -id` in a temp dir,
	// but nfpm writes absolute cpio member names (/usr/bin/openwatch; nfpm
	// issue #1122), which GNU cpio would extract onto this machine's own /.
	// A cpio on PATH that strips the leading / keeps the extraction in the
	// temp dir.
	shim := t.TempDir()
	if err := os.WriteFile(filepath.Join(shim, "cpio"), []byte("#!/bin/sh\nexec /usr/bin/cpio --no-absolute-filenames \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, rpm := range res.RPMs {
		cmd = exec.Command("rpmlint", "-r", filepath.Join(repoRoot, "dist", "rpmlintrc"), rpm)
		cmd.Env = hostEnv(t, "PATH="+shim+":"+os.Getenv("PATH"))
		out, err = cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "0 errors, 0 warnings") {
			t.Errorf("rpmlint %s: %v\n%s", filepath.Base(rpm), err, out)
		}
	}
}
