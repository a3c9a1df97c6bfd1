package dump

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openwatch/openwatch/internal/dsn"
	"github.com/openwatch/openwatch/internal/pgtest"
)

// superExec runs sql as the superuser in the test's database: what a DBA does.
func superExec(t *testing.T, db *pgtest.Database, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.Server.Exec(ctx, db.Name, sql); err != nil {
		t.Fatalf("as superuser: %s: %v", sql, err)
	}
}

// state covers fingerprint's rows and tables plus every relation in every
// schema, every sequence's value and every large object's content.
func state(t *testing.T, db *pgtest.Database) string {
	t.Helper()
	return fingerprint(t, db) + "\nrelations " + query(t, db, `select coalesce(string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ',' order by n.nspname, c.relname), '')
			from pg_class c join pg_namespace n on n.oid = c.relnamespace
			where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\_toast%'`) +
		"\nsequences " + query(t, db, `select coalesce(string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value::text, 'unused'), ',' order by schemaname, sequencename), '') from pg_sequences`) +
		"\nlarge objects " + query(t, db, `select coalesce(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' order by oid), '') from pg_largeobject_metadata`)
}

// addLargeObjects creates an empty, a small and a large (many pages,
// incompressible) large object.
func addLargeObjects(t *testing.T, db *pgtest.Database) {
	execSQL(t, db, `select lo_from_bytea(0, '');
		select lo_from_bytea(0, 'small large object');
		select lo_from_bytea(0, (select string_agg(sha512(g::text::bytea), '') from generate_series(1, 20000) g))`)
}

// changeEverything is what happens after a restore point: rows, tables in
// new schemas, sequences and large objects change.
func changeEverything(t *testing.T, db *pgtest.Database) {
	execSQL(t, db, `create table later_feature (id int); create schema later; create table later.t (id serial);
		insert into later.t default values;
		insert into hosts (hostname, address) values ('new', '10.99.0.1');
		update hosts set hostname = hostname || '-renamed' where id % 7 = 0; delete from scan_results where id % 2 = 0;
		select lo_unlink(min(oid)) from pg_largeobject_metadata;
		select lo_put(max(oid), 10, 'overwritten') from pg_largeobject_metadata;
		select lo_from_bytea(0, 'added later');`)
}

func TestLargeObjectsRoundTripExactly(t *testing.T) {
	db, d := setup(t)
	addLargeObjects(t, db)
	want := state(t, db)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	changeEverything(t, db)
	if state(t, db) == want {
		t.Fatal("the changes did not change the state; the test proves nothing")
	}
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path}); err != nil {
		t.Fatal(err)
	}
	if got := state(t, db); got != want {
		t.Fatalf("after restore:\n got %s\nwant %s", got, want)
	}
}

func TestARestoreThatFailsAfterTheLargeObjectsChangesNothing(t *testing.T) {
	db, d := setup(t)
	addLargeObjects(t, db)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	changeEverything(t, db)
	want := state(t, db)
	// A DBA's event trigger that refuses CREATE INDEX: the restore fails in
	// its post-data part, after the large objects' data. (Its function is in
	// pg_catalog, which no restore drops.)
	superExec(t, db, `create function pg_catalog.openwatch_test_no_indexes() returns event_trigger language plpgsql as
			$$ begin raise exception 'openwatch test: no CREATE INDEX today'; end $$;
		create event trigger no_indexes on ddl_command_end when tag in ('CREATE INDEX') execute function pg_catalog.openwatch_test_no_indexes();`)
	err := Restore(context.Background(), RestoreOptions{DSN: d, File: path})
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), "no CREATE INDEX today") {
		t.Fatalf("err = %v, want the event trigger's failure and nothing changed", err)
	}
	if got := state(t, db); got != want {
		t.Fatalf("a failed restore changed the database:\n got %s\nwant %s", got, want)
	}
}

// addExtensions: the DBA installs citext (trusted) and moddatetime (not
// trusted: the app role cannot create it) in public; the app uses both.
func addExtensions(t *testing.T, db *pgtest.Database) {
	superExec(t, db, `create extension citext; create extension moddatetime`)
	execSQL(t, db, `create table notes (id serial primary key, body citext, updated_at timestamptz);
		create trigger notes_touch before update on notes for each row execute function moddatetime(updated_at);
		insert into notes (body) values ('Hello'), ('World')`)
}

func extensions(t *testing.T, db *pgtest.Database) string {
	return query(t, db, `select string_agg(extname || '@' || extnamespace::regnamespace || ' by ' || pg_get_userbyid(extowner), ',' order by extname) from pg_extension`)
}

