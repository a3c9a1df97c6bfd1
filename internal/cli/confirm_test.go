package cli

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runOnTerminal runs the binary on a pseudo-terminal (util-linux script),
// typing input.
func (e *env) runOnTerminal(input string, args ...string) (int, string) {
	e.t.Helper()
	quoted := []string{binary, "--config", e.conf, "--secrets", e.secrets}
	quoted = append(quoted, args...)
	for i, a := range quoted {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.Command("script", "-q", "-e", "-c", strings.Join(quoted, " "), "/dev/null")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SHELL=/bin/sh", "TERM=dumb"}
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Run()
	return cmd.ProcessState.ExitCode(), out.String()
}

func TestRestoreOnATerminalAsksForTheDatabaseName(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.exec("insert into hosts (hostname, address) values ('keep', '10.0.0.3')")
	path := strings.TrimSpace(e.mustRun(0, "backup").stdout)
	e.exec("delete from hosts")

	code, out := e.runOnTerminal("no\n", "restore", path)
	if code != ExitError || !strings.Contains(out, "Type the database name ("+e.db.Name+")") || !strings.Contains(out, "nothing was changed") ||
		!strings.Contains(out, "taken from database \""+e.db.Name+"\" at 20") {
		t.Fatalf("a wrong answer: exit %d\n%s", code, out)
	}
	if e.query("select count(*)::text from hosts") != "0" {
		t.Fatal("restored without confirmation")
	}
	code, out = e.runOnTerminal(e.db.Name+"\n", "restore", path)
	if code != 0 || e.query("select count(*)::text from hosts") != "1" {
		t.Fatalf("typing the database name: exit %d\n%s", code, out)
	}
}
