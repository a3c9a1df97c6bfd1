package dump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"github.com/openwatch/openwatch/internal/dsn"
)

// tail keeps the last bytes a child wrote to stderr, for error messages.
type tail struct{ buf []byte }

const tailSize = 4096

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = t.buf[len(t.buf)-tailSize:]
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.buf)) }

// command prepares a PostgreSQL client program with the connection in its
// environment only. The child gets SIGKILL when openwatch dies, even by
// kill -9, so no pg_dump, pg_restore or psql outlives it (a pg_dump would
// otherwise finish a full-size partial file nothing waits for).
//
// Linux sends the parent-death signal when the OS *thread* that forked the
// child exits (golang/go#27505). The Go runtime ends a thread only when a
// goroutine exits while locked to it, which nothing in openwatch does; still,
// run children with runChild, or call runtime.LockOSThread before Start and
// unlock after Wait, so the forking thread provably lives as long as the child.
func command(ctx context.Context, d *dsn.DSN, name string, args ...string) (*exec.Cmd, *tail, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%s not found in PATH (install the PostgreSQL client package, e.g. postgresql-client)", name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = d.ChildEnv()
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := &tail{}
	cmd.Stderr = stderr
	return cmd, stderr, nil
}

// runChild runs cmd from a goroutine locked to its OS thread, so the thread
// whose exit would deliver the parent-death signal lives until the child has
// been waited for.
func runChild(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Run()
}

// childError names the program and passes its redacted message on.
func childError(d *dsn.DSN, name string, err error, stderr *tail) error {
	var exit *exec.ExitError
	msg := stderr.String()
	if errors.As(err, &exit) && msg != "" {
		return fmt.Errorf("%s failed: %s", name, d.Redactor.String(msg))
	}
	if msg != "" {
		return fmt.Errorf("%s: %v: %s", name, d.Redactor.Error(err), d.Redactor.String(msg))
	}
	return fmt.Errorf("%s: %w", name, d.Redactor.Error(err))
}

// Archive describes a verified restore point, from its table of contents.
type Archive struct {
	Database string // the database it was dumped from
	Created  string // when, as pg_dump wrote it
}

// Verify checks that file is a readable pg_dump archive with pg_restore --list.
func Verify(ctx context.Context, d *dsn.DSN, file string) (Archive, error) {
	cmd, stderr, err := command(ctx, d, "pg_restore", "--list", "--", file)
	if err != nil {
		return Archive{}, err
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := runChild(cmd); err != nil {
		return Archive{}, fmt.Errorf("%s is not a usable restore point: %w", file, childError(d, "pg_restore --list", err, stderr))
	}
	var a Archive
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "; Archive created at "); ok {
			a.Created = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(strings.TrimLeft(line, "; \t"), "dbname: "); ok && strings.HasPrefix(line, ";") {
			a.Database = strings.TrimSpace(v)
		}
	}
	if a.Created == "" {
		return a, fmt.Errorf("%s is not a usable restore point: pg_restore --list shows no archive header", file)
	}
	return a, nil
}
