package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// On-disk constants of the qcow2 format (QEMU docs/interop/qcow2.txt).
const (
	magic = 0x514649fb // "QFI\xfb"

	minClusterBits = 9
	maxClusterBits = 21

	maxL1Bytes   = 32 << 20 // the limit QEMU applies too
	maxVirtual   = 1 << 56
	maxBackName  = 1023
	v2HeaderLen  = 72
	v3HeaderLen  = 104
	l1OffsetMask = 0x00fffffffffffe00
	l2OffsetMask = 0x00fffffffffffe00
	oflagCopied  = 1 << 63
	oflagCompr   = 1 << 62
	oflagZero    = 1

	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca

	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatDataFile    = 1 << 2
	incompatCompression = 1 << 3
	incompatExtL2       = 1 << 4

	l2CacheBytes      = 8 << 20 // L2 tables kept in memory
	clusterCacheItems = 8       // decompressed clusters kept in memory
)

// Backing is the image under a qcow2 overlay: reads of clusters the overlay
// does not hold go to it. diskimg.Image satisfies it (blk.Extent is
// diskimg.Extent).
type Backing interface {
	io.ReaderAt
	Size() int64
	Extents(ctx context.Context) ([]blk.Extent, error)
}

// Image reads a qcow2 image. It is safe for concurrent use.
type Image struct {
	r        io.ReaderAt
	fileSize int64
	name     string

	version     int
	clusterBits uint
	clusterSize int64
	l2Entries   int64 // entries per L2 table
	size        int64
	l1          []uint64
	backingFile string
	backingFmt  string
	dirty       bool

	backing Backing
	l2Cache *blk.TableCache[[]uint64]
	clCache *blk.TableCache[[]byte]
}

// Version is the qcow2 version: 2 (compat 0.10) or 3 (compat 1.1).
func (img *Image) Version() int { return img.version }

// ClusterSize is the cluster size in bytes.
func (img *Image) ClusterSize() int64 { return img.clusterSize }

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// BackingFile is the backing file name as stored in the header ("" when
// there is none). Relative names are relative to the image's directory.
func (img *Image) BackingFile() string { return img.backingFile }

// BackingFormat is the backing format stored in the header extension, or "".
func (img *Image) BackingFormat() string { return img.backingFmt }

// Dirty tells whether the image was not closed cleanly (lazy refcounts);
// its mapping is still valid for reading.
func (img *Image) Dirty() bool { return img.dirty }

// SetBacking attaches the backing image. Without one, clusters the image
// does not hold read as zeros.
func (img *Image) SetBacking(b Backing) { img.backing = b }

func (img *Image) corrupt(msg string, args ...any) error {
	return blk.Corruptf(img.name, "qcow2", msg, args...)
}

