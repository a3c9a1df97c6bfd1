package clone

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

// Usage is what a clone's files take on the server's file system, read from
// the file system itself (FIEMAP, as filefrag -v shows it): Allocated is
// every byte of their extents, Shared the part in extents the file system
// marks as shared with another file (a reflink: the source's blocks).
// Written, Allocated minus Shared, is what the clone cost.
type Usage struct {
	Dir       string
	Allocated int64
	Shared    int64
}

// Written is what the clone took on the file system.
func (u Usage) Written() int64 { return u.Allocated - u.Shared }

// SharedBlocks says whether the clone mostly shares its blocks with the
// source (a reflink); a copy shares none.
func (u Usage) SharedBlocks() bool { return u.Allocated > 0 && u.Shared >= u.Allocated/2 }

// measureClone reads the usage of database name's files in its default
// tablespace, through the postmaster's /proc entry (root, a server on this
// machine, as Eligible). A file system without FIEMAP (tmpfs) shares
// nothing: its files count whole, by their allocated blocks.
func measureClone(ctx context.Context, conn *pgx.Conn, name string) (Usage, error) {
	pm, err := postmaster(ctx, conn)
	if err != nil {
		return Usage{}, err
	}
	var oid uint32
	var location string
	if err := conn.QueryRow(ctx, `select oid, pg_tablespace_location(dattablespace) from pg_database where datname = $1`, name).Scan(&oid, &location); err != nil {
		return Usage{}, fmt.Errorf("look up the clone %q: %w", name, err)
	}
	dir := filepath.Join(fmt.Sprintf("/proc/%d/cwd", pm), "base", fmt.Sprint(oid))
	if location != "" {
		// A tablespace holds PG_<version>_<catalog>/<oid>.
		matches, _ := filepath.Glob(filepath.Join(fmt.Sprintf("/proc/%d/root", pm), location, "PG_*", fmt.Sprint(oid)))
		if len(matches) != 1 {
			return Usage{}, fmt.Errorf("the clone's directory in tablespace %s was not found", location)
		}
		dir = matches[0]
	}
	u := Usage{Dir: dir}
	if resolved, err := filepath.EvalSymlinks(dir); err == nil {
		u.Dir = resolved
	}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		allocated, shared, err := fileUsage(path)
		u.Allocated += allocated
		u.Shared += shared
		return err
	})
	if err != nil {
		return Usage{}, fmt.Errorf("measure the clone's files in %s: %w", dir, err)
	}
	return u, nil
}

// The FIEMAP ioctl (linux/fiemap.h).
const (
	fsIocFiemap       = 0xc020660b // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync    = 0x1
	fiemapExtentLast  = 0x1
	fiemapExtentShare = 0x2000
	fiemapBatch       = 64
)

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

type fiemap struct {
	Start, Length                               uint64
	Flags, MappedExtents, ExtentCount, Reserved uint32
	Extents                                     [fiemapBatch]fiemapExtent
}

// fileUsage returns the bytes in path's extents and those of them shared.
func fileUsage(path string) (allocated, shared int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var m fiemap
	for start := uint64(0); ; {
		m = fiemap{Start: start, Length: ^uint64(0) - start, Flags: fiemapFlagSync, ExtentCount: fiemapBatch}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&m)))
		if errno != 0 {
			if errors.Is(errno, unix.EOPNOTSUPP) || errors.Is(errno, unix.ENOTTY) {
				// No extents to read (tmpfs): nothing is shared.
				var st unix.Stat_t
				if err := unix.Fstat(int(f.Fd()), &st); err != nil {
					return 0, 0, err
				}
				return st.Blocks * 512, 0, nil
			}
			return 0, 0, fmt.Errorf("FIEMAP %s: %w", path, errno)
		}
		if m.MappedExtents == 0 {
			return allocated, shared, nil
		}
		for _, e := range m.Extents[:m.MappedExtents] {
			allocated += int64(e.Length)
			if e.Flags&fiemapExtentShare != 0 {
				shared += int64(e.Length)
			}
			if e.Flags&fiemapExtentLast != 0 {
				return allocated, shared, nil
			}
			start = e.Logical + e.Length
		}
	}
}
