package libvirtdst

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// createVolume creates a volume in pool. format is "raw" or "qcow2"; a
// backing volume path makes a qcow2 overlay above it.
func (c *Conn) createVolume(pool, name, format string, capacity uint64, backing, backingFormat string) (libvirt.StorageVol, error) {
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return libvirt.StorageVol{}, fmt.Errorf("storage pool %q on %s: %w (%v)", pool, c.uri, ErrNoPool, err)
	}
	x := libvirtxml.StorageVolume{
		Name:       name,
		Capacity:   &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: capacity},
		Allocation: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0},
		Target: &libvirtxml.StorageVolumeTarget{
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: format},
			// Guest disks hold secrets.
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "0600"},
		},
	}
	if backing != "" {
		x.BackingStore = &libvirtxml.StorageVolumeBackingStore{Path: backing,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: backingFormat}}
	}
	doc, err := x.Marshal()
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	v, err := c.l.StorageVolCreateXML(p, doc, 0)
	if err != nil {
		return v, fmt.Errorf("creating volume %s in pool %s on %s: %w", name, pool, c.uri, err)
	}
	return v, nil
}

// lookupVolume returns the volume and whether it exists.
func (c *Conn) lookupVolume(pool, name string) (libvirt.StorageVol, bool, error) {
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		if !c.l.IsConnected() {
			return libvirt.StorageVol{}, false, fmt.Errorf("storage pool %q on %s: %w", pool, c.uri, c.lost(err))
		}
		return libvirt.StorageVol{}, false, fmt.Errorf("storage pool %q on %s: %w (%v)", pool, c.uri, ErrNoPool, err)
	}
	v, err := c.l.StorageVolLookupByName(p, name)
	if err != nil {
		if isCode(err, libvirt.ErrNoStorageVol) {
			return v, false, nil
		}
		return v, false, fmt.Errorf("looking up volume %s in pool %s on %s: %w", name, pool, c.uri, err)
	}
	return v, true, nil
}

// deleteVolume deletes a volume; one that is not there is no error.
func (c *Conn) deleteVolume(pool, name string) error {
	v, ok, err := c.lookupVolume(pool, name)
	if err != nil || !ok {
		return err
	}
	if err := c.l.StorageVolDelete(v, 0); err != nil && !isCode(err, libvirt.ErrNoStorageVol) {
		return fmt.Errorf("deleting volume %s in pool %s on %s: %w", name, pool, c.uri, err)
	}
	return nil
}

// volumePath is the path of a volume on its host.
func (c *Conn) volumePath(v libvirt.StorageVol) (string, error) {
	p, err := c.l.StorageVolGetPath(v)
	if err != nil {
		return "", fmt.Errorf("reading the path of volume %s on %s: %w", v.Name, c.uri, err)
	}
	return p, nil
}

// readVolume reads a whole (small) volume.
func (c *Conn) readVolume(v libvirt.StorageVol) ([]byte, error) {
	var b bytes.Buffer
	if err := c.l.StorageVolDownload(v, &b, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("reading volume %s on %s: %w", v.Name, c.uri, err)
	}
	return b.Bytes(), nil
}

// uploadStream writes r (n bytes) into the volume from offset 0.
func (c *Conn) uploadStream(v libvirt.StorageVol, r io.Reader, n int64, fileBacked bool) error {
	if err := retryInUse(func() error { return c.l.StorageVolUpload(v, r, 0, uint64(n), 0) }); err != nil {
		return fmt.Errorf("uploading volume %s to %s: %w", v.Name, c.uri, c.lost(err))
	}
	if fileBacked {
		return c.checkAllocation(v, fmt.Sprintf("volume %s on %s", v.Name, c.uri), n)
	}
	return nil
}