// Open parses the qcow2 header and L1 table of the image r, whose length is
// fileSize; name is used in error messages. Encrypted images give an error
// matching blk.ErrEncrypted (diskimg.ErrEncrypted), features xen2kvm cannot
// read give ErrUnsupported, and damaged metadata gives ErrCorrupt.
func Open(r io.ReaderAt, fileSize int64, name string) (*Image, error) {
	img := &Image{r: r, fileSize: fileSize, name: name}
	hdr := make([]byte, v3HeaderLen)
	if fileSize < v2HeaderLen {
		return nil, img.corrupt("file is only %d bytes, too short for a header", fileSize)
	}
	n := int64(len(hdr))
	if fileSize < n {
		n = v2HeaderLen
	}
	if err := blk.ReadFull(r, fileSize, hdr[:n], 0, name, "qcow2", "header"); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	if be.Uint32(hdr[0:]) != magic {
		return nil, img.corrupt("bad magic %#x", be.Uint32(hdr[0:]))
	}
	img.version = int(be.Uint32(hdr[4:]))
	if img.version != 2 && img.version != 3 {
		return nil, fmt.Errorf("%s: %w: qcow2 version %d", name, blk.ErrUnsupported, img.version)
	}
	backOff := be.Uint64(hdr[8:])
	backLen := be.Uint32(hdr[16:])
	cb := be.Uint32(hdr[20:])
	size := be.Uint64(hdr[24:])
	crypt := be.Uint32(hdr[32:])
	l1Size := be.Uint32(hdr[36:])
	l1Off := be.Uint64(hdr[40:])

	if cb < minClusterBits || cb > maxClusterBits {
		return nil, img.corrupt("cluster bits %d out of range %d..%d", cb, minClusterBits, maxClusterBits)
	}
	img.clusterBits = uint(cb)
	img.clusterSize = 1 << cb
	img.l2Entries = img.clusterSize / 8
	if crypt != 0 {
		return nil, fmt.Errorf("%s: %w: qcow2 encryption method %d; decrypt it first (qemu-img convert with the key)", name, blk.ErrEncrypted, crypt)
	}
	if size > maxVirtual {
		return nil, img.corrupt("virtual size %d is implausibly large", size)
	}
	img.size = int64(size)

	headerLen := int64(v2HeaderLen)
	if img.version == 3 {
		if n < v3HeaderLen {
			return nil, img.corrupt("version 3 header truncated")
		}
		incompat := be.Uint64(hdr[72:])
		headerLen = int64(be.Uint32(hdr[100:]))
		if headerLen < v3HeaderLen || headerLen > img.clusterSize {
			return nil, img.corrupt("header length %d out of range %d..%d", headerLen, v3HeaderLen, img.clusterSize)
		}
		img.dirty = incompat&incompatDirty != 0
		switch {
		case incompat&incompatCorrupt != 0:
			return nil, fmt.Errorf("%s: %w: qcow2 image is marked corrupt by QEMU; repair it with qemu-img check -r all first", name, blk.ErrCorrupt)
		case incompat&incompatDataFile != 0:
			return nil, fmt.Errorf("%s: %w: qcow2 with an external data file", name, blk.ErrUnsupported)
		case incompat&incompatExtL2 != 0:
			return nil, fmt.Errorf("%s: %w: qcow2 with extended L2 entries (subclusters)", name, blk.ErrUnsupported)
		case incompat&incompatCompression != 0:
			var ct [1]byte
			if headerLen > v3HeaderLen {
				if err := blk.ReadFull(r, fileSize, ct[:], v3HeaderLen, name, "qcow2", "compression type"); err != nil {
					return nil, err
				}
			}
			if ct[0] != 0 {
				return nil, fmt.Errorf("%s: %w: qcow2 compression type %d (only zlib is supported)", name, blk.ErrUnsupported, ct[0])
			}
		case incompat&^uint64(incompatDirty|incompatCompression) != 0:
			return nil, fmt.Errorf("%s: %w: unknown qcow2 incompatible features %#x", name, blk.ErrUnsupported, incompat)
		}
	}

	// L1 table.
	perL1 := img.clusterSize * img.l2Entries
	need := (img.size + perL1 - 1) / perL1
	if int64(l1Size) < need {
		return nil, img.corrupt("L1 table has %d entries, %d needed for %d bytes", l1Size, need, img.size)
	}
	if int64(l1Size)*8 > maxL1Bytes {
		return nil, img.corrupt("L1 table of %d entries is too large", l1Size)
	}
	if l1Off%uint64(img.clusterSize) != 0 {
		return nil, img.corrupt("L1 table offset %#x is not cluster aligned", l1Off)
	}
	if need > 0 {
		if l1Off > uint64(fileSize) || need*8 > fileSize-int64(l1Off) {
			return nil, img.corrupt("L1 table at %#x (%d entries) is past the end of the file (%d bytes); truncated?", l1Off, need, fileSize)
		}
		var err error
		if img.l1, err = blk.ReadUint64s(r, fileSize, be, int64(l1Off), need, name, "qcow2", "L1 table"); err != nil {
			return nil, err
		}
	}

	// Backing file name.
	if backOff != 0 {
		if backLen == 0 || backLen > maxBackName {
			return nil, img.corrupt("backing file name length %d out of range 1..%d", backLen, maxBackName)
		}
		if backOff > uint64(img.clusterSize) {
			return nil, img.corrupt("backing file name offset %#x is outside the header cluster", backOff)
		}
		nb := make([]byte, backLen)
		if err := blk.ReadFull(r, fileSize, nb, int64(backOff), name, "qcow2", "backing file name"); err != nil {
			return nil, err
		}
		img.backingFile = string(nb)
	}

	if err := img.readExtensions(headerLen, int64(backOff)); err != nil {
		return nil, err
	}
	img.l2Cache = blk.NewTableCache[[]uint64](int(max(4, l2CacheBytes/img.clusterSize)))
	img.clCache = blk.NewTableCache[[]byte](clusterCacheItems)
	return img, nil
}

