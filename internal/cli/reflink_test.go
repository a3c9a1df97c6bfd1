package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"

	"github.com/openwatch/openwatch/internal/pgtest"
)

// On PostgreSQL 18 a clone restore point asks for file_copy_method = clone.
// With the data directory on a loop-mounted XFS with reflink=1 and on
// btrfs the clone shares the database's blocks, and says so; on XFS
// without reflink the file system copies them, and the output reports a
// copy with what it wrote. The file system's own view checks both: its
// free space, and filefrag's shared extents on the clone's largest file.
// The swap restore and the export work there too. make test's PostgreSQL
// matrix runs it on 18 (scripts/pg-matrix.sh).
func TestOnPostgreSQL18ACloneSharesBlocksOnXFSAndBtrfsAndSaysWhetherItDid(t *testing.T) {
	if major := pgtest.Shared(t).Major(); major < 18 {
		t.Skipf("file_copy_method = clone needs PostgreSQL 18, this is %d: make test's PostgreSQL matrix runs it on 18", major)
	}
	for _, c := range []struct {
		name   string
		mkfs   []string
		shares bool
	}{
		{"xfs_with_reflink", []string{"mkfs.xfs", "-q", "-m", "reflink=1"}, true},
		{"btrfs", []string{"mkfs.btrfs", "-q"}, true},
		{"xfs_without_reflink", []string{"mkfs.xfs", "-q", "-m", "reflink=0"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			mnt := loopMount(t, c.mkfs)
			srv, err := pgtest.StartWith(pgtest.StartOptions{Dir: mnt})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Stop)
			e := newEnvOn(t, srv)
			e.mustRun(0, "migrate")
			e.allowClones()
			e.downgradeOneStep()
			// About 120 MiB, so that a copy stands out from what the
			// checkpoints write.
			e.exec("create table filler as select g, repeat(md5(g::text), 30) as pad from generate_series(1, 100000) g")
			// A database that has been running: vacuumed, its pages on disk.
			// Otherwise autovacuum (aggressive on the test servers) sets the
			// fresh table's hint bits and visibility map while the clone is
			// measured, and a copy-on-write file system counts those writes.
			e.exec("vacuum (freeze, analyze) filler")
			if err := srv.Exec(context.Background(), "postgres", "CHECKPOINT"); err != nil {
				t.Fatal(err)
			}
			size := e.query("select pg_database_size(current_database())")

			free := freeBytes(t, mnt)
			r := e.mustRun(0, "migrate")
			used := free - freeBytes(t, mnt)
			name := cloneNameRE.FindString(r.stdout)
			if name == "" {
				t.Fatalf("no clone restore point: %s", r)
			}
			dbSize := parseInt(t, size)
			shared := sharedExtents(t, srv, name)
			t.Logf("%s: the clone of %d bytes took %d bytes of free space; filefrag: shared extents %v\n%s", c.name, dbSize, used, shared, r.stdout)
			if c.shares {
				if used >= dbSize/2 || !shared {
					t.Fatalf("the clone did not share blocks: %d bytes used for %d, shared extents %v", used, dbSize, shared)
				}
				if !regexp.MustCompile(`a clone of the database taken in [^(]+\(the file system shared the blocks: [0-9.]+ [KMG]?i?B written for the database's `).MatchString(r.stdout) ||
					strings.Contains(r.stdout, "file cloning was not used") {
					t.Fatalf("the output does not say the blocks were shared: %s", r)
				}
			} else {
				if used < dbSize/2 || shared {
					t.Fatalf("the file system was to copy: %d bytes used for %d, shared extents %v", used, dbSize, shared)
				}
				if !strings.Contains(r.stdout, "clone: PostgreSQL 18's file cloning was not used: file_copy_method = clone ran, but the file system under ") ||
					!regexp.MustCompile(`a clone of the database taken in [^(]+\(a copy: [0-9.]+ MiB written\)`).MatchString(r.stdout) {
					t.Fatalf("the output does not report a copy with what it wrote: %s", r)
				}
			}

			// The swap restore: the schema and rows from before the migration.
			e.mustRun(0, "restore", "--yes", name)
			if got := e.applied(); got != "20260101000001,20260101000002" || e.query("select count(*) from filler") != "100000" {
				t.Fatalf("after the swap: applied %q", got)
			}
			// Migrate again, and export the new clone: one verified file.
			e.mustRun(0, "migrate")
			r = e.mustRun(0, "backup", "--export")
			if files := e.dumps(); len(files) != 1 || strings.TrimSpace(r.stdout) != files[0] {
				t.Fatalf("export: %s\nfiles %v", r, files)
			}
			if e.clones() != "" {
				t.Fatalf("clones left after the export: %s", e.clones())
			}
		})
	}
}

// loopMount makes a file system with mkfs on a loop device over a sparse
// file in a temp dir and mounts it; everything goes at test end.
func loopMount(t *testing.T, mkfs []string) string {
	t.Helper()
	// Not t.TempDir(): the server's postgres user must reach the mount.
	dir, err := os.MkdirTemp("", "openwatch-reflink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A clone wants 1 GiB left free besides the copy.
	if err := os.Truncate(img, 3<<30); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run(mkfs[0], append(mkfs[1:], img)...)
	dev := run("losetup", "--find", "--show", img)
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })
	run("mount", dev, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	if err := os.Chmod(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mnt
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// sharedExtents says whether filefrag -v shows shared extents in the
// clone's copy of the table filler, its largest file.
func sharedExtents(t *testing.T, srv *pgtest.Server, clone string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.SuperURL(clone))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rel string
	if err := conn.QueryRow(ctx, "select pg_relation_filepath('filler')").Scan(&rel); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("filefrag", "-v", filepath.Join(srv.SocketDir, "data", rel)).CombinedOutput()
	if err != nil {
		t.Fatalf("filefrag -v: %v\n%s", err, out)
	}
	return strings.Contains(string(out), "shared")
}

func parseInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, r := range s {
		if r < '0' || r > '9' {
			t.Fatalf("%q is not a number", s)
		}
		n = n*10 + int64(r-'0')
	}
	return n
}
