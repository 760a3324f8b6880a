// Package blk holds what diskimg and its format packages share: the
// byte-range type, the list operations on it, the sentinel errors and the
// bounds-checked reads every table parser uses.
//
//	var l blk.List
//	l.Add(0, 4096)
//	l.Add(4096, 512) // merged into {0, 4608}
package blk

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Sentinel errors shared by all formats (diskimg re-exports them).
var (
	// ErrCorrupt reports an image whose metadata is inconsistent or truncated.
	ErrCorrupt = errors.New("corrupt image")
	// ErrEncrypted reports an encrypted image, which xen2kvm cannot read.
	ErrEncrypted = errors.New("encrypted image")
	// ErrUnsupported reports a valid image using a feature xen2kvm lacks.
	ErrUnsupported = errors.New("unsupported image")
)

// Corruptf returns an ErrCorrupt error naming the file and the format.
func Corruptf(file, format, msg string, args ...any) error {
	return fmt.Errorf("%s: %w (%s): %s", file, ErrCorrupt, format, fmt.Sprintf(msg, args...))
}

// ReadFull reads exactly len(p) bytes at off from r, whose size is size.
// A range past the end is reported as a truncated file, naming what.
func ReadFull(r io.ReaderAt, size int64, p []byte, off int64, file, format, what string) error {
	if off < 0 || off > size || int64(len(p)) > size-off {
		return Corruptf(file, format, "%s at offset %d (+%d bytes) is past the end of the file (%d bytes); truncated?", what, off, len(p), size)
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: reading %s at offset %d: %w", file, what, off, err)
}

// Extent is a byte range of a device.
type Extent struct {
	Offset int64
	Length int64
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// List is a sorted list of non-overlapping extents built by appending in
// increasing offset order; adjacent ranges are merged.
type List []Extent

// Add appends [off, off+n), merging it with the last extent when they touch
// or overlap. Ranges must be added in increasing order of offset.
func (l *List) Add(off, n int64) {
	if n <= 0 {
		return
	}
	if k := len(*l); k > 0 {
		last := &(*l)[k-1]
		if off <= last.End() {
			if end := off + n; end > last.End() {
				last.Length = end - last.Offset
			}
			return
		}
	}
	*l = append(*l, Extent{off, n})
}

// Clip appends to dst the parts of the sorted extents src that fall inside
// [off, off+n), shifted by delta.
func Clip(dst *List, src []Extent, off, n, delta int64) {
	end := off + n
	// Binary search for the first extent ending after off.
	lo, hi := 0, len(src)
	for lo < hi {
		m := (lo + hi) / 2
		if src[m].End() <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for _, e := range src[lo:] {
		if e.Offset >= end {
			break
		}
		s, t := max(e.Offset, off), min(e.End(), end)
		dst.Add(s+delta, t-s)
	}
}

// Total is the sum of the lengths.
func Total(l []Extent) int64 {
	var t int64
	for _, e := range l {
		t += e.Length
	}
	return t
}

// TableCache keeps recently used metadata tables (L2 tables, decompressed
// clusters) keyed by their file offset, up to a fixed number of entries.
// It is safe for concurrent use.
type TableCache[T any] struct {
	mu    sync.Mutex
	max   int
	tick  uint64
	items map[int64]*cacheItem[T]
}

type cacheItem[T any] struct {
	v    T
	used uint64
}

// NewTableCache returns a cache holding at most max entries (at least 1).
func NewTableCache[T any](n int) *TableCache[T] {
	return &TableCache[T]{max: max(1, n), items: make(map[int64]*cacheItem[T])}
}

// Get returns the entry at key, loading and storing it with load on a miss.
// Loads run outside the lock, so two callers may load the same table once
// each; the result is the same.
func (c *TableCache[T]) Get(key int64, load func() (T, error)) (T, error) {
	c.mu.Lock()
	if it, ok := c.items[key]; ok {
		c.tick++
		it.used = c.tick
		v := it.v
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	v, err := load()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.items) >= c.max {
		var oldKey int64
		oldest := ^uint64(0)
		for k, it := range c.items {
			if it.used < oldest {
				oldest, oldKey = it.used, k
			}
		}
		delete(c.items, oldKey)
	}
	c.tick++
	c.items[key] = &cacheItem[T]{v: v, used: c.tick}
	return v, nil
}