// restoreAndCompare restores path and fails unless the state and the
// extensions are want and wantExt again.
func restoreAndCompare(t *testing.T, db *pgtest.Database, d *dsn.DSN, path, want, wantExt string) {
	t.Helper()
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path}); err != nil {
		t.Fatal(err)
	}
	if got := state(t, db); got != want {
		t.Fatalf("after restore:\n got %s\nwant %s", got, want)
	}
	if got := extensions(t, db); got != wantExt {
		t.Fatalf("extensions after restore %s, want %s", got, wantExt)
	}
}

func TestADBAInstalledExtensionSurvivesARestoreAsTheAppRole(t *testing.T) {
	db, d := setup(t)
	addExtensions(t, db)
	addLargeObjects(t, db)
	wantExt := extensions(t, db)
	want := state(t, db) + "\nnotes " + query(t, db, "select string_agg(id || ':' || body, ',' order by id) from notes")
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	changeEverything(t, db)
	execSQL(t, db, "insert into notes (body) values ('later'); create table public.later_notes (b citext)")
	var out bytes.Buffer
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path, Progress: &out}); err != nil {
		t.Fatal(err)
	}
	if got := state(t, db) + "\nnotes " + query(t, db, "select string_agg(id || ':' || body, ',' order by id) from notes"); got != want {
		t.Fatalf("after restore:\n got %s\nwant %s", got, want)
	}
	if got := extensions(t, db); got != wantExt {
		t.Fatalf("extensions after restore %s, want %s", got, wantExt)
	}
	// The restored table still uses both: citext compares case-insensitively,
	// the moddatetime trigger fires.
	if got := query(t, db, "update notes set body = 'HELLO!' where body = 'hello' returning (updated_at is not null)::text"); got != "true" {
		t.Fatalf("the trigger did not set updated_at: %s", got)
	}
	if !strings.Contains(out.String(), "restore: done in ") {
		t.Errorf("no progress line: %q", out.String())
	}
}

// schemaPrivileges describes public and ext: owner, what PUBLIC may do, comment.
func schemaPrivileges(t *testing.T, db *pgtest.Database) string {
	return query(t, db, `select string_agg(nspname || ' owner ' || nspowner::regrole::text
			|| ' public usage ' || has_schema_privilege('public', oid, 'USAGE') || ' create ' || has_schema_privilege('public', oid, 'CREATE')
			|| ' comment ' || coalesce(obj_description(oid, 'pg_namespace'), 'none'), ', ' order by nspname)
		from pg_namespace where nspname in ('public', 'ext')`)
}

func TestAnExtensionInASchemaOfTheAppSurvivesWithTheSchema(t *testing.T) {
	db, d := setup(t)
	addExtensions(t, db)
	execSQL(t, db, "create schema ext; comment on schema ext is 'the app''s'")
	superExec(t, db, "create extension autoinc schema ext") // not trusted either
	execSQL(t, db, `create table ext.counters (id int, n int default 0); insert into ext.counters values (1, 5);
		create trigger counters_autoinc before insert on ext.counters for each row execute function ext.autoinc(n, hosts_id_seq)`)
	want, wantExt, wantPriv := state(t, db), extensions(t, db), schemaPrivileges(t, db)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	changeEverything(t, db)
	execSQL(t, db, `revoke usage on schema public from public; grant create on schema public to public;
		grant usage on schema ext to public; comment on schema ext is 'changed';
		create table ext.later (i int); create function ext.later() returns int language sql as 'select 1'; insert into ext.counters values (2)`)
	restoreAndCompare(t, db, d, path, want, wantExt)
	if got := schemaPrivileges(t, db); got != wantPriv {
		t.Fatalf("schemas after restore: %s, want %s", got, wantPriv)
	}
	if got := query(t, db, "select count(*)::text from pg_proc where proname = 'later'"); got != "0" {
		t.Fatal("a function added after the restore point survived")
	}
}

func TestAnExtensionInASchemaOfTheDBASurvivesWithTheSchema(t *testing.T) {
	db, d := setup(t)
	q := pgx.Identifier{db.User}.Sanitize()
	superExec(t, db, `create schema dba; comment on schema dba is 'the DBA''s'; create extension autoinc schema dba;
		grant usage on schema dba to `+q)
	execSQL(t, db, `create table counters (id int, n int default 0); insert into counters values (1, 5);
		create trigger counters_autoinc before insert on counters for each row execute function dba.autoinc(n, hosts_id_seq)`)
	dbaSchema := `select nspowner::regrole::text || ' ' || nspacl::text || ' ' || obj_description(oid, 'pg_namespace') from pg_namespace where nspname = 'dba'`
	want, wantExt, wantSchema := state(t, db), extensions(t, db), query(t, db, dbaSchema)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	changeEverything(t, db)
	restoreAndCompare(t, db, d, path, want, wantExt)
	if got := query(t, db, dbaSchema); got != wantSchema {
		t.Fatalf("the DBA's schema after restore: %s, want %s", got, wantSchema)
	}
}

