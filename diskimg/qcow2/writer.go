package qcow2

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// DefaultClusterSize is the cluster size of images made by Create.
const DefaultClusterSize = 64 << 10

// refcount_order 4: 16-bit refcounts, as QEMU writes them.
const refcountBytes = 2

// reserveAhead is how much file space Writer allocates at a time.
const reserveAhead = 8 << 20

// l2WriteCache bounds the L2 tables a Writer keeps in memory (at least two
// are kept whatever the cluster size). Writes arrive roughly in guest
// order, so a few tables cover the ones being filled.
const l2WriteCache = 4 << 20

// ErrRewrite is returned by Writer.WriteAt for a cluster already written:
// the writer lays the image out in one pass and never rewrites data.
var ErrRewrite = errors.New("qcow2 cluster written twice")

// Option configures Create and NewWriter.
type Option func(*config) error

type config struct {
	clusterBits uint
	compress    bool
	prealloc    bool
	backing     string
	backingFmt  string
}

// WithBacking makes the image an overlay of the backing file name (an
// absolute path, or one relative to the image's folder) in format fmt
// ("raw", "qcow2"; "" leaves it to the reader to probe): clusters the
// image does not hold read from the backing file. Written without data
// it is an empty copy-on-write overlay, as qemu-img create -b makes.
func WithBacking(name, fmt string) Option {
	return func(c *config) error {
		if name == "" || len(name) > maxBackName {
			return errors.New("backing file name: want 1 to 1023 bytes")
		}
		c.backing, c.backingFmt = name, fmt
		return nil
	}
}

// WithClusterSize sets the cluster size: a power of two from 512 bytes to
// 2 MiB. The default is 64 KiB.
func WithClusterSize(n int) Option {
	return func(c *config) error {
		for b := uint(minClusterBits); b <= maxClusterBits; b++ {
			if n == 1<<b {
				c.clusterBits = b
				return nil
			}
		}
		return fmt.Errorf("cluster size %d is not a power of two between 512 and 2097152", n)
	}
}

// WithCompression stores each cluster zlib-compressed (as raw deflate,
// like QEMU) when that makes it smaller.
func WithCompression(on bool) Option {
	return func(c *config) error { c.compress = on; return nil }
}

// WithPreallocation allocates every L2 table up front (like QEMU's
// preallocation=metadata, without mapping data clusters) and reserves their
// space with fallocate.
func WithPreallocation(on bool) Option {
	return func(c *config) error { c.prealloc = on; return nil }
}

// File is what a Writer writes the image into: an *os.File, or a file
// somewhere else (a storage volume on a remote host) that reads and
// writes at offsets. When it also has an Fd method (as *os.File does),
// the Writer reserves file space ahead with fallocate.
type File interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Close() error
	Name() string
}

// fallocate reserves file space for f when f is an open local file.
func fallocate(f File, off, n int64) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return unix.EOPNOTSUPP
	}
	return unix.Fallocate(int(fd.Fd()), 0, off, n)
}

// Writer writes a qcow2 version 3 image in one pass. WriteAt may be called
// from several goroutines for distinct clusters; data clusters are
// allocated at the end of the file in the order they arrive, clusters that
// are entirely zero are not stored, and Close writes the L1 table, the
// refcounts and the header.
type Writer struct {
	f     File
	name  string
	size  int64 // virtual size, rounded up to whole sectors
	given int64 // the size asked for

	cbits      uint
	cs         int64
	l2Entries  int64
	backing    string
	backingFmt string
	compress   bool
	zero       []byte
	flatePool  sync.Pool

	mu      sync.Mutex
	next    int64 // next free byte of the file
	l1      []uint64
	l1Off   int64
	rcOff   int64
	rcTable []uint64
	blocks  map[int64]*rcBlock // refcount blocks not yet written
	pending []int64            // ranges whose block still needs a cluster
	closed  bool

	reserved int64 // file space allocated up to here
	noFalloc bool

	// L2 tables being filled are kept in memory and written out when
	// evicted (least recently used first) or at Close, so that writing
	// data clusters costs no metadata I/O under mu.
	l2Cache  map[int64]*l2Table // by L1 index
	l2Stored map[int64]bool     // tables written to the file at least once
	l2Tick   uint64
}

