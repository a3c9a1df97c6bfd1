package cli

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The upgrade helper runs --preflight while the service still runs: every
// failure must come before anything changes.
func TestPreflightRefusesWhatWouldFailAfterTheServiceStopped(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(e *env)
		code    int
		say     []string
	}{
		// What the installed pg_dump refuses depends on its version: methods
		// before 16, a level out of a method's range from 16 on.
		{"a compression the installed pg_dump refuses", func(e *env) {
			e.writeConf("BACKUP_DIR=" + e.backups + "\nBACKUP_COMPRESSION=" + refusedCompression(t) + "\n")
		}, ExitBackupFailed, []string{"BACKUP_COMPRESSION=" + refusedCompression(t), refusedCompressionReason(t)}},
		{"a compression level out of range", func(e *env) {
			e.writeConf("BACKUP_DIR=" + e.backups + "\nBACKUP_COMPRESSION=12\n")
		}, ExitConfig, []string{"BACKUP_COMPRESSION=\"12\""}},
		{"a misspelt key", func(e *env) {
			e.writeConf("BACKUP_DIR=" + e.backups + "\nBACKUP_RETENTON_DAYS=3\n")
		}, ExitConfig, []string{"unknown setting BACKUP_RETENTON_DAYS (did you mean BACKUP_RETENTION_DAYS?)"}},
		{"AUTO_BACKUP=sometimes", func(e *env) {
			e.writeConf("BACKUP_DIR=" + e.backups + "\nAUTO_BACKUP=sometimes\n")
		}, ExitConfig, []string{"AUTO_BACKUP=\"sometimes\""}},
		{"a table the role cannot read", func(e *env) {
			e.db.MustExec(e.t, "create table secret_notes (x int); revoke all on secret_notes from "+quoteIdent(e.db.User)+";")
		}, ExitBackupFailed, []string{"cannot read public.secret_notes"}},
		{"a backup directory on a tiny tmpfs", func(e *env) {
			mount(e.t, e.backups, 0, "size=128k,mode=0700")
		}, ExitBackupFailed, []string{"not enough free space in " + "BACKUPS"}},
		{"a read-only backup directory", func(e *env) {
			mount(e.t, e.backups, unix.MS_RDONLY, "mode=0700")
		}, ExitBackupFailed, []string{"not writable"}},
		{"pg_dump missing", func(e *env) {
			e.vars = append(e.vars, "PATH="+e.t.TempDir())
		}, ExitBackupFailed, []string{"pg_dump is not installed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustRun(0, "migrate")
			e.downgradeOneStep()
			e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
			tt.prepare(e)
			before := e.applied()
			r := e.run("migrate", "--preflight")
			if r.code != tt.code {
				t.Fatalf("want exit %d, got %s", tt.code, r)
			}
			for _, want := range tt.say {
				want = strings.ReplaceAll(want, "BACKUPS", e.backups)
				if !strings.Contains(r.stderr, want) {
					t.Errorf("message lacks %q: %s", want, r)
				}
			}
			if !strings.Contains(r.stderr, "Nothing was changed") {
				t.Errorf("message does not say that nothing was changed: %s", r)
			}
			if e.applied() != before {
				t.Errorf("preflight applied migrations")
			}
			entries, _ := os.ReadDir(e.backups)
			for _, f := range entries {
				t.Errorf("preflight left %s in the backup directory", f.Name())
			}
		})
	}
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func TestPreflightSaysReadyAndCreatesNothing(t *testing.T) {
	e := newEnv(t)
	r := e.mustRun(0, "migrate", "--preflight")
	if !strings.Contains(r.stdout, "no restore point will be taken: the schema is empty") {
		t.Errorf("empty schema: %s", r)
	}
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	r = e.mustRun(0, "migrate", "--preflight")
	if !strings.Contains(r.stdout, "preflight: ready; the restore point goes to "+e.backups) {
		t.Errorf("pending: %s", r)
	}
	if _, err := os.Stat(e.backups); err == nil {
		t.Errorf("preflight created the backup directory")
	}
	e.mustRun(ExitPending, "migrate", "--check")
	e.mustRun(0, "migrate")
	if r := e.mustRun(0, "migrate", "--preflight"); !strings.Contains(r.stdout, "nothing to migrate") {
		t.Errorf("at head: %s", r)
	}
}

func TestAnExplicitConfigThatDoesNotExistIsAnError(t *testing.T) {
	e := newEnv(t)
	os.Remove(e.conf)
	r := e.run("migrate")
	if r.code != ExitConfig || !strings.Contains(r.stderr, e.conf+" does not exist") {
		t.Fatalf("want exit 19 naming %s, got %s", e.conf, r)
	}
	if e.query("select count(*)::text from pg_tables where tablename = 'schema_migrations'") != "0" {
		t.Fatal("migrated with a missing --config")
	}
}

