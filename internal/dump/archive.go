package dump

import (
	"bufio"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"os"
)

// pg_dump's custom archive format, as far as compressing an uncompressed
// archive needs it (PostgreSQL's src/bin/pg_dump/pg_backup_archiver.c,
// pg_backup_custom.c). A restore point is written uncompressed while the
// service is stopped (pg_dump --compress=0, the cheapest archive pg_dump
// writes) and compressed after the service started: recompress reads that
// archive and writes the same archive with every data block deflated, as
// pg_dump --compress=N would have written it, so pg_restore reads either.
//
// Layout: the header ("PGDMP", version, int and offset sizes, format,
// compression, creation time, database name, versions), the table of
// contents (one entry per object; an entry with data ends with the data
// block's offset), then the data blocks: a block type, the entry's dump ID,
// and the data as length-prefixed chunks ending with a zero length; a
// large-objects block holds (OID, chunks) pairs ending with OID 0. With
// compression, each table's data and each large object is one zlib stream
// cut into chunks. Integers are a sign byte and intSize little-endian bytes;
// offsets a state byte and offSize little-endian bytes. Neither the header
// nor the table of contents changes size when the compression or the
// offsets change, so the copy keeps them in place and patches them.

const (
	archiveMagic  = "PGDMP"
	formatCustom  = 1
	blockData     = 1
	blockBlobs    = 3
	offsetNotSet  = 1
	offsetSet     = 2
	offsetNoData  = 3
	algorithmNone = 0
	algorithmGzip = 1
	chunkSize     = 64 << 10
)

func archiveVersion(major, minor, rev byte) int { return (int(major)*256+int(minor))*256 + int(rev) }

var (
	vers1_12 = archiveVersion(1, 12, 0) // the oldest PostgreSQL 13 writes is 1.14; 1.12 is PostgreSQL 9.6
	vers1_14 = archiveVersion(1, 14, 0) // table access method
	vers1_15 = archiveVersion(1, 15, 0) // compression algorithm byte in the header
	vers1_16 = archiveVersion(1, 16, 0) // relkind
	vers1_17 = archiveVersion(1, 17, 0) // the first version this reader does not know
)

// errNotRecompressible says an archive is not one recompress can handle; the
// file stays as it is (a usable restore point, only larger).
var errNotRecompressible = errors.New("not an uncompressed pg_dump custom archive this openwatch can compress")

// archiveHeader is what recompress and the listing need from the header.
type archiveHeader struct {
	version        int
	intSize        int
	offSize        int
	compressionAt  int64 // offset of the compression field
	compressionLen int   // its size: 1 (an algorithm byte) or 1+intSize (a level)
	compressed     bool
}

// archiveReader reads the archive's integers and strings, counting bytes.
type archiveReader struct {
	r   *bufio.Reader
	pos int64
	h   archiveHeader
}

func (a *archiveReader) byte() (byte, error) {
	b, err := a.r.ReadByte()
	if err == nil {
		a.pos++
	}
	return b, err
}

func (a *archiveReader) full(p []byte) error {
	n, err := io.ReadFull(a.r, p)
	a.pos += int64(n)
	return err
}

// int reads a sign byte and intSize little-endian bytes.
func (a *archiveReader) int() (int64, error) {
	buf := make([]byte, 1+a.h.intSize)
	if err := a.full(buf); err != nil {
		return 0, err
	}
	var v int64
	for i := a.h.intSize; i >= 1; i-- {
		v = v<<8 | int64(buf[i])
	}
	if buf[0] != 0 {
		v = -v
	}
	return v, nil
}

// str reads a length (-1: null) and that many bytes.
func (a *archiveReader) str() error {
	n, err := a.int()
	if err != nil {
		return err
	}
	if n < 0 {
		return nil
	}
	if n > 1<<30 {
		return fmt.Errorf("%w: a string of %d bytes", errNotRecompressible, n)
	}
	_, err = a.r.Discard(int(n))
	a.pos += n
	return err
}

