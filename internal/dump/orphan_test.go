package dump

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillNineOfOpenwatchTakesPgDumpWithIt runs the real binary's backup,
// holds pg_dump on a table lock so the dump cannot finish, kills openwatch
// with SIGKILL, and expects pg_dump to be gone too; the partial file it
// leaves is removed by the next backup.
func TestKillNineOfOpenwatchTakesPgDumpWithIt(t *testing.T) {
	db, d := setup(t)
	bin := filepath.Join(t.TempDir(), "openwatch")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/openwatch").CombinedOutput(); err != nil {
		t.Fatalf("build openwatch: %v\n%s", err, out)
	}
	// pg_dump takes ACCESS SHARE locks on every table first: it waits here.
	holder, _ := db.IdleInTransaction(t, "holder", "lock table hosts in access exclusive mode")

	dir := filepath.Join(t.TempDir(), "backups")
	var stderr bytes.Buffer
	conf := filepath.Join(t.TempDir(), "upgrade.conf") // defaults
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", conf, "--secrets", "/nonexistent/secrets.env", "backup", "--dir", dir)
	cmd.Env = append(os.Environ(), "OPENWATCH_DATABASE_DSN="+db.URL())
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUntil(t, "pg_dump waits for the table lock", func() bool {
		return query(t, db, `select exists (select 1 from pg_stat_activity where datname = current_database()
			and wait_event_type = 'Lock' and query ilike 'lock table%')::text`) == "true"
	})
	pgDump := childNamed(t, cmd.Process.Pid, "pg_dump")
	t.Cleanup(func() { syscall.Kill(pgDump, syscall.SIGKILL) }) // only if the test failed

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitUntil(t, "pg_dump (pid "+strconv.Itoa(pgDump)+") to die with openwatch", func() bool { return !alive(pgDump) })
	if _, err := holder.Exec(context.Background(), "rollback"); err != nil {
		t.Fatal(err)
	}

	partials, _ := filepath.Glob(filepath.Join(dir, PartialPattern))
	if len(partials) != 1 {
		t.Fatalf("the killed run left %d partial files, want the 1 pg_dump had opened; openwatch said:\n%s", len(partials), stderr.String())
	}
	var progress bytes.Buffer
	path, err := Backup(context.Background(), BackupOptions{DSN: d, Dir: dir, PackageVersion: "1", Compression: "1", Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != filepath.Base(path) {
		t.Fatalf("directory holds %v, want only the new restore point", entries)
	}
	if want := "removed a partial restore point left by an interrupted run: " + filepath.Base(partials[0]); !strings.Contains(progress.String(), want) {
		t.Fatalf("progress %q does not say %q", progress.String(), want)
	}
}

// childNamed returns the pid of the child of parent whose command is name.
func childNamed(t *testing.T, parent int, name string) int {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(parent) + "/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, pid := range strings.Fields(string(b)) {
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			if strings.TrimSpace(string(comm)) == name {
				n, _ := strconv.Atoi(pid)
				return n
			}
		}
	}
	t.Fatalf("openwatch (pid %d) has no %s child", parent, name)
	return 0
}

// alive reports a process that exists and is not a zombie waiting to be reaped.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// waitUntil polls cond; the bound only ends a test whose behaviour broke.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
