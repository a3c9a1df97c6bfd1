package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// inProcess runs the command line in-process with the given migrations
// (a failing or slow migration cannot ship in the binary).
func (e *env) inProcess(ctx context.Context, fsys fstest.MapFS, args ...string) (int, string) {
	var out bytes.Buffer
	a := &app{IO: IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out}, migrations: fsys,
		configPath: e.conf, secretsPath: e.secrets, journalPath: filepath.Join(filepath.Dir(e.conf), "upgrade.state")}
	code := a.run(ctx, args)
	return code, out.String()
}

func mapFile(up string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte("-- migrate:up\n" + up + "\n-- migrate:down\nselect 1;\n")}
}

func TestASignalStopsMigrateAfterTheMigrationInProgress(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.MapFS{"001_base.sql": mapFile("create table base (n int); insert into base values (1);")}
	if code, out := e.inProcess(context.Background(), fsys, "migrate"); code != 0 {
		t.Fatalf("first migrate: %d\n%s", code, out)
	}
	fsys["002_slow.sql"] = mapFile("select pg_sleep(2); create table slow (n int);")
	fsys["003_after.sql"] = mapFile("create table after_signal (n int);")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for e.query("select count(*)::text from pg_stat_activity where state = 'active' and query like '%pg_sleep(2); create table slow%' and query not like '%pg_stat_activity%'") == "0" {
			time.Sleep(50 * time.Millisecond)
		}
		cancel() // what SIGTERM does through signal.NotifyContext
	}()
	code, out := e.inProcess(ctx, fsys, "migrate")
	if code != ExitInterrupted {
		t.Fatalf("want exit 15, got %d\n%s", code, out)
	}
	for _, want := range []string{"002_slow.sql", "not applied: 003_after.sql", "To apply the rest, run: openwatch migrate", "restore point of this run: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := e.applied(); got != "001,002" {
		t.Errorf("applied %q, want the one in progress completed and no later one", got)
	}
}

func TestAFailedTransactionFalseMigrationNamesWhatItLeftAndHowToClearIt(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.MapFS{"001_base.sql": mapFile("create table base (n int); insert into base values (1), (1);")}
	if code, out := e.inProcess(context.Background(), fsys, "migrate"); code != 0 {
		t.Fatalf("first migrate: %d\n%s", code, out)
	}
	fsys["002_index.sql"] = &fstest.MapFile{Data: []byte("-- migrate:up transaction:false\ncreate unique index concurrently base_n_key on base (n);\n-- migrate:down\nselect 1;\n")}
	code, out := e.inProcess(context.Background(), fsys, "migrate")
	if code != ExitFailedPartly {
		t.Fatalf("want exit 17, got %d\n%s", code, out)
	}
	for _, want := range []string{"failed (NOT rolled back: transaction:false): 002_index.sql", "DROP INDEX CONCURRENTLY public.base_n_key;"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "failed (rolled back)") {
		t.Errorf("output claims a roll-back:\n%s", out)
	}
}
