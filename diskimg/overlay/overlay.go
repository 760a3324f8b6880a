// Package overlay puts a copy-on-write layer over a read-only block device,
// so that a guest's files can be edited without ever writing the source.
//
// Written blocks live in memory up to a bound and then in an unlinked
// temporary file; everything else is read from the base device, which is
// never written.
//
//	ov := overlay.New(src, overlay.WithMemoryLimit(32<<20)) // src: any diskimg.Device
//	defer ov.Close()
//	ov.WriteAt(newFstab, off) // lands in the overlay, src is untouched
//	dirty := ov.Dirty()       // the byte ranges that now differ from src
//
// An Overlay is safe for concurrent use: reads run in parallel, writes are
// serialised.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// Default settings.
const (
	DefaultBlockSize   = 4096
	DefaultMemoryLimit = 64 << 20
)

// Sentinel errors.
var (
	// ErrClosed is returned by every method of a closed Overlay.
	ErrClosed = errors.New("overlay is closed")
	// ErrOutOfRange is returned by WriteAt for a write past the device's end.
	ErrOutOfRange = errors.New("write past end of device")
)

// Option configures an Overlay.
type Option func(*config)

type config struct {
	blockSize int
	memLimit  int64
	tempDir   string
}

// WithMemoryLimit bounds the memory that written blocks occupy; blocks
// written beyond it go to a temporary file. Zero sends every block to the
// file.
func WithMemoryLimit(bytes int64) Option {
	return func(c *config) {
		if bytes >= 0 {
			c.memLimit = bytes
		}
	}
}

// WithBlockSize sets the copy-on-write granularity (a power of two from 512
// bytes to 1 MiB; other values are ignored). Writes smaller than a block
// read the rest of the block from the base.
func WithBlockSize(n int) Option {
	return func(c *config) {
		if n >= 512 && n <= 1<<20 && n&(n-1) == 0 {
			c.blockSize = n
		}
	}
}

// WithTempDir sets the folder of the spill file (default os.TempDir()).
func WithTempDir(dir string) Option {
	return func(c *config) { c.tempDir = dir }
}

// Overlay is a copy-on-write view of a base device. It implements
// diskimg.Device and diskimg.ExtentLister.
type Overlay struct {
	base diskimg.Device
	size int64
	bs   int64
	cfg  config

	mu       sync.RWMutex
	closed   bool
	mem      map[int64][]byte // block index → content (length bs, or less for a short last block)
	memBytes int64
	spill    map[int64]int64 // block index → offset in file
	file     *os.File
	fileEnd  int64
}

var (
	_ diskimg.Device       = (*Overlay)(nil)
	_ diskimg.ExtentLister = (*Overlay)(nil)
)

// New returns an overlay over base. base is only ever read.
func New(base diskimg.Device, opts ...Option) *Overlay {
	cfg := config{blockSize: DefaultBlockSize, memLimit: DefaultMemoryLimit}
	for _, o := range opts {
		o(&cfg)
	}
	return &Overlay{
		base:  base,
		size:  base.Size(),
		bs:    int64(cfg.blockSize),
		cfg:   cfg,
		mem:   make(map[int64][]byte),
		spill: make(map[int64]int64),
	}
}

// Size returns the base device's size.
func (o *Overlay) Size() int64 { return o.size }

// Base returns the device under the overlay.
func (o *Overlay) Base() diskimg.Device { return o.base }

// blockLen is the length of block i (the last block may be short).
func (o *Overlay) blockLen(i int64) int64 {
	return min(o.bs, o.size-i*o.bs)
}

// ReadAt reads from the written blocks where there are some and from the
// base elsewhere. It follows io.ReaderAt: a read past the end returns the
// bytes up to the end and io.EOF.
func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading overlay at %d: negative offset", off)
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return 0, ErrClosed
	}
	if off >= o.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > o.size-off {
		p = p[:o.size-off]
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		block := pos / o.bs
		inBlk := pos - block*o.bs
		if o.isDirty(block) {
			chunk := min(int64(len(p)-n), o.blockLen(block)-inBlk)
			if err := o.readDirty(block, p[n:n+int(chunk)], inBlk); err != nil {
				return n, err
			}
			n += int(chunk)
			continue
		}
		// A run of clean blocks becomes one read of the base.
		end := (block + 1) * o.bs
		for end < off+int64(len(p)) && !o.isDirty(end/o.bs) {
			end += o.bs
		}
		end = min(end, off+int64(len(p)))
		m, err := blk.ReadAtFull(o.base, p[n:n+int(end-pos)], pos)
		n += m
		if err != nil {
			return n, fmt.Errorf("reading base at %d: %w", pos, err)
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

func (o *Overlay) isDirty(block int64) bool {
	if _, ok := o.mem[block]; ok {
		return true
	}
	_, ok := o.spill[block]
	return ok
}

// readDirty copies a written block's bytes from inBlk into p.
func (o *Overlay) readDirty(block int64, p []byte, inBlk int64) error {
	if b, ok := o.mem[block]; ok {
		copy(p, b[inBlk:])
		return nil
	}
	foff := o.spill[block]
	if _, err := blk.ReadAtFull(o.file, p, foff+inBlk); err != nil {
		return fmt.Errorf("reading overlay spill file: %w", err)
	}
	return nil
}

// WriteAt writes p into the overlay. A block written for the first time is
// filled from the base first when p covers only part of it. Writes that
// extend past the device's end fail with ErrOutOfRange and write nothing.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > o.size || off+int64(len(p)) < off {
		return 0, fmt.Errorf("writing %d bytes at %d of a %d-byte device: %w", len(p), off, o.size, ErrOutOfRange)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrClosed
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		block := pos / o.bs
		inBlk := pos - block*o.bs
		chunk := min(int64(len(p)-n), o.blockLen(block)-inBlk)
		if err := o.writeBlock(block, p[n:n+int(chunk)], inBlk); err != nil {
			return n, err
		}
		n += int(chunk)
	}
	return n, nil
}

