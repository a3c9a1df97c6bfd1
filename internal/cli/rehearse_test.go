package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/clone"
	"github.com/openwatch/openwatch/internal/migrate/rehearse"
)

// grantCreatedb gives the test's role what a rehearsal (and a clone) needs.
func (e *env) grantCreatedb() {
	e.t.Helper()
	if err := e.db.Server.Exec(context.Background(), "postgres", "ALTER ROLE "+quoteIdent(e.db.User)+" CREATEDB"); err != nil {
		e.t.Fatal(err)
	}
}

// liveState is what a rehearsal must leave as it was: the schema (columns,
// indexes, constraints, applied versions), the rows, and the server's list
// of databases.
func (e *env) liveState() [3]string {
	e.t.Helper()
	return [3]string{
		e.query(`select concat_ws(' | ', (select string_agg(version, ',' order by version) from schema_migrations),
			(select string_agg(table_name || '.' || column_name || ':' || data_type || ':' || is_nullable, ',' order by table_name, column_name)
				from information_schema.columns where table_schema = 'public'),
			(select string_agg(indexdef, ',' order by indexdef) from pg_indexes where schemaname = 'public'),
			(select string_agg(conname, ',' order by conname) from pg_constraint where connamespace = 'public'::regnamespace))`),
		e.query(`select coalesce(string_agg(concat_ws(':', id, name, note), ',' order by id), '') from items`),
		e.query(`select string_agg(datname, ',' order by datname) from pg_database`),
	}
}

func (e *env) assertUnchanged(before [3]string, what string) {
	e.t.Helper()
	for i, label := range []string{"schema", "rows", "the server's databases"} {
		if got := e.liveState()[i]; got != before[i] {
			e.t.Errorf("%s changed %s:\n before %s\n after  %s", what, label, before[i], got)
		}
	}
}

// items holds two rows with the same name and one without a note.
var itemsFS = fstest.MapFS{"001_items.sql": mapFile("create table items (id int primary key, name text, note text); insert into items values (1, 'a', 'x'), (2, 'a', null);")}

func withMigration(name string, f *fstest.MapFile) fstest.MapFS {
	fsys := fstest.MapFS{name: f}
	for k, v := range itemsFS {
		fsys[k] = v
	}
	return fsys
}

func TestAMigrationThatWouldFailFailsRehearseAndPreflightAndChangesNothing(t *testing.T) {
	tests := []struct {
		name string
		mig  *fstest.MapFile
		code int
		say  []string
	}{
		{"a unique constraint over duplicates", mapFile("alter table items add constraint items_name_key unique (name);"), ExitFailed,
			[]string{"migration 002_next.sql would fail on this database: ", "could not create unique index", "23505", "detail: Key (name)=(a) is duplicated."}},
		{"NOT NULL over an empty value", mapFile("alter table items alter column note set not null;"), ExitFailed,
			[]string{"migration 002_next.sql would fail on this database: ", `column "note"`, "23502"}},
		{"a transaction:false unique index over duplicates",
			&fstest.MapFile{Data: []byte("-- migrate:up transaction:false\ncreate unique index concurrently items_name_idx on items (name);\n-- migrate:down\nselect 1;\n")}, ExitFailedPartly,
			[]string{"would fail on this database: ", "would not be rolled back and would leave behind the invalid index(es) public.items_name_idx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.grantCreatedb()
			ctx := context.Background()
			if code, out := e.inProcess(ctx, itemsFS, "migrate"); code != 0 {
				t.Fatalf("migrate: %d\n%s", code, out)
			}
			fsys := withMigration("002_next.sql", tt.mig)
			fsys["003_after.sql"] = mapFile("create table after_next (n int);")
			before := e.liveState()
			for _, run := range []struct {
				conf string
				args []string
				next string
			}{
				{"", []string{"migrate", "--rehearse"}, "then run: openwatch migrate --rehearse"},
				{"REHEARSE=yes\n", []string{"migrate", "--preflight"}, "then run: openwatch migrate --preflight"},
				{"REHEARSE=auto\n", []string{"migrate", "--preflight"}, "then run: openwatch migrate --preflight"},
			} {
				e.writeConf("BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\n" + run.conf)
				code, out := e.inProcess(ctx, fsys, run.args...)
				if code != tt.code {
					t.Fatalf("%s %v: want exit %d, got %d\n%s", run.conf, run.args, tt.code, code, out)
				}
				for _, want := range append(tt.say, "rehearsed successfully before it: none", "not rehearsed after it: 003_after.sql",
					"Nothing was changed: the live database is as it was and the scratch copy was dropped; the service was not stopped.", run.next) {
					if !strings.Contains(out, want) {
						t.Errorf("%s %v: output lacks %q:\n%s", run.conf, run.args, want, out)
					}
				}
				if strings.Contains(out, "preflight: ready") {
					t.Errorf("%v says ready:\n%s", run.args, out)
				}
				e.assertUnchanged(before, fmt.Sprint(run.conf, run.args))
			}
		})
	}
}

