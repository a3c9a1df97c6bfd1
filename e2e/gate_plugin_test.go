package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dnfPython is the Python dnf runs on (Debian's dnf: the system Python,
// which has the dnf module the plugin imports).
const dnfPython = "/usr/bin/python3"

// plugin runs a Python snippet with the rendered dnf plugin imported as
// plugin (the real module, importing the real dnf) and returns its output.
func plugin(t *testing.T, snippet string, args ...string) string {
	t.Helper()
	src := filepath.Join(srcRoot, "dist", "dnf", "openwatch.py")
	prog := `import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("plugin", sys.argv[1])
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)
` + snippet
	out, err := exec.Command(dnfPython, append([]string{"-c", prog, src}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", dnfPython, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The dnf plugin's rule after the transaction: which journal, written by
// the helper during the transaction, makes dnf exit non-zero.
func TestDNFPluginVerdict(t *testing.T) {
	cases := []struct {
		name    string
		journal string
		want    string
	}{
		{"a succeeded upgrade is not reported", "OUTCOME='succeeded'\nPHASE='finished'\nSERVICE_STOPPED='no'\nSCHEMA_CHANGED='yes'\n", "ok"},
		{"a failed migration fails the transaction", "OUTCOME='migration-failed'\nPHASE='migrate'\nSERVICE_STOPPED='yes'\nSCHEMA_CHANGED='yes'\n", "fail"},
		{"a preflight failure fails it although nothing was stopped or changed (the helper exits 1)", "OUTCOME='preflight-failed'\nPHASE='preflight'\nSERVICE_STOPPED='no'\nSCHEMA_CHANGED='no'\n", "fail"},
		{"the database lost after the stop fails it", "OUTCOME='unreachable'\nPHASE='migrate'\nSERVICE_STOPPED='yes'\nSCHEMA_CHANGED='unknown'\n", "fail"},
		{"migrate exiting 1 with the service stopped fails it", "OUTCOME='error'\nPHASE='migrate'\nSERVICE_STOPPED='yes'\nSCHEMA_CHANGED='no'\n", "fail"},
		{"an error that may have changed the schema fails it with the service running", "OUTCOME='error'\nPHASE='migrate'\nSERVICE_STOPPED='no'\nSCHEMA_CHANGED='unknown'\n", "fail"},
		{"an unreachable database at the check is a warning", "OUTCOME='unreachable'\nPHASE='check'\nSERVICE_STOPPED='no'\nSCHEMA_CHANGED='no'\n", "warn"},
		{"a failed check is a warning", "OUTCOME='error'\nPHASE='check'\nSERVICE_STOPPED='no'\nSCHEMA_CHANGED='no'\n", "warn"},
		{"a value this release does not know fails it", "OUTCOME='unreachable'\nPHASE='check'\nSERVICE_STOPPED='maybe'\nSCHEMA_CHANGED='no'\n", "fail"},
		{"an older release's journal: unreachable at the check is a warning", "OUTCOME='unreachable'\nPHASE='check'\n", "warn"},
		{"an older release's journal: unreachable during the migration fails it", "OUTCOME='unreachable'\nPHASE='migrate'\n", "fail"},
		{"an older release's journal: error while stopping fails it", "OUTCOME='error'\nPHASE='stop'\n", "fail"},
		{"an older release's journal: a failed migration fails it", "OUTCOME='migration-failed'\nPHASE='migrate'\n", "fail"},
	}
	dir := t.TempDir()
	var files []string
	for i, c := range cases {
		f := filepath.Join(dir, strings.Repeat("j", i+1))
		if err := os.WriteFile(f, []byte("# written by the helper\n"+c.journal), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	got := strings.Split(plugin(t, `for f in sys.argv[2:]:
    print(plugin.verdict(plugin.read_journal(f)))
`, files...), "\n")
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if i >= len(got) || got[i] != c.want {
				t.Errorf("verdict %q, want %q (journal:\n%s)", got, c.want, c.journal)
			}
		})
	}
}

// What the plugin shows of dnf's command line (in messages and to the gate).
func TestDNFPluginRedactsArguments(t *testing.T) {
	args := []string{"-y", "--setopt=proxy_password=s3cr3t-1", "--setopt", "proxy_password=s3cr3t-2", "--setopt=install_weak_deps=0",
		"--setopt=e2e.baseurl=https://me:s3cr3t-3@mirror.example/el9/", "upgrade", "openwatch"}
	b, _ := json.Marshal(args)
	got := plugin(t, `print(json.dumps(plugin.redact(json.loads(sys.argv[2]))))`, string(b))
	want := `["-y", "--setopt=proxy_password=<redacted>", "--setopt", "proxy_password=<redacted>", "--setopt=install_weak_deps=0", "--setopt=e2e.baseurl=https://me:<redacted>@mirror.example/el9/", "upgrade", "openwatch"]`
	if got != want {
		t.Errorf("redact(%q)\n got %s\nwant %s", args, got, want)
	}
}
