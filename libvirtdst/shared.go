package libvirtdst

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// A shared volume is one that several guests use, such as the virtio-win
// ISO, named by its content: no guest owns it, so no delivery's state
// volume names it and no Abort, re-run or --force deletes it. Its upload
// is marked by a volume NAME.xen2kvm-upload, created (which libvirt
// does only for one caller) before the shared volume and deleted once
// the upload is whole: a shared volume without the mark is complete.
const uploadSuffix = ".xen2kvm-upload"

// SharedStale is how long a mark may stand while its volume does not
// grow before the upload is taken as dead (a run killed while
// uploading) and done again.
var SharedStale = 2 * time.Minute

// sharedLocks serialises the guests of one process (a batch) that want
// the same shared volume: one uploads it, the others wait and reuse it.
var sharedLocks = struct {
	sync.Mutex
	by map[string]chan struct{}
}{by: map[string]chan struct{}{}}

// lockShared takes the lock of key, or returns ctx's error when ctx
// ends first.
func lockShared(ctx context.Context, key string) (unlock func(), err error) {
	sharedLocks.Lock()
	ch := sharedLocks.by[key]
	if ch == nil {
		ch = make(chan struct{}, 1)
		sharedLocks.by[key] = ch
	}
	sharedLocks.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// SharedReady tells whether pool holds the shared volume name, complete,
// with size bytes.
func (c *Conn) SharedReady(pool, name string, size int64) (bool, error) {
	p, err := c.Pool(pool)
	if err != nil {
		return false, err
	}
	st, err := c.sharedState(p, name, size)
	return st.ready, err
}

type sharedState struct {
	ready, exists, marked bool
	capacity, alloc       uint64
}

func (c *Conn) sharedState(p PoolInfo, name string, size int64) (sharedState, error) {
	var st sharedState
	vol, ok, err := c.lookupVolume(p.Name, name)
	if err != nil || !ok {
		return st, err
	}
	st.exists = true
	if _, st.capacity, st.alloc, err = c.l.StorageVolGetInfo(vol); err != nil {
		return st, fmt.Errorf("reading volume %s on %s: %w", name, c.uri, c.lost(err))
	}
	if _, st.marked, err = c.lookupVolume(p.Name, name+uploadSuffix); err != nil {
		return st, err
	}
	st.ready = !st.marked && st.fits(p, size)
	return st, nil
}

// fits tells whether the volume has size bytes: a pool of block devices
// rounds a volume up to its extents.
func (st sharedState) fits(p PoolInfo, size int64) bool {
	return st.capacity == uint64(size) || !p.fileBacked() && st.capacity >= uint64(size)
}

// sizeError is a shared volume of another size than the file's.
func (c *Conn) sizeError(pool, name string, capacity uint64, size int64) error {
	return fmt.Errorf("volume %s in pool %s on %s holds %d bytes, not the %d expected: it is not xen2kvm's copy of that file (delete it with virsh vol-delete if it is no one's)", name, pool, c.uri, capacity, size)
}

// Shared makes sure the delivery's pool holds the shared volume name, a
// raw volume of size bytes, for the domain XML to name: one that is
// there, complete and of that size, is reused; otherwise open's bytes
// are uploaded into it. uploaded says which. Guests of one process wait
// for each other's upload, and other processes for the mark of theirs.
func (d *Delivery) Shared(ctx context.Context, name string, size int64, open func() (io.ReadCloser, error)) (uploaded bool, err error) {
	if !cleanName(name) {
		return false, fmt.Errorf("volume name %q: not a file name", name)
	}
	c, pool := d.c, d.pool
	unlock, err := lockShared(ctx, c.uri+"\x00"+pool.Name+"\x00"+name)
	if err != nil {
		return false, err
	}
	defer unlock()
	mark := name + uploadSuffix
	var grown uint64
	since := time.Now()
	for {
		st, err := c.sharedState(pool, name, size)
		if err != nil {
			return false, err
		}
		switch {
		case st.ready:
			d.addShared(name, size)
			return false, nil
		case st.exists && !st.marked:
			return false, c.sizeError(pool.Name, name, st.capacity, size)
		}
		// 4 KiB: a pool of block devices makes no empty volume.
		_, err = c.createVolume(pool.Name, mark, "raw", 4096, "", "")
		if err == nil {
			break
		}
		if _, held, lerr := c.lookupVolume(pool.Name, mark); lerr != nil || !held {
			return false, err
		}
		// Another run uploads it: wait while it makes progress.
		if st.alloc != grown {
			grown, since = st.alloc, time.Now()
		}
		if time.Since(since) > SharedStale {
			if err := c.deleteVolume(pool.Name, name); err != nil {
				return false, err
			}
			if err := c.deleteVolume(pool.Name, mark); err != nil {
				return false, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	// Ours to upload. A failed upload leaves neither volume, so the next
	// guest uploads it afresh.
	created := false
	defer func() {
		if err != nil && created {
			deadline(30*time.Second, func() error { return c.deleteVolume(pool.Name, name) })
		}
		if derr := deadline(30*time.Second, func() error { return c.deleteVolume(pool.Name, mark) }); derr != nil && err == nil {
			err = fmt.Errorf("removing the upload mark of volume %s: %w", name, derr)
		}
	}()
	// A volume without a mark is whole: another run may have finished it
	// since the check above.
	st, err := c.sharedState(pool, name, size)
	if err != nil {
		return false, err
	}
	if st.exists {
		if st.fits(pool, size) {
			d.addShared(name, size)
			return false, nil
		}
		return false, c.sizeError(pool.Name, name, st.capacity, size)
	}
	r, err := open()
	if err != nil {
		return false, err
	}
	defer r.Close()
	vol, err := c.createVolume(pool.Name, name, "raw", uint64(size), "", "")
	if err != nil {
		return false, err
	}
	created = true
	if err := c.uploadStream(vol, ctxReader{ctx, r}, size, pool.fileBacked()); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	d.addShared(name, size)
	return true, nil
}

func (d *Delivery) addShared(name string, size int64) {
	if d.shared == nil {
		d.shared = map[string]VolumeSpec{}
	}
	d.shared[name] = VolumeSpec{Name: name, Format: "raw", Capacity: size}
}

// ctxReader stops a long upload when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