type l2Table struct {
	data []byte
	used uint64 // l2Tick when last used
}

type rcBlock struct {
	off  int64 // host offset, 0 until placed
	data []byte
}

// Create creates (or truncates) the file at path and returns a Writer for a
// qcow2 image of size virtual bytes.
func Create(path string, size int64, opts ...Option) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	w, err := NewWriter(f, size, opts...)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return w, nil
}

// NewWriter writes a qcow2 image of size virtual bytes into f, which must
// be empty (or hold nothing the Writer has to keep: the image is laid
// out from offset 0, and the file is cut at its end by Close) and opened
// for reading and writing. The Writer owns f from now on: Close and Abort
// close it.
func NewWriter(f File, size int64, opts ...Option) (*Writer, error) {
	cfg := config{clusterBits: 16}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if size < 0 || size > maxVirtual {
		return nil, fmt.Errorf("qcow2 virtual size %d out of range", size)
	}
	cs := int64(1) << cfg.clusterBits
	// QEMU counts qcow2 sizes in whole sectors (and rounds a raw file's
	// size up to one), so round the same way.
	w := &Writer{
		f: f, name: f.Name(), size: (size + 511) &^ 511, given: size,
		cbits: cfg.clusterBits, cs: cs, l2Entries: cs / 8,
		compress: cfg.compress,
		backing:  cfg.backing, backingFmt: cfg.backingFmt,
		zero:     make([]byte, cs),
		blocks:   make(map[int64]*rcBlock),
		l2Cache:  make(map[int64]*l2Table),
		l2Stored: make(map[int64]bool),
	}
	perL2 := cs * w.l2Entries
	l1Entries := (size + perL2 - 1) / perL2
	if l1Entries*8 > maxL1Bytes {
		return nil, fmt.Errorf("qcow2 virtual size %d needs an L1 table over %d bytes; use a larger cluster size", size, maxL1Bytes)
	}
	w.l1 = make([]uint64, l1Entries)
	l1Clusters := (l1Entries*8 + cs - 1) / cs

	// Size the refcount table for the largest file this image can become:
	// every cluster written once, compressed ones never larger than a
	// cluster, plus all metadata.
	perBlock := cs / refcountBytes
	dataClusters := (size + cs - 1) / cs
	base := 1 + l1Clusters + l1Entries + dataClusters + 8
	blocks, tableClusters := int64(1), int64(1)
	for range 16 {
		total := base + tableClusters + 2*blocks
		blocks = (total+perBlock-1)/perBlock + 1
		tableClusters = (blocks*8 + cs - 1) / cs
	}
	w.rcTable = make([]uint64, tableClusters*cs/8)

	// Cluster 0: header; then L1, then the refcount table, all contiguous.
	w.alloc(1)
	if l1Clusters > 0 {
		w.l1Off = w.alloc(l1Clusters)
	}
	w.rcOff = w.alloc(tableClusters)
	if cfg.prealloc && l1Entries > 0 {
		start := w.next
		for i := range w.l1 {
			w.l1[i] = uint64(w.alloc(1)) | oflagCopied
		}
		if err := fallocate(f, start, w.next-start); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("preallocating %s: %w", w.name, err)
		}
	}
	if err := w.placeBlocks(); err != nil {
		return nil, err
	}
	return w, nil
}

// Size is the virtual size: the size given to Create rounded up to a
// multiple of 512 bytes, as QEMU does.
func (w *Writer) Size() int64 { return w.size }

// ClusterSize is the cluster size; WriteAt offsets must be multiples of it.
func (w *Writer) ClusterSize() int64 { return w.cs }

// alloc reserves n contiguous clusters at the end of the file and counts a
// reference to each. Callers hold w.mu (or own w exclusively).
func (w *Writer) alloc(n int64) int64 {
	w.next = (w.next + w.cs - 1) &^ (w.cs - 1)
	start := w.next
	w.next += n * w.cs
	for c := start / w.cs; c < w.next/w.cs; c++ {
		w.ref(c)
	}
	w.reserve()
	return start
}