// retryInUse runs fn again while libvirt says the volume is still in use:
// it lets go of a volume only after the previous upload's stream closed,
// a moment after the upload call returned.
func retryInUse(fn func() error) error {
	wait := 5 * time.Millisecond
	for i := 0; ; i++ {
		err := fn()
		if err == nil || i == 200 || !isCode(err, libvirt.ErrOperationInvalid) || !strings.Contains(err.Error(), "in use") {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// VolumeFile is a storage volume seen as a file that reads and writes at
// offsets (diskimg.File): each WriteAt is one ranged upload, each ReadAt
// one ranged download. Several goroutines may write at once.
type VolumeFile struct {
	c    *Conn
	vol  libvirt.StorageVol
	name string

	// zeroBelow: Sync writes zeros over what was not written below it
	// (what the new volume may hold that is not zero).
	zeroBelow int64
	// size is the volume's size in bytes when created.
	size int64
	// fileBacked: the volume is a file whose allocation Close checks.
	fileBacked bool

	// upload serialises the uploads: libvirt refuses a second upload
	// into a volume while one is under way.
	upload sync.Mutex

	mu      sync.Mutex
	written []span // sorted, not overlapping, not adjacent
	end     int64
	closed  bool
}

type span struct{ off, end int64 }

// Name names the volume and where it is, for error messages.
func (f *VolumeFile) Name() string { return f.name }

// WriteAt uploads p at off.
func (f *VolumeFile) WriteAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f.upload.Lock()
	err := retryInUse(func() error {
		return f.c.l.StorageVolUpload(f.vol, bytes.NewReader(p), uint64(off), uint64(len(p)), 0)
	})
	f.upload.Unlock()
	if err != nil {
		return 0, fmt.Errorf("uploading at offset %d: %w", off, f.c.lost(err))
	}
	f.mu.Lock()
	f.add(span{off, off + int64(len(p))})
	f.mu.Unlock()
	return len(p), nil
}

// add merges s into f.written. Callers hold f.mu.
func (f *VolumeFile) add(s span) {
	f.end = max(f.end, s.end)
	i := sort.Search(len(f.written), func(i int) bool { return f.written[i].end >= s.off })
	j := i
	for j < len(f.written) && f.written[j].off <= s.end {
		s.off = min(s.off, f.written[j].off)
		s.end = max(s.end, f.written[j].end)
		j++
	}
	f.written = append(f.written[:i], append([]span{s}, f.written[j:]...)...)
}

// ReadAt downloads len(p) bytes at off.
func (f *VolumeFile) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w := &fixedWriter{b: p}
	f.upload.Lock()
	err := retryInUse(func() error {
		w.n = 0
		return f.c.l.StorageVolDownload(f.vol, w, uint64(off), uint64(len(p)), 0)
	})
	f.upload.Unlock()
	if err != nil {
		return w.n, fmt.Errorf("%s: downloading at offset %d: %w", f.name, off, f.c.lost(err))
	}
	if w.n < len(p) {
		return w.n, io.EOF
	}
	return w.n, nil
}

type fixedWriter struct {
	b []byte
	n int
}

func (w *fixedWriter) Write(p []byte) (int, error) {
	n := copy(w.b[w.n:], p)
	w.n += n
	return len(p), nil
}

// Truncate makes the volume at least n bytes long by writing zeros just
// below n if nothing was written there yet (a volume cannot be cut
// shorter through libvirt's upload; what lies past the image's end is not
// read by QEMU).
func (f *VolumeFile) Truncate(n int64) error {
	f.mu.Lock()
	end := max(f.end, f.size)
	f.mu.Unlock()
	if n <= end {
		return nil
	}
	start := max(end, n-512)
	_, err := f.WriteAt(make([]byte, n-start), start)
	return err
}

// Sync writes zeros over the ranges below zeroBelow nothing was written
// to. libvirt has no call to flush a volume: the data is in the
// destination's page cache once the uploads returned.
func (f *VolumeFile) Sync() error {
	f.mu.Lock()
	var gaps []span
	at := int64(0)
	for _, s := range f.written {
		if s.off > at && at < f.zeroBelow {
			gaps = append(gaps, span{at, min(s.off, f.zeroBelow)})
		}
		at = s.end
	}
	if at < f.zeroBelow {
		gaps = append(gaps, span{at, f.zeroBelow})
	}
	f.mu.Unlock()
	zero := make([]byte, 4<<20)
	for _, g := range gaps {
		for off := g.off; off < g.end; off += int64(len(zero)) {
			n := min(int64(len(zero)), g.end-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close ends the writing and checks that the volume took the data:
// libvirt does not always report a write that failed at the end of a
// short upload (a full pool), so in a file-backed pool the volume's
// allocation must cover what was written.
func (f *VolumeFile) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	var n int64
	for _, s := range f.written {
		n += s.end - s.off
	}
	f.mu.Unlock()
	if !f.fileBacked {
		return nil
	}
	return f.c.checkAllocation(f.vol, f.name, n)
}

// checkAllocation fails when the volume's allocation is short of the
// bytes written into it (by more than the slack a file system's block
// rounding cannot explain the other way round).
func (c *Conn) checkAllocation(v libvirt.StorageVol, name string, written int64) error {
	_, _, alloc, err := c.l.StorageVolGetInfo(v)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, c.lost(err))
	}
	if int64(alloc)+1<<20 < written {
		return fmt.Errorf("%s: %w: it holds %d bytes of the %d written (a file system that compresses or deduplicates is not supported)", name, ErrShortWrite, alloc, written)
	}
	return nil
}
