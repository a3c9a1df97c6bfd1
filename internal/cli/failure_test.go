package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

// A failing migration cannot ship in the binary, so this test runs the
// command line in-process with a test-only set of migrations.
func TestAFailureInMigrationTwoOfThreeNamesTheRestorePointAndTheCommand(t *testing.T) {
	e := newEnv(t)
	mig := func(up string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("-- migrate:up\n" + up + "\n-- migrate:down\nselect 1;\n")}
	}
	fsys := fstest.MapFS{
		"001_base.sql": mig("create table base (n int); insert into base values (1);"),
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		a := &app{IO: IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, migrations: fsys,
			configPath: e.conf, secretsPath: e.secrets}
		code := a.run(context.Background(), args)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := run("migrate"); code != 0 {
		t.Fatalf("first migrate: %d\n%s\n%s", code, out, errOut)
	}
	fsys["002_first.sql"] = mig("create table first (n int);")
	fsys["003_broken.sql"] = mig("create table broken (n int); insert into broken values (1/0);")
	fsys["004_last.sql"] = mig("create table last (n int);")

	code, out, errOut := run("migrate")
	if code != ExitFailed {
		t.Fatalf("want exit 16, got %d\n%s\n%s", code, out, errOut)
	}
	dumps := e.dumps()
	if len(dumps) != 1 {
		t.Fatalf("want one restore point, have %v", dumps)
	}
	for _, want := range []string{
		"migration 003_broken.sql failed: ",
		"division by zero",
		"applied in this run: 002_first.sql",
		"failed (rolled back): 003_broken.sql",
		"not applied: 004_last.sql",
		"restore point: " + dumps[0],
		"openwatch restore --yes " + dumps[0],
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("report lacks %q:\n%s", want, errOut)
		}
	}
	if got := e.applied(); got != "001,002" {
		t.Fatalf("applied %q", got)
	}
	if regexp.MustCompile(`(?i)password=|postgres://`).MatchString(out + errOut) {
		t.Errorf("output shows connection details:\n%s\n%s", out, errOut)
	}
}

// Text passed through from the driver and from pg_dump is redacted: here both
// are made to echo the password.
func TestPassedThroughErrorsNeverShowThePassword(t *testing.T) {
	e := newEnv(t)
	raise := "DO $do$ BEGIN RAISE EXCEPTION 'seen: %', $pw$" + e.db.Password + "$pw$; END $do$;"
	fsys := fstest.MapFS{"001_leak.sql": &fstest.MapFile{Data: []byte("-- migrate:up\n" + raise + "\n-- migrate:down\nselect 1;\n")}}
	var out, errOut bytes.Buffer
	a := &app{IO: IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, migrations: fsys,
		configPath: e.conf, secretsPath: e.secrets}
	if code := a.run(context.Background(), []string{"migrate"}); code != ExitFailed {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), e.db.Password) || !strings.Contains(errOut.String(), "seen: [redacted]") {
		t.Fatalf("the database's error was not redacted:\n%s", errOut.String())
	}

	shims := t.TempDir()
	os.WriteFile(filepath.Join(shims, "pg_dump"), []byte("#!/bin/sh\nprintf 'pg_dump: error: password %s rejected\\n' \"$PGPASSWORD\" >&2\nexit 1\n"), 0o755)
	e.vars = []string{"PATH=" + shims + ":" + os.Getenv("PATH")}
	r := e.run("backup") // run checks that no output holds the password
	if r.code != ExitBackupFailed || !strings.Contains(r.stderr, "password [redacted] rejected") {
		t.Fatalf("pg_dump's message was not passed through redacted: %s", r)
	}
}