// reserve allocates file space ahead of the allocation pointer with
// fallocate, a few MiB at a time: writing into allocated blocks is much
// cheaper for the file system than allocating them page by page. Close
// cuts the file back to what is used.
func (w *Writer) reserve() {
	if w.noFalloc || w.next <= w.reserved {
		return
	}
	end := (w.next + reserveAhead) &^ (reserveAhead - 1)
	if err := fallocate(w.f, w.reserved, end-w.reserved); err != nil {
		w.noFalloc = true // unsupported or out of space: writes will tell
		return
	}
	w.reserved = end
}

// allocBytes reserves n bytes for a compressed cluster right after the
// previous allocation, sharing a partly used cluster.
func (w *Writer) allocBytes(n int64) int64 {
	start := w.next
	for c := start / w.cs; c <= (start+n-1)/w.cs; c++ {
		w.ref(c)
	}
	w.next += n
	w.reserve()
	return start
}

// ref counts one more reference to host cluster c.
func (w *Writer) ref(c int64) {
	perBlock := w.cs / refcountBytes
	k := c / perBlock
	b := w.blocks[k]
	if b == nil {
		b = &rcBlock{data: make([]byte, w.cs)}
		w.blocks[k] = b
		w.pending = append(w.pending, k)
	}
	i := (c % perBlock) * refcountBytes
	binary.BigEndian.PutUint16(b.data[i:], binary.BigEndian.Uint16(b.data[i:])+1)
}

// placeBlocks gives each new refcount block a cluster and writes the
// blocks of ranges no later allocation can reach.
func (w *Writer) placeBlocks() error {
	for len(w.pending) > 0 {
		k := w.pending[0]
		w.pending = w.pending[1:]
		if k >= int64(len(w.rcTable)) {
			return fmt.Errorf("writing %s: refcount table too small (internal error)", w.name)
		}
		off := w.alloc(1)
		w.blocks[k].off = off
		w.rcTable[k] = uint64(off)
	}
	perBlockBytes := w.cs / refcountBytes * w.cs
	for k, b := range w.blocks {
		if (k+1)*perBlockBytes <= w.next && b.off != 0 {
			if _, err := w.f.WriteAt(b.data, b.off); err != nil {
				return fmt.Errorf("writing %s: %w", w.name, err)
			}
			delete(w.blocks, k)
		}
	}
	return nil
}

// l2For returns the host offset of the L2 table for guest cluster c,
// allocating it if needed. Callers hold w.mu.
func (w *Writer) l2For(c int64) int64 {
	i := c / w.l2Entries
	if w.l1[i] == 0 {
		w.l1[i] = uint64(w.alloc(1)) | oflagCopied
	}
	return int64(w.l1[i] & l1OffsetMask)
}

// l2Slots returns the k entries of the L2 table for the guest clusters
// from c on (all in one table) in memory, after checking that none of them
// is mapped yet. It allocates the table, or reads it back if it was
// evicted, and evicts the least recently used table when the cache is
// full. Callers hold w.mu.
func (w *Writer) l2Slots(c, k int64) ([]byte, error) {
	ents, err := w.l2Entries8(c, k)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ents, w.zero[:k*8]) {
		return nil, fmt.Errorf("writing %s: guest offset %d: %w", w.name, c*w.cs, ErrRewrite)
	}
	return ents, nil
}

// l2Entries8 returns the k entries (8 bytes each) of the L2 table for the
// guest clusters from c on, in memory, as l2Slots does but whatever they
// hold. Callers hold w.mu.
func (w *Writer) l2Entries8(c, k int64) ([]byte, error) {
	i := c / w.l2Entries
	w.l2Tick++
	t := w.l2Cache[i]
	if t == nil {
		var buf []byte
		if int64(len(w.l2Cache)+1)*w.cs > l2WriteCache && len(w.l2Cache) >= 2 {
			var err error
			if buf, err = w.evictL2(); err != nil {
				return nil, err
			}
			clear(buf)
		} else {
			buf = make([]byte, w.cs)
		}
		off := w.l2For(c)
		if w.l2Stored[i] {
			if _, err := w.f.ReadAt(buf, off); err != nil {
				return nil, fmt.Errorf("writing %s: reading back L2 table: %w", w.name, err)
			}
		}
		t = &l2Table{data: buf}
		w.l2Cache[i] = t
	}
	t.used = w.l2Tick
	j := (c % w.l2Entries) * 8
	return t.data[j : j+k*8], nil
}