// readHeader reads the archive header up to the table of contents.
func (a *archiveReader) readHeader() error {
	magic := make([]byte, 5)
	if err := a.full(magic); err != nil || string(magic) != archiveMagic {
		return fmt.Errorf("%w: no pg_dump archive header", errNotRecompressible)
	}
	v := make([]byte, 6)
	if err := a.full(v); err != nil {
		return err
	}
	a.h.version = archiveVersion(v[0], v[1], v[2])
	a.h.intSize, a.h.offSize = int(v[3]), int(v[4])
	if a.h.version < vers1_12 || a.h.version >= vers1_17 || a.h.intSize < 1 || a.h.intSize > 8 || a.h.offSize < 1 || a.h.offSize > 8 {
		return fmt.Errorf("%w: archive version %d.%d.%d", errNotRecompressible, v[0], v[1], v[2])
	}
	if v[5] != formatCustom {
		return fmt.Errorf("%w: not the custom format", errNotRecompressible)
	}
	a.h.compressionAt = a.pos
	if a.h.version >= vers1_15 {
		alg, err := a.byte()
		if err != nil {
			return err
		}
		a.h.compressionLen, a.h.compressed = 1, alg != algorithmNone
	} else {
		level, err := a.int()
		if err != nil {
			return err
		}
		a.h.compressionLen, a.h.compressed = 1+a.h.intSize, level != 0
	}
	for i := 0; i < 7; i++ { // creation time
		if _, err := a.int(); err != nil {
			return err
		}
	}
	for i := 0; i < 3; i++ { // database name, server and pg_dump versions
		if err := a.str(); err != nil {
			return err
		}
	}
	return nil
}

// archiveEntry is an entry's dump ID and where its data offset is.
type archiveEntry struct {
	dumpID   int64
	offsetAt int64
	state    byte
}

// readTOC reads the table of contents.
func (a *archiveReader) readTOC() ([]archiveEntry, error) {
	n, err := a.int()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > 1<<24 {
		return nil, fmt.Errorf("%w: %d table of contents entries", errNotRecompressible, n)
	}
	entries := make([]archiveEntry, 0, n)
	for i := int64(0); i < n; i++ {
		var e archiveEntry
		if e.dumpID, err = a.int(); err != nil {
			return nil, err
		}
		if _, err = a.int(); err != nil { // had a dumper
			return nil, err
		}
		// tableoid, oid, tag, desc
		for j := 0; j < 4; j++ {
			if err := a.str(); err != nil {
				return nil, err
			}
		}
		if _, err = a.int(); err != nil { // section
			return nil, err
		}
		// defn, dropStmt, copyStmt, namespace, tablespace
		for j := 0; j < 5; j++ {
			if err := a.str(); err != nil {
				return nil, err
			}
		}
		if a.h.version >= vers1_14 {
			if err := a.str(); err != nil { // tableam
				return nil, err
			}
		}
		if a.h.version >= vers1_16 {
			if _, err = a.int(); err != nil { // relkind
				return nil, err
			}
		}
		for j := 0; j < 2; j++ { // owner, "false" (with OIDs)
			if err := a.str(); err != nil {
				return nil, err
			}
		}
		for { // dependencies, ending with a null string
			l, err := a.int()
			if err != nil {
				return nil, err
			}
			if l < 0 {
				break
			}
			if _, err := a.r.Discard(int(l)); err != nil {
				return nil, err
			}
			a.pos += l
		}
		e.offsetAt = a.pos
		if e.state, err = a.byte(); err != nil {
			return nil, err
		}
		if _, err := a.r.Discard(a.h.offSize); err != nil {
			return nil, err
		}
		a.pos += int64(a.h.offSize)
		entries = append(entries, e)
	}
	return entries, nil
}

// ArchiveCompressed reports whether the pg_dump custom archive file has
// compressed data (false for pg_dump --compress=0).
func ArchiveCompressed(file string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	a := &archiveReader{r: bufio.NewReaderSize(f, 4096)}
	if err := a.readHeader(); err != nil {
		return false, err
	}
	return a.h.compressed, nil
}

// archiveWriter writes integers and chunked zlib streams, counting bytes.
type archiveWriter struct {
	w       *bufio.Writer
	pos     int64
	intSize int
}

func (w *archiveWriter) write(p []byte) error {
	n, err := w.w.Write(p)
	w.pos += int64(n)
	return err
}

func (w *archiveWriter) int(v int64) error {
	buf := make([]byte, 1+w.intSize)
	if v < 0 {
		buf[0], v = 1, -v
	}
	for i := 1; i <= w.intSize; i++ {
		buf[i] = byte(v)
		v >>= 8
	}
	return w.write(buf)
}

// chunker cuts what it is given into length-prefixed chunks.
type chunker struct {
	w   *archiveWriter
	buf []byte
}

