package dump

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openwatch/openwatch/internal/fsync"
	"github.com/openwatch/openwatch/internal/progress"
)

// DeferrableLevel is the zlib level of BACKUP_COMPRESSION when a restore
// point taken during an upgrade can be written uncompressed and compressed
// after the service started (CompressPending): a level 1-9, or gzip[:N].
// ok is false for 0 (no compression: nothing to defer) and for lz4 and zstd,
// which pg_dump (16+) applies itself, during the dump.
func DeferrableLevel(compression string) (level int, ok bool) {
	c := strings.TrimSpace(compression)
	switch {
	case c == "gzip":
		return 6, true // pg_dump's default for gzip
	case strings.HasPrefix(c, "gzip:"):
		c = strings.TrimPrefix(strings.TrimPrefix(c, "gzip:"), "level=")
	}
	n, err := strconv.Atoi(c)
	if err != nil || n < 1 || n > 9 {
		return 0, false
	}
	return n, true
}

// Pending lists the restore points in dir that were written uncompressed
// for a later compression (newest first): files that pg_restore reads as
// they are, and that CompressPending replaces with their compressed copies.
// With compression 0 (or one that cannot be deferred) nothing is pending.
func Pending(dir, compression string) ([]RestorePoint, error) {
	if _, ok := DeferrableLevel(compression); !ok {
		return nil, nil
	}
	rps, err := List(dir)
	if err != nil {
		return nil, err
	}
	var pending []RestorePoint
	for _, rp := range rps {
		if compressed, err := ArchiveCompressed(rp.Name); err == nil && !compressed {
			pending = append(pending, rp)
		}
	}
	return pending, nil
}

// CompressOptions configure CompressPending.
type CompressOptions struct {
	Dir         string
	Compression string    // BACKUP_COMPRESSION
	Progress    io.Writer // progress lines; nil for none
	// LockTimeout bounds the wait for a backup into the same directory;
	// 0 means DefaultBackupLockTimeout.
	LockTimeout time.Duration
}

// CompressPending replaces each pending restore point in o.Dir (Pending)
// with its compressed copy, newest first, and returns the paths it
// compressed. It holds the directory's lock throughout, as Backup does.
//
// Each copy is written as a partial file, synced, read back by pg_restore
// (its table of contents, then every row: the SQL pg_restore makes of the
// copy must be byte for byte the SQL it makes of the original), given the
// original's modification time, and renamed over the original, which until
// then stays the restore point under its name; then the directory is
// synced. Killed at any point, the directory holds the original (or, after
// the rename, the verified copy) under the name and at most a partial file,
// which the next backup or compression removes.
func CompressPending(ctx context.Context, o CompressOptions) ([]string, error) {
	level, ok := DeferrableLevel(o.Compression)
	if !ok {
		return nil, nil
	}
	if _, err := os.Stat(o.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultBackupLockTimeout
	}
	lock, err := lockDir(ctx, o.Dir, o.LockTimeout, o.Progress)
	if err != nil {
		return nil, err
	}
	defer lock.unlock()
	if lock.held() {
		if err := removeStalePartials(o.Dir, o.Progress); err != nil {
			return nil, err
		}
	}
	pending, err := Pending(o.Dir, o.Compression)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, rp := range pending {
		if err := compressOne(ctx, rp.Name, level, o.Progress); err != nil {
			return done, fmt.Errorf("compress %s (it stays the restore point, uncompressed): %w", rp.Name, err)
		}
		done = append(done, rp.Name)
	}
	return done, nil
}

// goLevel is the level of Go's compress/flate that gives a file no larger
// than pg_dump's (C zlib) at level: Go's level 1 is a faster, weaker
// algorithm than zlib's (measured here on the benchmark's data: 1% larger
// than pg_dump -Z1; level 2, 8% smaller), so each level takes the next one.
func goLevel(level int) int { return min(level+1, 9) }