func TestStatusListsRestorePointsAndTheLastUpgrade(t *testing.T) {
	e := newEnv(t)
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('a', '10.0.0.1')")
	e.mustRun(0, "migrate")
	journal := filepath.Join(t.TempDir(), "upgrade.state")
	os.WriteFile(journal, []byte("# journal\nOUTCOME=migration-failed\nPHASE=migrate\nSERVICE_BEFORE=running\nSTOPPED_AT=123\nRECOVERY='dpkg --configure -a'\nUPDATED=2026-11-25T10:00:00Z\n"), 0o600)
	r := e.mustRun(0, "--journal", journal, "migrate", "--status", "--json")
	var s statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if len(s.RestorePoints) != 1 || s.RestorePoints[0].Name != e.dumps()[0] || s.RestorePoints[0].Kind != "file" ||
		s.RestorePoints[0].SchemaVersion != "20260101000002" || s.RestorePoints[0].PackageVersion != pkgVersion || s.RestorePoints[0].Size == 0 {
		t.Errorf("restore_points = %+v", s.RestorePoints)
	}
	if s.LastUpgrade == nil || s.LastUpgrade.Outcome != "migration-failed" || s.LastUpgrade.RecoveryCommand != "dpkg --configure -a" {
		t.Errorf("last_upgrade = %+v", s.LastUpgrade)
	}
	text := e.mustRun(0, "--journal", journal, "migrate", "--status")
	for _, want := range []string{"last upgrade:     migration-failed in phase migrate", "to recover, run: dpkg --configure -a", e.dumps()[0]} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("text status lacks %q: %s", want, text)
		}
	}
	if l := e.mustRun(0, "backup", "--list"); strings.TrimSpace(strings.SplitN(l.stdout, " ", 2)[0]) != e.dumps()[0] {
		t.Errorf("backup --list: %s", l)
	}
	r = e.mustRun(0, "--journal", filepath.Join(t.TempDir(), "none"), "migrate", "--status", "--json")
	if !strings.Contains(r.stdout, `"last_upgrade": null`) {
		t.Errorf("no journal: %s", r.stdout)
	}
}

func TestStatusJSONPrintsAnErrorObjectOnFailure(t *testing.T) {
	e := newEnv(t)
	e.writeSecrets("host=127.0.0.1 port=1 dbname=x user=y sslmode=disable connect_timeout=5")
	e.writeConf("DATABASE_WAIT_TIMEOUT=0\n")
	r := e.run("migrate", "--status", "--json")
	var out struct {
		Error struct {
			ExitCode int    `json:"exit_code"`
			Kind     string `json:"kind"`
			Message  string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != ExitUnreachable ||
		out.Error.ExitCode != ExitUnreachable || out.Error.Kind != "unreachable" || !strings.Contains(out.Error.Message, "cannot connect") {
		t.Fatalf("want one JSON error object and exit 12, got %v: %s", err, r)
	}
}

func TestEachCommandHasItsOwnHelp(t *testing.T) {
	e := newEnv(t)
	for cmd, want := range map[string]string{"migrate": "--preflight", "backup": "--list", "restore": "--yes"} {
		r := e.mustRun(0, cmd, "--help")
		if !strings.HasPrefix(r.stdout, "Usage: openwatch "+cmd) || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "19  invalid configuration") {
			t.Errorf("openwatch %s --help: %s", cmd, r)
		}
	}
}

func TestMessagesNameWhereTheDSNCameFrom(t *testing.T) {
	e := newEnv(t)
	e.writeConf("DATABASE_WAIT_TIMEOUT=0\n")
	e.vars = []string{"OPENWATCH_DATABASE_DSN=host=127.0.0.1 port=1 dbname=x user=y sslmode=disable"}
	r := e.run("migrate", "--check")
	if r.code != ExitUnreachable || !strings.Contains(r.stderr, "OPENWATCH_DATABASE_DSN in the environment") || strings.Contains(r.stderr, e.secrets) {
		t.Fatalf("want the environment named, not %s: %s", e.secrets, r)
	}
	if n := strings.Count(r.stderr, "connection refused"); n != 1 {
		t.Errorf("the connection error is printed %d times: %s", n, r)
	}
}

func TestAnUnreachableDatabaseIsWaitedForSayingSo(t *testing.T) {
	e := newEnv(t)
	e.writeConf("DATABASE_WAIT_TIMEOUT=1\n")
	e.writeSecrets("host=127.0.0.1 port=1 dbname=x user=y sslmode=disable")
	r := e.run("migrate", "--check")
	if r.code != ExitUnreachable || !strings.Contains(r.stderr, "waiting up to 1s for it (DATABASE_WAIT_TIMEOUT in "+e.conf+")") {
		t.Fatalf("want exit 12 after saying that it waits, got %s", r)
	}
	u, _ := url.Parse(e.db.URL())
	u.Path = "/no_such_database"
	e.writeSecrets(u.String())
	if r := e.run("migrate", "--check"); r.code != ExitUnreachable || strings.Contains(r.stderr, "waiting") {
		t.Fatalf("a database that does not exist is not worth waiting for: %s", r)
	}
}

// Run by the upgrade helper, the binary names the helper's one recovery
// command instead of its own next step.
func TestMessagesNameTheHelpersRecoveryCommand(t *testing.T) {
	e := newEnv(t)
	e.writeSecrets("host=127.0.0.1 port=1 dbname=x user=y sslmode=disable")
	e.vars = []string{RecoveryVar + "=dpkg --configure -a"}
	r := e.run("migrate", "--check")
	if r.code != ExitUnreachable || !strings.Contains(r.stderr, "then run: dpkg --configure -a") || strings.Contains(r.stderr, "run: openwatch") {
		t.Fatalf("want the helper's command only: %s", r)
	}
}

// pgDumpMajor is the major version of the pg_dump on PATH.
func pgDumpMajor(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("pg_dump", "--version").Output()
	m := pgDumpVersionRE.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("pg_dump --version: %q, %v", out, err)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// refusedCompression is a BACKUP_COMPRESSION the installed pg_dump refuses.
func refusedCompression(t *testing.T) string {
	if pgDumpMajor(t) < 16 {
		return "zstd:3"
	}
	return "zstd:23"
}

func refusedCompressionReason(t *testing.T) string {
	if pgDumpMajor(t) < 16 {
		return "before version 16"
	}
	return "zstd takes a level from 1 to 22"
}