// readExtensions walks the header extensions that follow the header, up to
// the backing file name or the end of the first cluster.
func (img *Image) readExtensions(off, backOff int64) error {
	end := img.clusterSize
	if backOff > 0 && backOff < end {
		end = backOff
	}
	end = min(end, img.fileSize)
	if off >= end {
		return nil
	}
	buf := make([]byte, end-off)
	if err := blk.ReadFull(img.r, img.fileSize, buf, off, img.name, "qcow2", "header extensions"); err != nil {
		return err
	}
	be := binary.BigEndian
	for p := 0; p+8 <= len(buf); {
		typ := be.Uint32(buf[p:])
		n := int(be.Uint32(buf[p+4:]))
		if typ == extEnd {
			return nil
		}
		p += 8
		if n < 0 || n > len(buf)-p {
			return img.corrupt("header extension %#x of %d bytes overruns the header", typ, n)
		}
		if typ == extBackingFormat {
			img.backingFmt = string(bytes.TrimRight(buf[p:p+n], "\x00"))
		}
		p += (n + 7) &^ 7
	}
	return nil
}

// l2Table returns the L2 table at the host offset off.
func (img *Image) l2Table(off int64) ([]uint64, error) {
	return img.l2Cache.Get(off, func() ([]uint64, error) { return img.loadL2(off) })
}

func (img *Image) loadL2(off int64) ([]uint64, error) {
	return blk.ReadUint64s(img.r, img.fileSize, binary.BigEndian, off, img.l2Entries, img.name, "qcow2", "L2 table")
}

// l2OffsetOf validates the L1 entry at index i and returns the L2 table
// offset, or 0 when the range is unallocated.
func (img *Image) l2OffsetOf(i int64) (int64, error) {
	e := img.l1[i]
	off := int64(e & l1OffsetMask)
	if e&^(l1OffsetMask|oflagCopied) != 0 {
		return 0, img.corrupt("L1 entry %d has reserved bits set (%#x)", i, e)
	}
	if off == 0 {
		return 0, nil
	}
	if off%img.clusterSize != 0 {
		return 0, img.corrupt("L1 entry %d points to unaligned L2 table offset %#x", i, off)
	}
	return off, nil
}

// clusterKind classifies an L2 entry.
type clusterKind int

const (
	kindUnallocated clusterKind = iota // read from the backing file
	kindZero
	kindData
	kindCompressed
)

// lookup maps the guest cluster index c.
func (img *Image) lookup(c int64) (clusterKind, uint64, error) {
	l1i := c / img.l2Entries
	if l1i >= int64(len(img.l1)) {
		return kindUnallocated, 0, nil
	}
	l2off, err := img.l2OffsetOf(l1i)
	if err != nil || l2off == 0 {
		return kindUnallocated, 0, err
	}
	t, err := img.l2Table(l2off)
	if err != nil {
		return 0, 0, err
	}
	return img.classify(t[c%img.l2Entries], c)
}