// writeBlock writes data at inBlk of the given block.
func (o *Overlay) writeBlock(block int64, data []byte, inBlk int64) error {
	if b, ok := o.mem[block]; ok {
		copy(b[inBlk:], data)
		return nil
	}
	if foff, ok := o.spill[block]; ok {
		if _, err := o.file.WriteAt(data, foff+inBlk); err != nil {
			return fmt.Errorf("writing overlay spill file: %w", err)
		}
		return nil
	}
	blen := o.blockLen(block)
	b := make([]byte, blen)
	if int64(len(data)) < blen {
		if _, err := blk.ReadAtFull(o.base, b, block*o.bs); err != nil {
			return fmt.Errorf("reading base at %d: %w", block*o.bs, err)
		}
	}
	copy(b[inBlk:], data)
	if o.memBytes+blen <= o.cfg.memLimit {
		o.mem[block] = b
		o.memBytes += blen
		return nil
	}
	if o.file == nil {
		f, err := os.CreateTemp(o.cfg.tempDir, "xen2kvm-overlay-*")
		if err != nil {
			return fmt.Errorf("creating overlay spill file: %w", err)
		}
		// Unlinked at once: the space is freed on Close or on any exit.
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return fmt.Errorf("unlinking overlay spill file: %w", err)
		}
		o.file = f
	}
	if _, err := o.file.WriteAt(b, o.fileEnd); err != nil {
		return fmt.Errorf("writing overlay spill file: %w", err)
	}
	o.spill[block] = o.fileEnd
	o.fileEnd += o.bs
	return nil
}

// Dirty returns the byte ranges written through the overlay, sorted and
// merged, at block granularity.
func (o *Overlay) Dirty() []diskimg.Extent {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.dirtyLocked()
}

func (o *Overlay) dirtyLocked() []diskimg.Extent {
	blks := make([]int64, 0, len(o.mem)+len(o.spill))
	for b := range o.mem {
		blks = append(blks, b)
	}
	for b := range o.spill {
		blks = append(blks, b)
	}
	slices.Sort(blks)
	var out []diskimg.Extent
	for _, b := range blks {
		e := diskimg.Extent{Offset: b * o.bs, Length: o.blockLen(b)}
		if k := len(out) - 1; k >= 0 && out[k].Offset+out[k].Length == e.Offset {
			out[k].Length += e.Length
			continue
		}
		out = append(out, e)
	}
	return out
}

// Extents returns the union of the base's extents (the whole device when
// the base cannot list them) and the written blocks.
func (o *Overlay) Extents(ctx context.Context) ([]diskimg.Extent, error) {
	var base []diskimg.Extent
	if l, ok := o.base.(diskimg.ExtentLister); ok {
		var err error
		base, err = l.Extents(ctx)
		if errors.Is(err, diskimg.ErrNotSupported) {
			base = []diskimg.Extent{{Offset: 0, Length: o.size}}
		} else if err != nil {
			return nil, fmt.Errorf("listing base extents: %w", err)
		}
	} else if o.size > 0 {
		base = []diskimg.Extent{{Offset: 0, Length: o.size}}
	}
	o.mu.RLock()
	if o.closed {
		o.mu.RUnlock()
		return nil, ErrClosed
	}
	dirty := o.dirtyLocked()
	o.mu.RUnlock()
	return union(base, dirty), nil
}

// union merges two extent lists into one sorted, non-overlapping list.
func union(a, b []diskimg.Extent) []diskimg.Extent {
	all := make([]diskimg.Extent, 0, len(a)+len(b))
	all = append(all, a...)
	all = append(all, b...)
	slices.SortFunc(all, func(x, y diskimg.Extent) int {
		switch {
		case x.Offset < y.Offset:
			return -1
		case x.Offset > y.Offset:
			return 1
		}
		return 0
	})
	var out []diskimg.Extent
	for _, e := range all {
		if e.Length <= 0 {
			continue
		}
		if k := len(out) - 1; k >= 0 && e.Offset <= out[k].Offset+out[k].Length {
			out[k].Length = max(out[k].Offset+out[k].Length, e.Offset+e.Length) - out[k].Offset
			continue
		}
		out = append(out, e)
	}
	return out
}

// Close drops the written blocks and removes the spill file. It does not
// close the base device.
func (o *Overlay) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	o.mem, o.spill = nil, nil
	if o.file != nil {
		if err := o.file.Close(); err != nil {
			return fmt.Errorf("closing overlay spill file: %w", err)
		}
	}
	return nil
}