func TestGoodMigrationsRehearseWithTheirTimeAndThePreflightEstimatesTheDowntime(t *testing.T) {
	e := newEnv(t)
	e.grantCreatedb()
	ctx := context.Background()
	if code, out := e.inProcess(ctx, itemsFS, "migrate"); code != 0 {
		t.Fatalf("migrate: %d\n%s", code, out)
	}
	fsys := withMigration("002_slow.sql", mapFile("alter table items add column seen timestamptz; select pg_sleep(1.2);"))
	before := e.liveState()
	code, out := e.inProcess(ctx, fsys, "migrate", "--rehearse")
	if code != 0 {
		t.Fatalf("rehearse: %d\n%s", code, out)
	}
	for _, want := range []string{"rehearsal: 002_slow.sql ok in 1.", "all 1 pending migration(s) succeeded on a copy of the database in 1.",
		"the live database was only read", "run: " + "/usr/lib/openwatch/openwatch-upgrade.sh"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	e.assertUnchanged(before, "--rehearse")
	code, out = e.inProcess(ctx, fsys, "migrate", "--preflight")
	if code != 0 {
		t.Fatalf("preflight: %d\n%s", code, out)
	}
	for _, want := range []string{"preflight: estimated downtime: 1.", "preflight: ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("preflight output lacks %q:\n%s", want, out)
		}
	}
	e.assertUnchanged(before, "--preflight")
	// Nothing pending: nothing to rehearse, nothing copied.
	if code, out := e.inProcess(ctx, itemsFS, "migrate", "--rehearse"); code != 0 || !strings.Contains(out, "nothing to rehearse") {
		t.Errorf("at head: %d\n%s", code, out)
	}
	e.assertUnchanged(before, "--rehearse at head")
}

func TestWithoutCreatedbRehearseNamesTheGrantAndAutoSkipsSayingWhy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if code, out := e.inProcess(ctx, itemsFS, "migrate"); code != 0 {
		t.Fatalf("migrate: %d\n%s", code, out)
	}
	fsys := withMigration("002_next.sql", mapFile("alter table items add constraint items_name_key unique (name);"))
	before := e.liveState()
	grant := "ALTER ROLE " + quoteIdent(e.db.User) + " CREATEDB;"
	code, out := e.inProcess(ctx, fsys, "migrate", "--rehearse")
	if code != ExitNoRehearsal || !strings.Contains(out, "lacks CREATEDB") || !strings.Contains(out, "a superuser grants it with: "+grant) ||
		!strings.Contains(out, "\nNothing was changed. Fix the cause, then run: openwatch migrate --rehearse") || strings.Contains(out, "scratch copy was dropped") {
		t.Errorf("--rehearse without CREATEDB: %d\n%s", code, out)
	}
	e.writeConf("BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\nREHEARSE=yes\n")
	code, out = e.inProcess(ctx, fsys, "migrate", "--preflight")
	if code != ExitNoRehearsal || !strings.Contains(out, "preflight: REHEARSE=yes in "+e.conf+", but the rehearsal could not run: ") || !strings.Contains(out, grant) {
		t.Errorf("preflight, REHEARSE=yes, without CREATEDB: %d\n%s", code, out)
	}
	e.writeConf("BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\nREHEARSE=auto\n")
	code, out = e.inProcess(ctx, fsys, "migrate", "--preflight")
	if code != 0 || !strings.Contains(out, "preflight: the rehearsal is skipped (REHEARSE=auto in "+e.conf+"): ") || !strings.Contains(out, "lacks CREATEDB") || !strings.Contains(out, "preflight: ready") {
		t.Errorf("preflight, REHEARSE=auto, without CREATEDB: %d\n%s", code, out)
	}
	e.grantCreatedb()
	e.writeConf("BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\nREHEARSE=no\n")
	code, out = e.inProcess(ctx, fsys, "migrate", "--preflight")
	if code != 0 || !strings.Contains(out, "preflight: the migrations are not rehearsed (REHEARSE=no in "+e.conf+")") || strings.Contains(out, "rehearsal:") {
		t.Errorf("preflight, REHEARSE=no: %d\n%s", code, out)
	}
	e.assertUnchanged(before, "without CREATEDB")
}

