package migrate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/openwatch/openwatch/internal/pgtest"
)

func sums(t *testing.T, db *pgtest.Database) string {
	t.Helper()
	return query(t, db, "select coalesce(string_agg(version || '=' || file || '=' || sha256, ',' order by version), '') from "+ChecksumTable)
}

func wantSums(fsys fstest.MapFS, names ...string) string {
	var s []string
	for _, n := range names {
		s = append(s, strings.SplitN(n, "_", 2)[0]+"="+n+"="+Checksum(fsys[n].Data))
	}
	return strings.Join(s, ",")
}

func TestEveryAppliedMigrationRecordsTheChecksumOfItsFile(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{
		"001_t.sql": mig("create table t (n int)"), // no final ";"
		"002_i.sql": {Data: []byte("-- migrate:up transaction:false\ncreate index concurrently t_n on t (n);\n-- migrate:down\ndrop index t_n;\n")},
		"003_u.sql": mig("insert into t values (3);"),
	}
	var out bytes.Buffer
	if _, err := run(d, fsys, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got, want := sums(t, db), wantSums(fsys, "001_t.sql", "002_i.sql", "003_u.sql"); got != want {
		t.Fatalf("recorded %s\nwant     %s", got, want)
	}
	if strings.Contains(out.String(), "recorded the checksums") {
		t.Fatalf("a run that recorded as it applied says it backfilled:\n%s", out.String())
	}
}

func TestAFailedMigrationRecordsNoChecksum(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{"001_t.sql": mig("create table t (n int);"), "002_bad.sql": mig("insert into t values (1/0);")}
	var f *FailedError
	if _, err := run(d, fsys, &bytes.Buffer{}); !errors.As(err, &f) {
		t.Fatalf("err = %v, want *FailedError", err)
	}
	if got, want := sums(t, db), wantSums(fsys, "001_t.sql"); got != want {
		t.Fatalf("recorded %s, want %s (the failed one rolled back with its record)", got, want)
	}
}

func TestAnEditedAppliedMigrationIsRefusedNamingItAndBothChecksums(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{"001_t.sql": mig("create table t (n int);"), "002_u.sql": mig("insert into t values (2);")}
	if _, err := run(d, fsys, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	old := Checksum(fsys["002_u.sql"].Data)
	fsys["002_u.sql"] = mig("insert into t values (22);")
	fsys["003_v.sql"] = mig("insert into t values (3);")
	shipped := Checksum(fsys["002_u.sql"].Data)

	conn := db.Conn(t)
	s, err := ReadState(context.Background(), conn, fsys)
	if err != nil {
		t.Fatal(err)
	}
	_, verr := VerifyChecksums(context.Background(), conn, fsys, s)
	_, rerr := run(d, fsys, &bytes.Buffer{})
	for _, err := range []error{verr, rerr} {
		var c *ChecksumError
		if !errors.As(err, &c) || len(c.Mismatches) != 1 || c.Mismatches[0].Migration.Name != "002_u.sql" ||
			c.Mismatches[0].Recorded != old || c.Mismatches[0].Shipped != shipped {
			t.Fatalf("err = %v (%+v), want a *ChecksumError for 002_u.sql only", err, c)
		}
		for _, w := range []string{"002_u.sql", old, shipped, "nothing was changed"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("message lacks %q:\n%v", w, err)
			}
		}
	}
	if got := applied(t, db); got != "001,002" {
		t.Fatalf("applied %s after the refusal, want 001,002", got)
	}
}

func TestADatabaseMigratedBeforeChecksumsGetsThemRecordedOnceByMigrateNotByCheck(t *testing.T) {
	db, d := setup(t)
	fsys := fstest.MapFS{"001_t.sql": mig("create table t (n int);"), "002_u.sql": mig("insert into t values (2);")}
	// What an openwatch without checksums did: dbmate alone.
	if err := Apply(d, fsys, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	conn := db.Conn(t)
	s, err := ReadState(context.Background(), conn, fsys)
	if err != nil {
		t.Fatal(err)
	}
	unrecorded, err := VerifyChecksums(context.Background(), conn, fsys, s)
	if err != nil || names(unrecorded) != "001_t.sql,002_u.sql" {
		t.Fatalf("VerifyChecksums = %v, %v; want both unrecorded", unrecorded, err)
	}
	if got := query(t, db, "select coalesce(to_regclass('"+ChecksumTable+"')::text, 'none')"); got != "none" {
		t.Fatalf("the check created %s", got)
	}
	var out bytes.Buffer
	if _, err := run(d, fsys, &out); err != nil {
		t.Fatal(err)
	}
	if want := "recorded the checksums of 2 migration(s) applied before openwatch recorded them: 001_t.sql, 002_u.sql\n" +
		"stored the down sections of 2 migration(s) applied before openwatch stored them (for the way back): 001_t.sql, 002_u.sql\n"; out.String() != want {
		t.Fatalf("first run said %q, want %q", out.String(), want)
	}
	if got, want := sums(t, db), wantSums(fsys, "001_t.sql", "002_u.sql"); got != want {
		t.Fatalf("recorded %s, want %s", got, want)
	}
	out.Reset()
	if _, err := run(d, fsys, &out); err != nil || out.String() != "" {
		t.Fatalf("second run: %v, said %q; want silence", err, out.String())
	}
}

func TestTheRecordGoesBeforeTheDownSection(t *testing.T) {
	m := Migration{Version: "001", Name: "001_it's.sql"}
	b := []byte("-- migrate:up\nselect 1\n-- migrate:down\nselect 2;\n")
	rec, err := withChecksumRecord(b, m)
	if err != nil {
		t.Fatal(err)
	}
	got := string(rec)
	up, down, ok := strings.Cut(got, "-- migrate:down")
	if !ok || down != "\nselect 2;\n" || !strings.Contains(up, "VALUES ('001', '001_it''s.sql', '"+Checksum(b)+"')") ||
		!strings.HasPrefix(up, "-- migrate:up\nselect 1\n\n;\n") {
		t.Fatalf("got:\n%s", got)
	}
}