// Rewrite stores p at the guest offset off as WriteAt does, but a
// cluster may have been written before: its data is overwritten in place
// (zeros too, so it reads as zeros), and a cluster never written is
// allocated unless p is all zeros there. It serves an image that is
// written first and patched later while it is still open (a warm
// migration's output, written in pass 1 and patched with the blocks that
// changed). Compressed images cannot be rewritten.
func (w *Writer) Rewrite(p []byte, off int64) (int, error) {
	if w.compress {
		return 0, fmt.Errorf("rewriting %s: a compressed image cannot be rewritten", w.name)
	}
	if off%w.cs != 0 || off < 0 {
		return 0, fmt.Errorf("rewriting %s: offset %d is not a multiple of the cluster size %d", w.name, off, w.cs)
	}
	end := off + int64(len(p))
	if end > w.size || (int64(len(p))%w.cs != 0 && end != w.size && end != w.given) {
		return 0, fmt.Errorf("rewriting %s: %d bytes at %d: not whole clusters inside the %d byte disk", w.name, len(p), off, w.size)
	}
	for done := int64(0); done < int64(len(p)); {
		c := (off + done) / w.cs
		n := min(w.cs, int64(len(p))-done)
		data := p[done : done+n]
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return int(done), fmt.Errorf("rewriting %s: %w", w.name, os.ErrClosed)
		}
		ent, err := w.l2Entries8(c, 1)
		var e uint64
		if err == nil {
			e = binary.BigEndian.Uint64(ent)
		}
		w.mu.Unlock()
		switch {
		case err != nil:
			return int(done), err
		case e != 0:
			if _, err := w.f.WriteAt(data, int64(e&l2OffsetMask)); err != nil {
				return int(done), fmt.Errorf("rewriting %s: %w", w.name, err)
			}
		case !bytes.Equal(data, w.zero[:n]):
			if err := w.writeRun(data, c); err != nil {
				return int(done), err
			}
		}
		done += n
	}
	return len(p), nil
}

// RewriteExtents rewrites the ranges exts of src, the disk's content
// (size bytes), into the image with Rewrite, each range widened to whole
// clusters, and returns how many bytes it rewrote.
func (w *Writer) RewriteExtents(ctx context.Context, src io.ReaderAt, size int64, exts []blk.Extent) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for _, e := range exts {
		start := e.Offset / w.cs * w.cs
		end := min((e.End()+w.cs-1)/w.cs*w.cs, size)
		for off := start; off < end; {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			p := buf[:min(int64(len(buf)), end-off)]
			if _, err := src.ReadAt(p, off); err != nil && !errors.Is(err, io.EOF) {
				return n, err
			}
			if _, err := w.Rewrite(p, off); err != nil {
				return n, err
			}
			off += int64(len(p))
			n += int64(len(p))
		}
	}
	return n, nil
}

// Sync flushes the data written so far to disk (the image stays open and
// incomplete until Close), so that Close has little left to write back.
func (w *Writer) Sync() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", w.name, err)
	}
	return nil
}

