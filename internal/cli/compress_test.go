package cli

import (
	"strings"
	"testing"

	"github.com/openwatch/openwatch/internal/dump"
)

// An upgrade's file restore point is written uncompressed while the service
// is stopped; backup --list says so, backup --export (which the helper runs
// once the service is up) compresses it in place, and a restore from either
// form gives back the database as it was.
func TestTheUpgradesFileIsCompressedByBackupExportAndRestoresInBothForms(t *testing.T) {
	e := newEnv(t)
	e.writeConf("BACKUP_DIR=" + e.backups + "\nRESTORE_POINT=file\nDATABASE_WAIT_TIMEOUT=0\n")
	e.mustRun(0, "migrate")
	e.downgradeOneStep()
	e.exec("insert into hosts (hostname, address) values ('before-the-upgrade', '10.0.0.1')")
	r := e.mustRun(0, "migrate")
	files := e.dumps()
	if len(files) != 1 || !strings.Contains(r.stdout, "restore point: "+files[0]) {
		t.Fatalf("want one file restore point: %s", r)
	}
	if !strings.Contains(r.stderr, "pg_dump --compress=0") {
		t.Errorf("the backup's last line does not say it wrote the file uncompressed: %s", r)
	}
	if c, err := dump.ArchiveCompressed(files[0]); err != nil || c {
		t.Fatalf("the upgrade's file: compressed %v, %v; want uncompressed", c, err)
	}
	r = e.mustRun(0, "backup", "--list")
	if !strings.Contains(r.stdout, "1 restore point file(s) not compressed yet") || !strings.Contains(r.stdout, "openwatch backup --export") {
		t.Errorf("backup --list does not name the pending compression: %s", r)
	}

	// A restore from the uncompressed form.
	e.exec("delete from hosts")
	e.mustRun(0, "restore", "--yes", files[0])
	if got := e.query("select count(*) from hosts where hostname = 'before-the-upgrade'"); got != "1" {
		t.Fatalf("restored from the uncompressed file: %s rows", got)
	}

	r = e.mustRun(0, "backup", "--export")
	if strings.TrimSpace(r.stdout) != files[0] || !strings.Contains(r.stderr, "compressed "+files[0]) {
		t.Fatalf("backup --export did not compress %s: %s", files[0], r)
	}
	if c, err := dump.ArchiveCompressed(files[0]); err != nil || !c {
		t.Fatalf("after backup --export: compressed %v, %v", c, err)
	}
	if r := e.mustRun(0, "backup", "--list"); strings.Contains(r.stdout, "not compressed yet") {
		t.Errorf("backup --list still names a pending compression: %s", r)
	}
	e.mustRun(0, "backup", "--export") // nothing left to do

	// A restore from the compressed form.
	e.exec("delete from hosts")
	e.mustRun(0, "restore", "--yes", files[0])
	if got := e.query("select count(*) from hosts where hostname = 'before-the-upgrade'"); got != "1" {
		t.Fatalf("restored from the compressed file: %s rows", got)
	}
}