func (img *Image) classify(e uint64, c int64) (clusterKind, uint64, error) {
	if e&oflagCompr != 0 {
		return kindCompressed, e, nil
	}
	if img.version >= 3 && e&oflagZero != 0 {
		return kindZero, 0, nil
	}
	off := e & l2OffsetMask
	if off == 0 {
		return kindUnallocated, 0, nil
	}
	if int64(off)%img.clusterSize != 0 {
		return 0, 0, img.corrupt("L2 entry for guest offset %d points to unaligned data offset %#x", c*img.clusterSize, off)
	}
	return kindData, off, nil
}

// ReadAt reads guest data; it satisfies io.ReaderAt.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	return blk.ReadUnits(img.name, p, off, img.size, img.clusterSize, img.readCluster)
}

// readCluster reads dst, which lies inside one cluster, at guest offset pos.
func (img *Image) readCluster(dst []byte, pos int64) error {
	c := pos >> img.clusterBits
	in := pos & (img.clusterSize - 1)
	kind, e, err := img.lookup(c)
	if err != nil {
		return err
	}
	switch kind {
	case kindZero:
		clear(dst)
	case kindUnallocated:
		return blk.ReadBacking(img.name, img.backing, dst, pos)
	case kindData:
		return blk.ReadFull(img.r, img.fileSize, dst, int64(e)+in, img.name, "qcow2", "data cluster")
	case kindCompressed:
		data, err := img.compressedCluster(e, c)
		if err != nil {
			return err
		}
		copy(dst, data[in:])
	}
	return nil
}

// compressedCluster returns the decompressed guest cluster c described by
// the L2 entry e.
func (img *Image) compressedCluster(e uint64, c int64) ([]byte, error) {
	x := 62 - (img.clusterBits - 8)
	hostOff := int64(e & (1<<x - 1))
	sectors := int64((e&(1<<62-1))>>x) + 1
	end := hostOff&^511 + sectors*512
	return img.clCache.Get(hostOff, func() ([]byte, error) {
		if hostOff >= img.fileSize {
			return nil, img.corrupt("compressed cluster for guest offset %d at %#x is past the end of the file (%d bytes); truncated?", c*img.clusterSize, hostOff, img.fileSize)
		}
		end := min(end, img.fileSize) // the last sector may be short
		return inflateCluster(img.r, hostOff, end-hostOff, img.clusterSize, func(err error) error {
			return img.corrupt("compressed cluster for guest offset %d at %#x: %v", c*img.clusterSize, hostOff, err)
		})
	})
}

// inflateCluster decompresses the raw deflate stream of n bytes at off into
// a cluster of size bytes.
func inflateCluster(r io.ReaderAt, off, n, size int64, bad func(error) error) ([]byte, error) {
	if n <= 0 || n > 2*size+1024 {
		return nil, bad(fmt.Errorf("compressed length %d out of range", n))
	}
	in := make([]byte, n)
	if m, err := r.ReadAt(in, off); int64(m) < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, bad(err)
	}
	out, err := blk.Inflate(in, size)
	if err != nil {
		return nil, bad(err)
	}
	return out, nil
}

// Extents lists the guest ranges holding data: allocated and compressed
// clusters of this image, and the backing file's extents under clusters it
// does not hold. Zero clusters are left out.
func (img *Image) Extents(ctx context.Context) ([]blk.Extent, error) {
	l2 := func(i int64) ([]uint64, error) {
		off, err := img.l2OffsetOf(i)
		if err != nil || off == 0 {
			return nil, err
		}
		return img.loadL2(off)
	}
	kind := func(e uint64, c int64) (blk.Cluster, error) {
		k, _, err := img.classify(e, c)
		switch k {
		case kindData, kindCompressed:
			return blk.Allocated, err
		case kindZero:
			return blk.Zero, err
		}
		return blk.Unallocated, err
	}
	return blk.TableExtents(ctx, img.backing, img.size, img.clusterSize, img.l2Entries, int64(len(img.l1)), l2, kind)
}
