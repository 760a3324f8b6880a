package diskimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
	"github.com/xen2kvm/xen2kvm/internal/atomicfile"
)

// Output formats Convert writes.
const (
	OutputQCOW2 = "qcow2"
	OutputRaw   = "raw"
)

const (
	defaultWorkers = 8
	defaultChunk   = 1 << 20
	rawGrain       = 64 << 10 // zero-detection unit for raw output
	writebackEvery = 32 << 20 // start writeback after this many bytes
)

// Option configures Convert.
type Option func(*convertConfig)

type convertConfig struct {
	progress    func(done, total int64)
	workers     int
	chunk       int64
	compress    bool
	clusterSize int
	prealloc    bool
}

// WithProgress has Convert report progress: done grows from 0 to total,
// the bytes of the source it has to look at (its allocated extents). The
// calls come from several goroutines but never at the same time.
func WithProgress(fn func(done, total int64)) Option {
	return func(c *convertConfig) { c.progress = fn }
}

// WithWorkers sets how many chunks are read and written at once (default 8).
func WithWorkers(n int) Option {
	return func(c *convertConfig) { c.workers = max(1, n) }
}

// WithCompression stores qcow2 clusters compressed.
func WithCompression(on bool) Option {
	return func(c *convertConfig) { c.compress = on }
}

// WithClusterSize sets the qcow2 cluster size (default 64 KiB).
func WithClusterSize(n int) Option {
	return func(c *convertConfig) { c.clusterSize = n }
}

// WithPreallocation preallocates the output: the whole file for raw (so
// zeros take space), the L2 tables for qcow2.
func WithPreallocation(on bool) Option {
	return func(c *convertConfig) { c.prealloc = on }
}

// WithChunkSize sets how many bytes each worker reads at a time (default
// 1 MiB); memory use is about workers × chunk size.
func WithChunkSize(n int64) Option {
	return func(c *convertConfig) { c.chunk = n }
}

// output is what Convert writes into: a qcow2.Writer or a sparse raw file.
type output interface {
	io.WriterAt
	Close() error
	Abort() error
}