func TestASignalStopsTheRehearsalAndDropsItsCopy(t *testing.T) {
	e := newEnv(t)
	e.grantCreatedb()
	if code, out := e.inProcess(context.Background(), itemsFS, "migrate"); code != 0 {
		t.Fatalf("migrate: %d\n%s", code, out)
	}
	fsys := withMigration("002_slow.sql", mapFile("select pg_sleep(60);"))
	before := e.liveState()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for e.query("select count(*)::text from pg_stat_activity where state = 'active' and query like '%pg_sleep(60)%' and query not like '%pg_stat_activity%'") == "0" {
			time.Sleep(50 * time.Millisecond)
		}
		cancel() // what SIGTERM does through signal.NotifyContext
	}()
	start := time.Now()
	code, out := e.inProcess(ctx, fsys, "migrate", "--rehearse")
	if code != ExitInterrupted || !strings.Contains(out, "the rehearsal was interrupted by a signal") || !strings.Contains(out, "Nothing was changed: the live database is as it was and the scratch copy was dropped.") ||
		!strings.Contains(out, "To rehearse, run: openwatch migrate --rehearse") {
		t.Fatalf("want exit 15 and what happened: %d\n%s", code, out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the rehearsal waited %s for the migration on the copy", took)
	}
	e.assertUnchanged(before, "an interrupted rehearsal")
}

func TestAutoRehearsesOnlyADatabaseSmallEnoughWithRoomForItsCopy(t *testing.T) {
	room := clone.Space{Dir: "/srv/pg", Free: 10 << 30, Total: 20 << 30, DBSize: 100 << 20, Need: (100 << 20) + (2 << 30)}
	tests := []struct {
		name  string
		facts rehearse.Facts
		say   string // "" rehearses
	}{
		{"small, CREATEDB, room", rehearse.Facts{Role: "ow", CanCreate: true, Size: 100 << 20, Space: room}, ""},
		{"at the limit", rehearse.Facts{Role: "ow", CanCreate: true, Size: 1 << 30, Space: room}, ""},
		{"over the limit", rehearse.Facts{Role: "ow", CanCreate: true, Size: 1<<30 + 1, Space: room}, "more than the 1.0 GiB up to which its copy takes minutes"},
		{"no CREATEDB", rehearse.Facts{Role: "ow", Size: 1 << 20, Space: room}, `role "ow" lacks CREATEDB`},
		{"no room", rehearse.Facts{Role: "ow", CanCreate: true, Size: 1 << 20, Space: clone.Space{Dir: "/srv/pg", Free: 1 << 30, Need: 3 << 30}}, "not enough free space on the database server"},
		{"room unknown", rehearse.Facts{Role: "ow", CanCreate: true, Size: 1 << 20, SpaceErr: errors.New("the server db.example is not on this machine")}, "cannot be checked (the server db.example is not on this machine)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := autoSkip(tt.facts, 1<<30)
			if (tt.say == "") != (got == "") || !strings.Contains(got, tt.say) {
				t.Errorf("autoSkip = %q, want %q", got, tt.say)
			}
		})
	}
}

// holdCopy connects as the superuser (a session of another role, as an
// autovacuum worker is) to the scratch database the rehearsal's migration
// sleeps on, once it does, and returns its name on got; the session stays
// until release is closed.
func (e *env) holdCopy(sleeping string, got chan<- string, release <-chan struct{}) {
	for e.query("select count(*)::text from pg_stat_activity where state = 'active' and query like '"+sleeping+"' and query not like '%pg_stat_activity%'") == "0" {
		time.Sleep(50 * time.Millisecond)
	}
	name := e.query("select datname::text from pg_stat_activity where state = 'active' and query like '" + sleeping + "' and query not like '%pg_stat_activity%'")
	conn, err := pgx.Connect(context.Background(), e.db.Server.SuperURL(name))
	if err != nil {
		e.t.Errorf("connect to the copy %s as the superuser: %v", name, err)
		got <- name
		return
	}
	got <- name
	<-release
	conn.Close(context.Background())
}