// StartWriteback has the kernel start writing the data written so far
// back to disk, without waiting for it (sync_file_range), where the image
// is a local file: the fsync of Sync or Close then has little left. It
// can block on a busy disk: call it off a hot path.
func (w *Writer) StartWriteback() {
	if f, ok := w.f.(interface{ Fd() uintptr }); ok {
		unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// evictL2 writes the least recently used cached L2 table to the file,
// drops it from the cache and returns its buffer for reuse.
func (w *Writer) evictL2() ([]byte, error) {
	var (
		victim int64 = -1
		oldest uint64
	)
	for i, t := range w.l2Cache {
		if victim < 0 || t.used < oldest {
			victim, oldest = i, t.used
		}
	}
	t := w.l2Cache[victim]
	if err := w.storeL2(victim, t.data); err != nil {
		return nil, err
	}
	delete(w.l2Cache, victim)
	return t.data, nil
}

// storeL2 writes L2 table i to its place in the file.
func (w *Writer) storeL2(i int64, data []byte) error {
	if _, err := w.f.WriteAt(data, int64(w.l1[i]&l1OffsetMask)); err != nil {
		return fmt.Errorf("writing %s: %w", w.name, err)
	}
	w.l2Stored[i] = true
	return nil
}

// WriteAt stores p at the guest offset off, which must be cluster aligned;
// len(p) must be a multiple of the cluster size unless the write ends at
// the virtual size. Clusters that are all zero are skipped. Each cluster
// can be written once; writing it again returns ErrRewrite.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	if off%w.cs != 0 || off < 0 {
		return 0, fmt.Errorf("writing %s: offset %d is not a multiple of the cluster size %d", w.name, off, w.cs)
	}
	end := off + int64(len(p))
	if end > w.size || (int64(len(p))%w.cs != 0 && end != w.size && end != w.given) {
		return 0, fmt.Errorf("writing %s: %d bytes at %d: not whole clusters inside the %d byte disk", w.name, len(p), off, w.size)
	}
	for done := int64(0); done < int64(len(p)); {
		// Skip zero clusters, then gather a run of non-zero ones inside one
		// L2 table.
		c := (off + done) / w.cs
		n := min(w.cs, int64(len(p))-done)
		if bytes.Equal(p[done:done+n], w.zero[:n]) {
			done += n
			continue
		}
		if w.compress {
			if err := w.writeCompressed(p[done:done+n], c); err != nil {
				return int(done), err
			}
			done += n
			continue
		}
		run := n
		for done+run < int64(len(p)) && (c+run/w.cs)%w.l2Entries != 0 {
			m := min(w.cs, int64(len(p))-done-run)
			if bytes.Equal(p[done+run:done+run+m], w.zero[:m]) {
				break
			}
			run += m
		}
		if err := w.writeRun(p[done:done+run], c); err != nil {
			return int(done), err
		}
		done += run
	}
	return len(p), nil
}

// writeRun stores data (whole clusters but maybe the last) for the guest
// clusters starting at c, all in one L2 table.
func (w *Writer) writeRun(data []byte, c int64) error {
	k := (int64(len(data)) + w.cs - 1) / w.cs
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return fmt.Errorf("writing %s: %w", w.name, os.ErrClosed)
	}
	ents, err := w.l2Slots(c, k)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	host := w.alloc(k)
	for i := range k {
		binary.BigEndian.PutUint64(ents[i*8:], uint64(host+i*w.cs)|oflagCopied)
	}
	err = w.placeBlocks()
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.name, err)
	}
	if _, err := w.f.WriteAt(data, host); err != nil {
		return fmt.Errorf("writing %s: %w", w.name, err)
	}
	return nil
}

func (w *Writer) writeCompressed(data []byte, c int64) error {
	buf := &bytes.Buffer{}
	buf.Grow(int(w.cs))
	zw, _ := w.flatePool.Get().(*flate.Writer)
	if zw == nil {
		zw, _ = flate.NewWriter(buf, flate.DefaultCompression)
	} else {
		zw.Reset(buf)
	}
	full := data
	if int64(len(full)) < w.cs { // last, partial cluster: compress a whole one
		full = make([]byte, w.cs)
		copy(full, data)
	}
	_, err := zw.Write(full)
	if err == nil {
		err = zw.Close()
	}
	w.flatePool.Put(zw)
	if err != nil {
		return fmt.Errorf("compressing for %s: %w", w.name, err)
	}
	// Keep it only if it is smaller, as QEMU does.
	if int64(buf.Len()) >= w.cs {
		return w.writeRun(data, c)
	}
	x := 62 - (w.cbits - 8)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return fmt.Errorf("writing %s: %w", w.name, os.ErrClosed)
	}
	ent, err := w.l2Slots(c, 1)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	n := int64(buf.Len())
	host := w.allocBytes(n)
	sectors := (host+n-1)/512 - host/512
	binary.BigEndian.PutUint64(ent, oflagCompr|uint64(sectors)<<x|uint64(host))
	err = w.placeBlocks()
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.name, err)
	}
	if _, err := w.f.WriteAt(buf.Bytes(), host); err != nil {
		return fmt.Errorf("writing %s: %w", w.name, err)
	}
	return nil
}