func TestTrustedExtensionsOfTheAppComeAndGoWithTheRestorePoint(t *testing.T) {
	db, d := setup(t)
	execSQL(t, db, "create extension citext; create table words (w citext); insert into words values ('Hello')")
	want, wantExt := state(t, db), extensions(t, db)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	execSQL(t, db, "drop extension citext cascade; create extension pg_trgm")
	changeEverything(t, db)
	restoreAndCompare(t, db, d, path, want, wantExt)
	if got := query(t, db, "select count(*)::text from words where w = 'hello'"); got != "1" {
		t.Fatalf("citext does not compare case-insensitively after the restore: %s", got)
	}
}

// restoreIsRefused restores path and fails unless the restore is refused
// (wantRefused) and the database is as it was before. It returns the refusal.
func restoreIsRefused(t *testing.T, db *pgtest.Database, d *dsn.DSN, path string, message ...string) error {
	t.Helper()
	want := state(t, db)
	err := Restore(context.Background(), RestoreOptions{DSN: d, File: path})
	if got := state(t, db); got != want {
		t.Fatalf("a refused restore changed the database:\n got %s\nwant %s", got, want)
	}
	wantRefused(t, err, message...)
	return err
}

// wantRefused fails unless err is a *RefusedError whose message holds each
// of message.
func wantRefused(t *testing.T, err error, message ...string) {
	t.Helper()
	var refused *RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("err = %v, want a *RefusedError", err)
	}
	for _, s := range message {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message lacks %q:\n%v", s, err)
		}
	}
}

func TestAnExtensionTheRoleCannotCreateIsRefusedBeforeAnythingChanges(t *testing.T) {
	db, d := setup(t)
	addExtensions(t, db)
	addLargeObjects(t, db)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	superExec(t, db, "drop extension moddatetime cascade")
	changeEverything(t, db)
	err := restoreIsRefused(t, db, d, path, "nothing was changed", "extension moddatetime is not installed", "not a trusted extension",
		"as a superuser, run in database "+db.Name+": CREATE EXTENSION IF NOT EXISTS moddatetime WITH SCHEMA public;")
	if strings.Contains(err.Error(), "citext") {
		t.Errorf("message names citext, which is installed:\n%v", err)
	}
	// The command the message names is the way forward.
	superExec(t, db, "CREATE EXTENSION IF NOT EXISTS moddatetime WITH SCHEMA public;")
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path}); err != nil {
		t.Fatalf("after the DBA's CREATE EXTENSION: %v", err)
	}
}

func TestAGrantToARoleThatNoLongerExistsIsRefusedBeforeAnythingChanges(t *testing.T) {
	db, d := setup(t)
	reader := db.User + "_Reader" // needs quoting
	q := pgx.Identifier{reader}.Sanitize()
	t.Cleanup(func() { db.Server.Exec(context.Background(), db.Name, "drop owned by "+q+"; drop role if exists "+q) })
	superExec(t, db, "create role "+q)
	execSQL(t, db, "grant select on hosts to "+q)
	addLargeObjects(t, db)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	superExec(t, db, "drop owned by "+q+"; drop role "+q)
	changeEverything(t, db)
	restoreIsRefused(t, db, d, path, "nothing was changed", "roles that do not exist on this server", "privileges in it): "+q+";", "CREATE ROLE "+q+" NOLOGIN;")
	superExec(t, db, "CREATE ROLE "+q+" NOLOGIN;")
	if err := Restore(context.Background(), RestoreOptions{DSN: d, File: path}); err != nil {
		t.Fatalf("after CREATE ROLE: %v", err)
	}
	if got := query(t, db, "select has_table_privilege("+quoteLiteral(reader)+", 'hosts', 'SELECT')::text"); got != "true" {
		t.Fatalf("the grant was not restored: %s", got)
	}
}

func TestARestoreAsARoleThatMayNotOwnTheArchivesObjectsIsRefused(t *testing.T) {
	db, d := setup(t)
	path := backup(t, d, filepath.Join(t.TempDir(), "b"))
	other := pgtest.Shared(t).NewDatabase(t)
	execSQL(t, other, "create table mine (id int); insert into mine values (1)")
	od, err := dsn.Parse(other.URL())
	if err != nil {
		t.Fatal(err)
	}
	err = Restore(context.Background(), RestoreOptions{DSN: od, File: path})
	wantRefused(t, err, "nothing was changed", "owned by role "+db.User, "GRANT "+db.User+" TO "+other.User+";")
	if got := query(t, other, "select string_agg(id::text, ',') from mine"); got != "1" {
		t.Fatalf("the other database changed: %s", got)
	}
}