func TestASessionOfAnotherRoleOnTheCopyDoesNotFailThePreflightAndTheNextPreflightDropsTheCopy(t *testing.T) {
	e := newEnv(t)
	e.grantCreatedb()
	ctx := context.Background()
	if code, out := e.inProcess(ctx, itemsFS, "migrate"); code != 0 {
		t.Fatalf("migrate: %d\n%s", code, out)
	}
	before := e.liveState()
	fsys := withMigration("002_slow.sql", mapFile("select pg_sleep(2);"))
	e.writeConf("BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\nREHEARSE=auto\n")
	got, release := make(chan string, 1), make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	go e.holdCopy("%pg_sleep(2)%", got, release)
	code, out := e.inProcess(ctx, fsys, "migrate", "--preflight")
	name := <-got
	if code != ExitOK || !strings.Contains(out, "preflight: ready") {
		t.Fatalf("the rehearsal passed, the copy could not be dropped: want exit 0 and ready, got %d\n%s", code, out)
	}
	for _, want := range []string{"rehearsal: 002_slow.sql ok in", "openwatch: warning: preflight: the scratch database " + name + " could not be dropped",
		`drop it now with: DROP DATABASE "` + name + `";`, "not dropped: see the warning above", "preflight: estimated downtime: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Nothing was changed") || strings.Contains(out, ", dropped)") {
		t.Errorf("the output says the copy was dropped or nothing was changed while %s exists:\n%s", name, out)
	}
	close(release)
	released = true

	// migrate --status lists it, with the statement that drops it.
	r := e.mustRun(0, "migrate", "--status")
	if !strings.Contains(r.stdout, "rehearsal copies: 1 ") || !strings.Contains(r.stdout, "  "+name+"  (started ") || !strings.Contains(r.stdout, `DROP DATABASE "`+name+`";`) {
		t.Errorf("migrate --status does not list the copy %s:\n%s", name, r)
	}

	// The next preflight drops it, also when REHEARSE=auto then skips (no CREATEDB).
	if err := e.db.Server.Exec(ctx, "postgres", "ALTER ROLE "+quoteIdent(e.db.User)+" NOCREATEDB"); err != nil {
		t.Fatal(err)
	}
	for e.query("select count(*)::text from pg_stat_activity where datname = '"+name+"'") != "0" {
		time.Sleep(50 * time.Millisecond)
	}
	code, out = e.inProcess(ctx, fsys, "migrate", "--preflight")
	if code != ExitOK || !strings.Contains(out, "preflight: dropped "+name+", the scratch database of a rehearsal that was killed or could not drop it") ||
		!strings.Contains(out, "preflight: the rehearsal is skipped (REHEARSE=auto") || !strings.Contains(out, "preflight: ready") {
		t.Errorf("the next preflight (REHEARSE=auto, no CREATEDB): %d\n%s", code, out)
	}
	e.assertUnchanged(before, "a preflight whose copy another session held, and the next one")
	if r := e.mustRun(0, "migrate", "--status"); strings.Contains(r.stdout, "rehearsal copies") {
		t.Errorf("migrate --status still lists a rehearsal copy:\n%s", r)
	}
}

func TestASignalWhileTheRehearsalCreatesItsCopyExitsFifteen(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		for _, rehearse := range []string{"auto", "yes"} {
			t.Run(sig.String()+" REHEARSE="+rehearse, func(t *testing.T) {
				e := newEnv(t)
				e.grantCreatedb()
				e.mustRun(0, "migrate")
				e.downgradeOneStep()
				state := func() string {
					return e.applied() + " | " + e.query("select string_agg(datname, ',' order by datname) from pg_database")
				}
				before := state()
				e.writeConf("BACKUP_DIR=" + e.backups + "\nDATABASE_WAIT_TIMEOUT=0\nREHEARSE=" + rehearse + "\n")
				// CREATE DATABASE ... TEMPLATE template0 waits while a
				// superuser's open transaction holds this lock.
				holder, err := pgx.Connect(context.Background(), e.db.Server.SuperURL("postgres"))
				if err != nil {
					t.Fatal(err)
				}
				defer holder.Close(context.Background())
				if _, err := holder.Exec(context.Background(), "begin; comment on database template0 is 'held by a test'"); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(binary, "--config", e.conf, "--secrets", e.secrets, "migrate", "--preflight")
				cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer cmd.Process.Kill()
				deadline := time.Now().Add(60 * time.Second)
				for e.query("select count(*)::text from pg_stat_activity where wait_event_type = 'Lock' and query like 'CREATE DATABASE %' and usename = current_user") == "0" {
					if time.Now().After(deadline) {
						t.Fatalf("the preflight never waited in CREATE DATABASE:\n%s", out.String())
					}
					time.Sleep(50 * time.Millisecond)
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				cmd.Wait()
				code := cmd.ProcessState.ExitCode()
				if code != ExitInterrupted || !strings.Contains(out.String(), "preflight: the rehearsal was interrupted by a signal") ||
					!strings.Contains(out.String(), "Nothing was changed") {
					t.Errorf("want exit 15 and the interruption: exit %d\n%s", code, out.String())
				}
				for _, never := range []string{"skipped", "preflight: ready", "could not run"} {
					if strings.Contains(out.String(), never) {
						t.Errorf("the output says %q:\n%s", never, out.String())
					}
				}
				holder.Exec(context.Background(), "rollback")
				if got := state(); got != before {
					t.Errorf("the applied migrations or the server's databases changed:\n before %s\n after  %s", before, got)
				}
			})
		}
	}
}