// Close writes the remaining refcount blocks, the refcount table, the L1
// table and the header, syncs the file to disk and closes it.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("closing %s: %w", w.name, os.ErrClosed)
	}
	w.closed = true
	err := w.finish()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing %s: %w", w.name, cerr)
	}
	return err
}

// Abort closes the file without completing the image; the caller removes it.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.f.Close()
}

func (w *Writer) finish() error {
	// The file ends at a cluster boundary past everything allocated.
	w.next = (w.next + w.cs - 1) &^ (w.cs - 1)
	if err := w.placeBlocks(); err != nil {
		return err
	}
	for k, b := range w.blocks {
		if _, err := w.f.WriteAt(b.data, b.off); err != nil {
			return fmt.Errorf("writing %s: %w", w.name, err)
		}
		delete(w.blocks, k)
	}
	for i, t := range w.l2Cache {
		if err := w.storeL2(i, t.data); err != nil {
			return err
		}
		delete(w.l2Cache, i)
	}
	be := binary.BigEndian
	tbl := make([]byte, len(w.rcTable)*8)
	for i, v := range w.rcTable {
		be.PutUint64(tbl[i*8:], v)
	}
	l1 := make([]byte, len(w.l1)*8)
	for i, v := range w.l1 {
		be.PutUint64(l1[i*8:], v)
	}
	hdr := w.headerExtensions()
	be.PutUint32(hdr[0:], magic)
	be.PutUint32(hdr[4:], 3)
	be.PutUint32(hdr[20:], uint32(w.cbits))
	be.PutUint64(hdr[24:], uint64(w.size))
	be.PutUint32(hdr[36:], uint32(len(w.l1)))
	be.PutUint64(hdr[40:], uint64(w.l1Off))
	be.PutUint64(hdr[48:], uint64(w.rcOff))
	be.PutUint32(hdr[56:], uint32(int64(len(tbl))/w.cs))
	be.PutUint32(hdr[96:], 4) // refcount_order: 16-bit
	be.PutUint32(hdr[100:], v3HeaderLen)
	if w.backing != "" {
		be.PutUint64(hdr[8:], uint64(len(hdr)-len(w.backing)))
		be.PutUint32(hdr[16:], uint32(len(w.backing)))
	}
	if int64(len(hdr)) > w.cs {
		return fmt.Errorf("writing %s: the header and backing file name do not fit in a %d-byte cluster", w.name, w.cs)
	}
	for _, wr := range []struct {
		b   []byte
		off int64
	}{{tbl, w.rcOff}, {l1, w.l1Off}, {hdr, 0}} {
		if _, err := w.f.WriteAt(wr.b, wr.off); err != nil {
			return fmt.Errorf("writing %s: %w", w.name, err)
		}
	}
	if err := w.f.Truncate(w.next); err != nil {
		return fmt.Errorf("writing %s: %w", w.name, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", w.name, err)
	}
	return nil
}

// headerExtensions returns the header cluster's bytes up to the end of
// the extensions (a backing format extension when the format is known,
// then the end marker) followed by the backing file name, if any. The
// header fields themselves are left zero.
func (w *Writer) headerExtensions() []byte {
	hdr := make([]byte, v3HeaderLen, v3HeaderLen+32+len(w.backing))
	if w.backing != "" && w.backingFmt != "" {
		ext := make([]byte, 8+(len(w.backingFmt)+7)&^7)
		binary.BigEndian.PutUint32(ext[0:], extBackingFormat)
		binary.BigEndian.PutUint32(ext[4:], uint32(len(w.backingFmt)))
		copy(ext[8:], w.backingFmt)
		hdr = append(hdr, ext...)
	}
	hdr = append(hdr, make([]byte, 8)...) // end of extensions
	return append(hdr, w.backing...)
}