// Convert copies the device src into a new image at dstPath in the given
// format (OutputQCOW2 or OutputRaw). Only src's allocated extents are read
// when it is an ExtentLister; clusters that are all zero are not written.
// A bounded pool of workers reads and writes chunks concurrently, so memory
// stays at about workers × chunk size whatever the image size.
//
// The output is written under a temporary name in dstPath's directory,
// synced and renamed to dstPath only when complete; on an error or when
// ctx is cancelled the temporary file is removed and dstPath is untouched.
// src is only read. The output has mode 0600: guest disks hold secrets
// (libvirt gives QEMU access to the images it runs).
func Convert(ctx context.Context, src Device, dstPath, format string, opts ...Option) (err error) {
	cfg, err := newConfig(format, opts)
	if err != nil {
		return err
	}
	if err := checkNotSource(src, dstPath); err != nil {
		return err
	}
	if err := CheckOutputPath(dstPath); err != nil {
		return err
	}
	removeStaleParts(dstPath)
	tmp, err := os.CreateTemp(filepath.Dir(dstPath), partPrefix(dstPath)+"*")
	if err != nil {
		return fmt.Errorf("creating output: %w", err)
	}
	tmpName := tmp.Name()
	// The lock tells a later Convert to the same DST that this part file
	// is in use; a killed process's lock goes with it, and the part file
	// is then removed by the next Convert to that DST.
	unix.Flock(int(tmp.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err := convertInto(ctx, src, tmp, dstPath, format, &cfg); err != nil {
		os.Remove(tmpName)
		return err
	}
	if err := os.Rename(tmpName, dstPath); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("renaming output: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(dstPath))
}

// File is an output Convert can write into besides a local file: it reads
// and writes at offsets (a storage volume on another host, written
// through its management API). An *os.File is one.
type File = qcow2.File

// ConvertTo copies the device src into dst in the given format, as
// Convert does, but into an open File instead of a new local file: the
// image is laid out from offset 0 of dst, only the non-zero data is
// written (so dst must read as zeros where nothing is written: a new
// sparse file or volume), and dst is closed once the image is complete.
// On an error dst is closed and holds a partial image that the caller
// discards.
func ConvertTo(ctx context.Context, src Device, dst File, format string, opts ...Option) error {
	cfg, err := newConfig(format, opts)
	if err != nil {
		dst.Close()
		return err
	}
	return convertInto(ctx, src, dst, dst.Name(), format, &cfg)
}

func newConfig(format string, opts []Option) (convertConfig, error) {
	cfg := convertConfig{workers: defaultWorkers, chunk: defaultChunk, clusterSize: qcow2.DefaultClusterSize}
	for _, o := range opts {
		o(&cfg)
	}
	if format != OutputQCOW2 && format != OutputRaw {
		return cfg, fmt.Errorf("output format %q: %w (use %s or %s)", format, ErrUnsupported, OutputQCOW2, OutputRaw)
	}
	return cfg, nil
}

// convertInto writes src into f (named name in errors) and closes f.
func convertInto(ctx context.Context, src Device, f File, name, format string, cfg *convertConfig) (err error) {
	size := src.Size()
	var extents []Extent
	if l, ok := src.(ExtentLister); ok {
		if extents, err = l.Extents(ctx); err != nil {
			f.Close()
			return fmt.Errorf("listing extents: %w", err)
		}
	} else if size > 0 {
		extents = []Extent{{Offset: 0, Length: size}}
	}

	defer noReadahead(src)()

	var out output
	grain := int64(rawGrain)
	switch format {
	case OutputQCOW2:
		qopts := []qcow2.Option{qcow2.WithClusterSize(cfg.clusterSize), qcow2.WithCompression(cfg.compress), qcow2.WithPreallocation(cfg.prealloc)}
		w, werr := qcow2.NewWriter(f, size, qopts...)
		if werr != nil {
			f.Close()
			return fmt.Errorf("creating %s: %w", name, werr)
		}
		out, grain = w, w.ClusterSize()
	case OutputRaw:
		r, rerr := newRawOutput(f, size, cfg.prealloc)
		if rerr != nil {
			f.Close()
			return fmt.Errorf("creating %s: %w", name, rerr)
		}
		out = r
	}
	defer func() {
		if err != nil {
			out.Abort()
		}
	}()

	chunk := max(cfg.chunk, grain) / grain * grain
	// Start writeback of a local output file as it is written, so the
	// final fsync does not have to write everything at once. A goroutine
	// of its own does it: sync_file_range can block on a busy disk, and
	// the copy workers should not.
	kick := make(chan struct{}, 1)
	flusher := make(chan struct{})
	fdf, local := f.(interface{ Fd() uintptr })
	go func() {
		defer close(flusher)
		for range kick {
			if local {
				unix.SyncFileRange(int(fdf.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			}
		}
	}()
	var written atomic.Int64
	wrote := func(n int64) {
		if w := written.Add(n); w/writebackEvery != (w-n)/writebackEvery {
			select {
			case kick <- struct{}{}:
			default: // one is pending already
			}
		}
	}
	err = copyExtents(ctx, src, out, aligned(extents, grain, size), grain, chunk, cfg, wrote)
	close(kick)
	<-flusher
	if err != nil {
		return err
	}
	return out.Close()
}

// noReadahead turns the kernel's readahead off for a raw source file for
// the time of the copy and returns the function that turns it back on.
// Convert reads only the allocated extents, in chunks of its own size;
// readahead would read on past an extent's end into the hole that follows
// and fill the page cache with zeros nobody asked for (a third of the
// CPU time on the bench/ workload went there). It also marks the source
// as read once (FADV_NOREUSE): its pages are not promoted in the page
// cache's LRU lists, which costs a lock per page and would push out other
// cached files for a disk read just this once.
func noReadahead(src Device) func() {
	img, ok := src.(*Image)
	if !ok {
		return func() {}
	}
	r, ok := img.r.(*rawReader)
	if !ok || r.f == nil {
		return func() {}
	}
	fd := int(r.f.Fd())
	unix.Fadvise(fd, 0, 0, unix.FADV_NOREUSE) // Linux 6.3 and later; best effort
	if unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM) != nil {
		return func() {}
	}
	return func() { unix.Fadvise(fd, 0, 0, unix.FADV_NORMAL) } // clears both
}

// ErrOutputNotFile is returned by Convert when DST exists and is not a
// regular file: Convert writes a new file and renames it over DST, which
// would replace a device node (or FIFO) with a file and never reach the
// device.
var ErrOutputNotFile = errors.New("output exists and is not a regular file")

// CheckOutputPath refuses an existing DST that is a device, FIFO, socket
// or folder (following symlinks: a link to /dev/sdb is /dev/sdb).
func CheckOutputPath(dst string) error {
	st, err := os.Stat(dst)
	if err != nil {
		return nil // absent (or unreadable: creating it will say why)
	}
	m := st.Mode()
	if m.IsRegular() {
		return nil
	}
	what := fileKind(m)
	if isBlockDevice(m) {
		what += " (convert into an image file, then copy that onto the device, e.g. with dd)"
	}
	return fmt.Errorf("%s: %w: it is %s", dst, ErrOutputNotFile, what)
}

// partPrefix is the name prefix of Convert's temporary files for dst.
func partPrefix(dst string) string { return "." + filepath.Base(dst) + ".part-" }

// removeStaleParts removes the part files of earlier Converts to dst
// that were killed: those nobody holds the lock of.
func removeStaleParts(dst string) {
	dir, prefix := filepath.Dir(dst), partPrefix(dst)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() || strings.Trim(rest, "0123456789") != "" {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

// checkNotSource refuses to write over the source image itself.
func checkNotSource(src Device, dst string) error {
	p, ok := src.(interface{ Path() string })
	if !ok {
		return nil
	}
	a, err1 := os.Stat(p.Path())
	b, err2 := os.Stat(dst)
	if err1 == nil && err2 == nil && os.SameFile(a, b) {
		return fmt.Errorf("output %s is the source image itself", dst)
	}
	return nil
}

// aligned widens the extents to whole grains (clusters) inside [0, size)
// and merges those that then touch, so each grain is copied by one worker.
func aligned(ext []Extent, grain, size int64) []Extent {
	var out []Extent
	for _, e := range ext {
		s := e.Offset / grain * grain
		t := min((e.Offset+e.Length+grain-1)/grain*grain, size)
		if s >= t {
			continue
		}
		if k := len(out); k > 0 && s <= out[k-1].Offset+out[k-1].Length {
			if t > out[k-1].Offset+out[k-1].Length {
				out[k-1].Length = t - out[k-1].Offset
			}
			continue
		}
		out = append(out, Extent{Offset: s, Length: t - s})
	}
	return out
}

func copyExtents(ctx context.Context, src Device, out output, ext []Extent, grain, chunk int64, cfg *convertConfig, wrote func(int64)) error {
	var total int64
	for _, e := range ext {
		total += e.Length
	}
	var (
		mu   sync.Mutex
		done int64
	)
	report := func(n int64) {
		if cfg.progress == nil {
			return
		}
		mu.Lock()
		done += n
		cfg.progress(done, total)
		mu.Unlock()
	}
	report(0)

	// A fixed set of buffers bounds memory: a chunk is only started when a
	// buffer is free.
	bufs := make(chan []byte, cfg.workers)
	for range cfg.workers {
		bufs <- make([]byte, chunk)
	}
	zero := make([]byte, grain)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.workers)
loop:
	for _, e := range ext {
		for off := e.Offset; off < e.Offset+e.Length; off += chunk {
			n := min(chunk, e.Offset+e.Length-off)
			var buf []byte
			select {
			case buf = <-bufs:
			case <-gctx.Done():
				break loop
			}
			g.Go(func() error {
				defer func() { bufs <- buf }()
				if err := gctx.Err(); err != nil {
					return err
				}
				b := buf[:n]
				m, err := src.ReadAt(b, off)
				if m < len(b) {
					if err == nil || err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return fmt.Errorf("reading source at offset %d: %w", off+int64(m), err)
				}
				if _, ok := out.(*qcow2.Writer); ok {
					// The qcow2 writer skips zero clusters itself: one
					// pass over the data instead of two.
					if _, err := out.WriteAt(b, off); err != nil {
						return err
					}
					wrote(n)
				} else {
					w, err := writeNonZero(out, b, off, grain, zero)
					if err != nil {
						return err
					}
					wrote(w)
				}
				report(n)
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// writeNonZero writes the runs of b (at guest offset off) whose grains are
// not all zero, and returns how many bytes it wrote.
func writeNonZero(out io.WriterAt, b []byte, off, grain int64, zero []byte) (int64, error) {
	n := int64(len(b))
	var written int64
	for i := int64(0); i < n; {
		j := min(i+grain, n)
		if bytes.Equal(b[i:j], zero[:j-i]) {
			i = j
			continue
		}
		k := j
		for k < n {
			l := min(k+grain, n)
			if bytes.Equal(b[k:l], zero[:l-k]) {
				break
			}
			k = l
		}
		if _, err := out.WriteAt(b[i:k], off+i); err != nil {
			return written, err
		}
		written += k - i
		i = k
	}
	return written, nil
}

// rawOutput is a sparse raw file: zeros are holes because they are never
// written.
type rawOutput struct{ f File }

func newRawOutput(f File, size int64, prealloc bool) (*rawOutput, error) {
	if fd, ok := f.(interface{ Fd() uintptr }); ok && prealloc && size > 0 {
		if err := unix.Fallocate(int(fd.Fd()), 0, 0, size); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("preallocating %s: %w", f.Name(), err)
		}
	}
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	return &rawOutput{f: f}, nil
}

func (r *rawOutput) WriteAt(p []byte, off int64) (int, error) {
	n, err := r.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", r.f.Name(), err)
	}
	return n, nil
}

func (r *rawOutput) Close() error {
	if err := r.f.Sync(); err != nil {
		r.f.Close()
		return fmt.Errorf("syncing %s: %w", r.f.Name(), err)
	}
	return r.f.Close()
}

func (r *rawOutput) Abort() error { return r.f.Close() }