func TestOnlyTheFinalCommitIsHeldBack(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	tests := []struct{ name, in, want string }{
		{"pg_restore's end",
			"BEGIN;\n\nCREATE TABLE t ();\n\n\nCOMMIT;\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n",
			"BEGIN;\n\nCREATE TABLE t ();\n\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n"},
		{"COMMIT; as a row of COPY data",
			"COPY t (a) FROM stdin;\nCOMMIT;\n\n-- x\n\\.\nCOMMIT;\n",
			"COPY t (a) FROM stdin;\nCOMMIT;\n\n-- x\n\\.\n"},
		{"two COMMIT lines: only the last goes",
			"COMMIT;\nCOMMIT;\n--\n",
			"COMMIT;\n--\n"},
		{"long lines pass whole", long + "\nCOMMIT;" + long + "\nCOMMIT;\n", long + "\nCOMMIT;" + long + "\n"},
		{"a COMMIT; inside a long line", long + "COMMIT;\n" + "x\n", long + "COMMIT;\nx\n"},
		{"a COMMIT; ending a line of exactly the buffer's size", strings.Repeat("x", 64<<10) + "COMMIT;\n", strings.Repeat("x", 64<<10) + "COMMIT;\n"},
		{"no final COMMIT", "CREATE TABLE t ();\nCOMMIT", "CREATE TABLE t ();\nCOMMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := copyHoldingFinalCommit(&out, strings.NewReader(tt.in)); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("got %.200q…, want %.200q…", out.String(), tt.want)
			}
		})
	}
}

func TestTheArchivesRolesAndExtensionsAreReadFromItsSQL(t *testing.T) {
	a := parseArchiveSQL(`CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA "My Ext";
COMMENT ON EXTENSION "uuid-ossp" IS 'GRANT x TO y;';
GRANT SELECT ON TABLE public."a TO b" TO reader;
GRANT USAGE ON SCHEMA other TO "we ird" WITH GRANT OPTION;
REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;
SET SESSION AUTHORIZATION "Gran""tor";
GRANT SELECT ON TABLE public.t TO "x, y";
RESET SESSION AUTHORIZATION;
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES  TO viewer;`)
	if len(a.extensions) != 1 || a.extensions[0] != (archiveExtension{"uuid-ossp", "My Ext"}) {
		t.Errorf("extensions %q", a.extensions)
	}
	if got, want := strings.Join(a.grantees, "|"), "reader|we ird|x, y|viewer|app"; got != want {
		t.Errorf("grantees %s, want %s", got, want)
	}
	if got := strings.Join(a.grantors, "|"); got != `Gran"tor` {
		t.Errorf("grantors %s", got)
	}
}

func TestTheTableOfContentsIsParsedForDescOwnerAndNames(t *testing.T) {
	entries := parseTOC(`;
; Selected TOC Entries:
;
8; 2615 16585 SCHEMA - other app
2; 3079 16387 EXTENSION - uuid-ossp 
3500; 0 0 COMMENT - EXTENSION "uuid-ossp" 
3560; 0 0 ACL - SCHEMA other app
3490; 0 16586 TABLE DATA other x app
3504; 0 0 SEQUENCE SET public t_id_seq app
3345; 2606 16581 CONSTRAINT public t t_pkey app
3493; 0 0 BLOBS - BLOBS 
`)
	var got []string
	for _, e := range entries {
		got = append(got, e.desc+"/"+e.schema+"/"+e.name+"/"+e.owner)
	}
	want := []string{"SCHEMA/-/other/app", "EXTENSION/-/uuid-ossp/", `COMMENT/-/EXTENSION "uuid-ossp"/`, "ACL/-/SCHEMA other/app",
		"TABLE DATA/other/x/app", "SEQUENCE SET/public/t_id_seq/app", "CONSTRAINT/public/t t_pkey/app", "BLOBS/-/BLOBS/"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestThePreludesDollarQuoteIsNotInAnyName(t *testing.T) {
	p := prelude(&restorePlan{ours: []string{"app$openwatch$", "x'y"}}, time.Second)
	if !strings.Contains(p, "DO $openwatch0$\n") || !strings.Contains(p, "\n$openwatch0$;\n") || !strings.Contains(p, `'x''y'`) {
		t.Fatalf("prelude:\n%s", p)
	}
}