// compressOne replaces path with its compressed, verified copy.
func compressOne(ctx context.Context, path string, level int, w io.Writer) (err error) {
	src, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	srcInfo, err := src.Stat()
	if err != nil {
		return err
	}
	if !srcInfo.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, PartialPattern)
	if err != nil {
		return fmt.Errorf("create a file in %s: %w", dir, err)
	}
	partial := f.Name()
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(partial)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	started := time.Now()
	stop := progress.Watch(progress.Start(w, progress.Step{Label: "compress", Total: srcInfo.Size() / 3, TotalIsEstimate: true,
		Basis: "a third of the uncompressed file"}), func() int64 {
		fi, err := f.Stat()
		if err != nil {
			return 0
		}
		return fi.Size()
	})
	err = recompress(src, f, level, goLevel(level))
	stop(err == nil)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", partial, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	wrote := time.Since(started)
	if err := sameRestore(ctx, path, partial); err != nil {
		return err
	}
	if err := os.Chtimes(partial, srcInfo.ModTime(), srcInfo.ModTime()); err != nil {
		return err
	}
	// The name must still hold the file that was compressed (a prune may
	// have removed it meanwhile: then the copy goes too).
	now, err := os.Lstat(path)
	if err != nil || !os.SameFile(now, srcInfo) {
		return fmt.Errorf("%s changed while it was compressed", path)
	}
	if err := os.Rename(partial, path); err != nil {
		return err
	}
	if err := fsync.Dir(dir); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	if w != nil {
		fi, _ := os.Stat(path)
		var size int64
		if fi != nil {
			size = fi.Size()
		}
		fmt.Fprintf(w, "compressed %s: %s → %s in %s, verified in %s\n", path, progress.Bytes(srcInfo.Size()), progress.Bytes(size),
			wrote.Round(10*time.Millisecond), (time.Since(started) - wrote).Round(10*time.Millisecond))
	}
	return nil
}

// sameRestore reads both archives with pg_restore, their tables of contents
// and then everything a restore would run, and fails unless the SQL of the
// copy is the SQL of the original, byte for byte.
func sameRestore(ctx context.Context, original, copy string) error {
	if err := localRun(ctx, io.Discard, "pg_restore", "--list", "--", copy); err != nil {
		return fmt.Errorf("the compressed copy is not a usable restore point: %w", err)
	}
	sums := make([][]byte, 2)
	errs := make([]error, 2)
	done := make(chan int, 2)
	for i, file := range []string{original, copy} {
		go func() {
			h := &sqlHash{h: sha256.New()}
			errs[i] = localRun(ctx, h, "pg_restore", "--file=-", "--", file)
			sums[i] = h.sum()
			done <- i
		}()
	}
	<-done
	<-done
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if string(sums[0]) != string(sums[1]) {

		return fmt.Errorf("the compressed copy does not restore to the same SQL as the original")
	}
	return nil
}

// sqlHash hashes pg_restore's SQL line by line, except the lines with the
// random key pg_restore puts in each run's output (\restrict KEY and
// \unrestrict KEY, PostgreSQL 13.22, 14.19, 15.14, 16.10, 17.6 and later).
type sqlHash struct {
	h    hash.Hash
	line []byte
}

var restrictLine = regexp.MustCompile(`^\\(un)?restrict [A-Za-z0-9]+\n?$`)

func (s *sqlHash) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.line = append(s.line, p...)
			break
		}
		s.line = append(s.line, p[:i+1]...)
		p = p[i+1:]
		s.flush()
	}
	return n, nil
}

func (s *sqlHash) flush() {
	if !restrictLine.Match(s.line) {
		s.h.Write(s.line)
	}
	s.line = s.line[:0]
}

func (s *sqlHash) sum() []byte {
	s.flush()
	return s.h.Sum(nil)
}

// localRun runs a PostgreSQL client program that reads only files (no
// connection, so no connection settings in its environment), its output to
// out, with the parent-death signal as command sets it.
func localRun(ctx context.Context, out io.Writer, name string, args ...string) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s not found in PATH (install the PostgreSQL client package, e.g. postgresql-client)", name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	env := []string{"LC_ALL=C", "PATH=" + os.Getenv("PATH")}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	cmd.Env, cmd.Dir, cmd.Stdout = env, "/", out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := &tail{}
	cmd.Stderr = stderr
	if err := runChild(cmd); err != nil {
		if msg := stderr.String(); msg != "" {
			return fmt.Errorf("%s failed: %s", name, msg)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
