package xenhost

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/pkg/sftp"
)

// ErrReadOnly is returned by Disk.WriteAt: disks on the host are never
// written.
var ErrReadOnly = errors.New("disk on the Xen host is read-only")

// Disk is a disk image file or block device on the host, read over SFTP.
// It is a read-only block device (ReadAt, Size) that survives dropped
// connections: a read that fails because the connection went away is
// retried on a new connection. It is safe for concurrent use.
type Disk struct {
	h    *Host
	ctx  context.Context
	path string
	size int64
	dev  bool // a block device (phy:)

	mu    sync.Mutex
	gen   int
	file  *sftp.File
	cache *blockCache

	zeroMap *ZeroMap

	read atomic.Int64
}

// OpenDisk opens the file or block device at path on the host read-only.
// ctx bounds the reconnection attempts of every later read.
func (h *Host) OpenDisk(ctx context.Context, path string) (*Disk, error) {
	d := &Disk{h: h, ctx: ctx, path: path, gen: -1, cache: newBlockCache(cacheBlocks)}
	var fi os.FileInfo
	err := h.retry(ctx, func(c *conn) error {
		var err error
		fi, err = c.sftp.Stat(path)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", path, h.URL.Addr(), err)
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		d.size = fi.Size()
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		d.dev = true
	default:
		return nil, fmt.Errorf("%s on %s: not a regular file or block device", path, h.URL.Addr())
	}
	if _, err := d.handle(); err != nil {
		return nil, err
	}
	if d.dev {
		// SFTP stat gives a block device no size: find its end by
		// reading single bytes (a few dozen round trips).
		if d.size, err = d.probeSize(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// handle returns the file handle on the current connection, opening it
// again after a reconnect.
func (d *Disk) handle() (*sftp.File, error) {
	var f *sftp.File
	err := d.h.retry(d.ctx, func(c *conn) error {
		var err error
		f, err = d.handleOn(c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening %s on %s: %w", d.path, d.h.URL.Addr(), err)
	}
	return f, nil
}

func (d *Disk) handleOn(c *conn) (*sftp.File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file != nil && d.gen == c.gen {
		return d.file, nil
	}
	f, err := c.sftp.OpenFile(d.path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	d.file, d.gen = f, c.gen
	return f, nil
}

// readRemote reads p at off from the host, reconnecting as needed. It
// reads fully unless the file ends first.
func (d *Disk) readRemote(p []byte, off int64) (int, error) {
	var n int
	err := d.h.retry(d.ctx, func(c *conn) error {
		f, err := d.handleOn(c)
		if err != nil {
			return err
		}
		n, err = f.ReadAt(p, off)
		// pkg/sftp takes a short answer to one request for the end of
		// the file; a server that answers reads of less than the
		// request size (an older sftp-server) gives those before the
		// disk's end: read on from there.
		for err == io.EOF && n > 0 && n < len(p) && off+int64(n) < d.size {
			var m int
			m, err = f.ReadAt(p[n:], off+int64(n))
			n += m
			if m == 0 {
				break
			}
		}
		if err == io.EOF && n > 0 {
			err = nil
		}
		return err
	})
	if n > 0 {
		d.read.Add(int64(n))
		d.h.bytesRead.Add(int64(n))
	}
	return n, err
}

func (d *Disk) probeSize() (int64, error) {
	b := make([]byte, 1)
	has := func(sector int64) (bool, error) {
		n, err := d.readRemote(b, sector*512)
		// Past the end of a block device, pread gives 0 bytes or
		// EINVAL (which sftp-server reports as a bad message).
		var se *sftp.StatusError
		if err == io.EOF || (err == nil && n == 0) || (sector > 0 && errors.As(err, &se)) {
			return false, nil
		}
		return err == nil, err
	}
	if ok, err := has(0); err != nil || !ok {
		if err == nil {
			err = errors.New("the device is empty")
		}
		return 0, fmt.Errorf("sizing %s on %s: %w", d.path, d.h.URL.Addr(), err)
	}
	lo, hi := int64(0), int64(1)
	for {
		ok, err := has(hi)
		if err != nil {
			return 0, fmt.Errorf("sizing %s on %s: %w", d.path, d.h.URL.Addr(), err)
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
		if hi > 1<<44 {
			return 0, fmt.Errorf("sizing %s on %s: larger than 8 PiB", d.path, d.h.URL.Addr())
		}
	}
	for hi-lo > 1 { // lo has data, hi has none
		mid := lo + (hi-lo)/2
		ok, err := has(mid)
		if err != nil {
			return 0, fmt.Errorf("sizing %s on %s: %w", d.path, d.h.URL.Addr(), err)
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi * 512, nil
}

// Path is the disk's path on the host.
func (d *Disk) Path() string { return d.path }

// Size is the disk's size in bytes.
func (d *Disk) Size() int64 { return d.size }

// BlockDevice tells whether the disk is a block device on the host.
func (d *Disk) BlockDevice() bool { return d.dev }

// BytesRead is how many bytes were read from the host for this disk.
func (d *Disk) BytesRead() int64 { return d.read.Load() }

// ReadAt reads the disk. Small reads (a filesystem's metadata, during
// inspection) go through a cache of larger blocks, so they cost one round
// trip per block rather than one each; large reads (the copy) go straight
// to the host, in concurrent SFTP requests.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", d.path, off)
	}
	if off >= d.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > d.size-off {
		want = p[:d.size-off]
	}
	var n int
	var err error
	if len(want) < cacheThreshold {
		n, err = d.readCached(want, off)
	} else {
		n, err = d.readRemote(want, off)
	}
	if err == nil && n < len(want) {
		err = fmt.Errorf("%s on %s: short read at %d: the file shrank", d.path, d.h.URL.Addr(), off+int64(n))
	}
	if err == nil && len(want) < len(p) {
		err = io.EOF
	}
	return n, err
}

const (
	cacheBlock     = 256 << 10
	cacheBlocks    = 64 // 16 MiB
	cacheThreshold = 64 << 10
)

func (d *Disk) readCached(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		bi := pos / cacheBlock
		blk, ok := d.cache.get(bi)
		if !ok {
			start := bi * cacheBlock
			buf := make([]byte, min(cacheBlock, d.size-start))
			n, err := d.readRemote(buf, start)
			if err != nil {
				return done, err
			}
			blk = buf[:n]
			d.cache.put(bi, blk)
		}
		in := int(pos - bi*cacheBlock)
		if in >= len(blk) {
			return done, nil
		}
		done += copy(p[done:], blk[in:])
	}
	return done, nil
}

// WriteAt fails: disks on the host are sources and never written.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	return 0, fmt.Errorf("%s on %s: %w", d.path, d.h.URL.Addr(), ErrReadOnly)
}

// Close closes the disk's file handle.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file != nil {
		d.file.Close()
		d.file = nil
	}
	return nil
}

// blockCache is a small LRU of disk blocks.
type blockCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[int64]*list.Element
}

type cacheEntry struct {
	idx  int64
	data []byte
}

func newBlockCache(n int) *blockCache {
	return &blockCache{max: n, ll: list.New(), items: map[int64]*list.Element{}}
}

func (c *blockCache) get(i int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[i]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*cacheEntry).data, true
	}
	return nil, false
}

func (c *blockCache) put(i int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[i]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.items[i] = c.ll.PushFront(&cacheEntry{i, data})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).idx)
	}
}

func errorsIsNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist)
}

// SetZeroMap makes Extents leave out the blocks z says are all zeros, so
// a copy never reads them. z must describe this disk, taken while
// nothing wrote to it.
func (d *Disk) SetZeroMap(z *ZeroMap) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.zeroMap = z
}

// Extents lists the ranges of the disk that may hold data: all of it,
// or, with a zero map (SetZeroMap), its blocks that are not all zeros.
func (d *Disk) Extents(ctx context.Context) ([]Extent, error) {
	d.mu.Lock()
	z := d.zeroMap
	d.mu.Unlock()
	var out []Extent
	if z == nil || z.Size != d.size {
		if d.size > 0 {
			out = append(out, Extent{Offset: 0, Length: d.size})
		}
		return out, nil
	}
	for i, zero := range z.Zero {
		if zero {
			continue
		}
		off := int64(i) * z.BlockSize
		l := min(z.BlockSize, d.size-off)
		if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == off {
			out[n-1].Length += l
		} else {
			out = append(out, Extent{Offset: off, Length: l})
		}
	}
	return out, nil
}