func (c *chunker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		take := min(chunkSize-len(c.buf), len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == chunkSize {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	if err := c.w.int(int64(len(c.buf))); err != nil {
		return err
	}
	err := c.w.write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// recompress copies the uncompressed custom archive src into dst (an empty
// file opened for writing and reading) with every data block compressed by
// Go's zlib at zlibLevel; the header records level (1-9, as pg_dump
// --compress=level would; PostgreSQL 16 and later record only "gzip"). dst
// is neither synced nor closed.
func recompress(src io.Reader, dst *os.File, level, zlibLevel int) error {
	a := &archiveReader{r: bufio.NewReaderSize(src, 1<<20)}
	// The header and the table of contents are copied as read.
	head := &headCopy{r: a.r}
	a.r = bufio.NewReaderSize(head, 1<<16)
	if err := a.readHeader(); err != nil {
		return err
	}
	if a.h.compressed {
		return fmt.Errorf("%w: it is compressed already", errNotRecompressible)
	}
	entries, err := a.readTOC()
	if err != nil {
		return fmt.Errorf("read the table of contents: %w", err)
	}
	// Copy exactly pos bytes: what the bufio.Reader took beyond them is
	// in its buffer, which the data section is read from next.
	headBytes := head.buf.Bytes()[:a.pos]
	out := make([]byte, len(headBytes))
	copy(out, headBytes)
	if a.h.version >= vers1_15 {
		out[a.h.compressionAt] = algorithmGzip
	} else {
		out[a.h.compressionAt] = 0
		v := level
		for i := 1; i <= a.h.intSize; i++ {
			out[a.h.compressionAt+int64(i)] = byte(v)
			v >>= 8
		}
	}
	w := &archiveWriter{w: bufio.NewWriterSize(dst, 1<<20), intSize: a.h.intSize}
	if err := w.write(out); err != nil {
		return err
	}
	head.done = true // from here on, reads go straight to src
	positions := map[int64]int64{}
	zw, err := zlib.NewWriterLevel(io.Discard, zlibLevel)
	if err != nil {
		return err
	}
	ch := &chunker{w: w, buf: make([]byte, 0, chunkSize)}
	// data copies one table's or large object's chunks, deflated.
	data := func() error {
		zw.Reset(ch)
		for {
			n, err := a.int()
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			if n < 0 {
				return fmt.Errorf("%w: a data chunk of %d bytes", errNotRecompressible, n)
			}
			if _, err := io.CopyN(zw, a.r, n); err != nil {
				return err
			}
			a.pos += n
		}
		if err := zw.Close(); err != nil {
			return err
		}
		if err := ch.flush(); err != nil {
			return err
		}
		return w.int(0)
	}
	for {
		typ, err := a.byte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		id, err := a.int()
		if err != nil {
			return err
		}
		if _, dup := positions[id]; dup {
			return fmt.Errorf("%w: two data blocks for entry %d", errNotRecompressible, id)
		}
		positions[id] = w.pos
		if err := w.write([]byte{typ}); err != nil {
			return err
		}
		if err := w.int(id); err != nil {
			return err
		}
		switch typ {
		case blockData:
			if err := data(); err != nil {
				return fmt.Errorf("data of entry %d: %w", id, err)
			}
		case blockBlobs:
			for {
				oid, err := a.int()
				if err != nil {
					return err
				}
				if err := w.int(oid); err != nil {
					return err
				}
				if oid == 0 {
					break
				}
				if err := data(); err != nil {
					return fmt.Errorf("large object %d of entry %d: %w", oid, id, err)
				}
			}
		default:
			return fmt.Errorf("%w: data block type %d", errNotRecompressible, typ)
		}
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	// Point every entry at its block in the new file.
	off := make([]byte, 1+a.h.offSize)
	for _, e := range entries {
		pos, ok := positions[e.dumpID]
		switch {
		case ok:
			off[0] = offsetSet
			v := pos
			for i := 1; i <= a.h.offSize; i++ {
				off[i] = byte(v)
				v >>= 8
			}
		case e.state == offsetSet:
			return fmt.Errorf("%w: entry %d has an offset but no data block", errNotRecompressible, e.dumpID)
		default:
			continue // no data (or none written): as it was
		}
		if _, err := dst.WriteAt(off, e.offsetAt); err != nil {
			return err
		}
	}
	known := map[int64]bool{}
	for _, e := range entries {
		known[e.dumpID] = true
	}
	for id := range positions {
		if !known[id] {
			return fmt.Errorf("%w: a data block for entry %d, which the table of contents does not list", errNotRecompressible, id)
		}
	}
	return nil
}

// headCopy passes reads through and keeps a copy of what it passed until
// done: the header and table of contents, written out after patching.
type headCopy struct {
	r    io.Reader
	buf  growBuf
	done bool
}

func (h *headCopy) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if !h.done {
		h.buf.b = append(h.buf.b, p[:n]...)
	}
	return n, err
}

type growBuf struct{ b []byte }

func (g *growBuf) Bytes() []byte { return g.b }
