package blk

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// ReadUnits is the ReadAt of a disk of size bytes stored in units
// (clusters, blocks) of unit bytes. It refuses a negative off, returns
// io.EOF at or past the end (nothing for an empty p), cuts p at the end of
// the disk and calls read for each piece of p that lies in one unit, with
// the piece's disk offset pos. It returns the bytes read before the first
// error, and io.EOF when p reached past the end; file names the image in
// errors.
func ReadUnits(file string, p []byte, off, size, unit int64, read func(dst []byte, pos int64) error) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", file, off)
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		n := int(min(int64(len(p)-done), unit-pos%unit))
		if err := read(p[done:done+n], pos); err != nil {
			return done, err
		}
		done += n
	}
	if done < want {
		return done, io.EOF
	}
	return done, nil
}

// Disk is what a backing image offers a reader.
type Disk interface {
	io.ReaderAt
	Size() int64
}

// ReadBacking fills dst with the backing disk's bytes at pos; what lies
// past its end, or everything when there is no backing disk (b == nil),
// reads as zeros. file names the image in errors.
func ReadBacking(file string, b Disk, dst []byte, pos int64) error {
	if b == nil || pos >= b.Size() {
		clear(dst)
		return nil
	}
	n := int(min(int64(len(dst)), b.Size()-pos))
	m, err := b.ReadAt(dst[:n], pos)
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s: reading backing file: %w", file, err)
	}
	clear(dst[n:])
	return nil
}

// ReadUint64s reads a table of n 64-bit entries in the byte order order
// at off from r, whose size is size, as ReadFull does.
func ReadUint64s(r io.ReaderAt, size int64, order binary.ByteOrder, off, n int64, file, format, what string) ([]uint64, error) {
	buf := make([]byte, n*8)
	if err := ReadFull(r, size, buf, off, file, format, what); err != nil {
		return nil, err
	}
	t := make([]uint64, n)
	for i := range t {
		t[i] = order.Uint64(buf[i*8:])
	}
	return t, nil
}

// Inflate decompresses the raw deflate stream in into a cluster of size
// bytes; a stream shorter than that is an error.
func Inflate(in []byte, size int64) ([]byte, error) {
	out := make([]byte, size)
	zr := flate.NewReader(bytes.NewReader(in))
	defer zr.Close()
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, fmt.Errorf("inflating: %w", err)
	}
	return out, nil
}

// ReadAtFull reads len(p) bytes at off from r. A short read is an error:
// io.ErrUnexpectedEOF when r gave none.
func ReadAtFull(r io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Backing is a backing disk as the qcow and qcow2 readers see it.
type Backing interface {
	Disk
	Extents(ctx context.Context) ([]Extent, error)
}

// Layers builds the extent list of an image over a backing disk: ranges
// the image holds are added to List with Add, ranges it does not hold
// with Unallocated, which adds the backing disk's extents there.
type Layers struct {
	List
	back     []Extent
	backSize int64
}

// NewLayers lists the extents of b, which may be nil (no backing disk).
func NewLayers(ctx context.Context, b Backing) (*Layers, error) {
	l := &Layers{}
	if b != nil {
		var err error
		if l.back, err = b.Extents(ctx); err != nil {
			return nil, err
		}
		l.backSize = b.Size()
	}
	return l, nil
}

// Unallocated adds the backing disk's extents inside [off, off+n).
func (l *Layers) Unallocated(off, n int64) {
	if n = min(n, l.backSize-off); n > 0 {
		Clip(&l.List, l.back, off, n, 0)
	}
}

// Cluster is what an entry of a qcow or qcow2 L2 table says of its
// guest cluster, as TableExtents sorts them.
type Cluster int

const (
	// Unallocated: the image does not hold the cluster; the backing disk
	// shows through.
	Unallocated Cluster = iota
	// Zero: the cluster reads as zeros and holds no data.
	Zero
	// Allocated: the image holds the cluster's data.
	Allocated
)

// TableExtents lists the extents of an image mapped as qcow and qcow2 map
// one: an L1 table of l1Len entries, each pointing to an L2 table whose
// l2Entries entries each map one cluster of clusterSize bytes of a guest of
// size bytes. l2 returns the L2 table of L1 entry i, nil where the whole
// L2 range is unallocated; kind sorts L2 entry e of guest cluster c.
// Where the image holds nothing, the extents of backing (which may be nil)
// show through.
func TableExtents(ctx context.Context, backing Backing, size, clusterSize, l2Entries, l1Len int64,
	l2 func(i int64) ([]uint64, error), kind func(e uint64, c int64) (Cluster, error)) ([]Extent, error) {
	out, err := NewLayers(ctx, backing)
	if err != nil {
		return nil, err
	}
	perL2 := l2Entries * clusterSize
	for i := range l1Len {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		base := i * perL2
		span := min(perL2, size-base)
		t, err := l2(i)
		if err != nil {
			return nil, err
		}
		if t == nil {
			out.Unallocated(base, span)
			continue
		}
		for j := int64(0); j*clusterSize < span; j++ {
			c := i*l2Entries + j
			k, err := kind(t[j], c)
			if err != nil {
				return nil, err
			}
			off := c * clusterSize
			n := min(clusterSize, size-off)
			switch k {
			case Allocated:
				out.Add(off, n)
			case Unallocated:
				out.Unallocated(off, n)
			}
		}
	}
	return out.List, nil
}
