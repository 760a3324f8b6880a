// Package qcow reads version 1 qcow images: the format QEMU called "qcow"
// before qcow2, and the one RHEL 5's blktap writes for `tap:qcow:` disks.
//
// Blktap's images are QEMU qcow version 1 with a Xen extension header right
// after the 48-byte QEMU header ("XEN\xfb", an MD5-based L1 checksum,
// min_cluster_alloc and flags). Old tapdisk versions stored the L1 table in
// the host's little-endian byte order; the extension's EXTHDR_L1_BIG_ENDIAN
// flag tells which order an image uses, and this package reads both.
// Blktap preallocates whole L2 extents, so many allocated clusters hold
// zeros; the copy engine's zero detection drops them again.
//
//	img, err := qcow.Open(f, fileSize, f.Name())
//	if err != nil { ... }
//	if img.BackingFile() != "" { img.SetBacking(parent) }
//	n, err := img.ReadAt(buf, off)
//
// Encrypted (AES) images are refused with an error matching
// diskimg.ErrEncrypted.
package qcow

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

const (
	magic        = 0x514649fb // "QFI\xfb"
	xenMagic     = 0x58454efb // "XEN\xfb"
	headerLen    = 48
	xenHeaderLen = 16

	flagL1BigEndian = 0x02
	oflagCompressed = 1 << 63

	maxL1Bytes  = 32 << 20
	maxVirtual  = 1 << 56
	maxBackName = 1023

	l2CacheBytes = 8 << 20 // L2 tables kept in memory
)

// Backing is the image under a qcow overlay (diskimg.Image satisfies it).
type Backing interface {
	io.ReaderAt
	Size() int64
	Extents(ctx context.Context) ([]blk.Extent, error)
}

// Image reads a qcow version 1 image. It is safe for concurrent use.
type Image struct {
	r        io.ReaderAt
	fileSize int64
	name     string

	clusterBits uint
	clusterSize int64
	l2Bits      uint
	l2Entries   int64
	size        int64
	l1          []uint64
	backingFile string
	xen         bool
	xenLE       bool

	backing Backing
	l2Cache *blk.TableCache[[]uint64]
	clCache *blk.TableCache[[]byte]
}

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// ClusterSize is the cluster size in bytes.
func (img *Image) ClusterSize() int64 { return img.clusterSize }

// BackingFile is the backing file name from the header, or "".
func (img *Image) BackingFile() string { return img.backingFile }

// Xen tells whether the image carries blktap's Xen extension header.
func (img *Image) Xen() bool { return img.xen }

// SetBacking attaches the backing image.
func (img *Image) SetBacking(b Backing) { img.backing = b }

func (img *Image) corrupt(msg string, args ...any) error {
	return blk.Corruptf(img.name, "qcow", msg, args...)
}

// Open parses the header and L1 table of the qcow image r of fileSize
// bytes; name is used in error messages.
func Open(r io.ReaderAt, fileSize int64, name string) (*Image, error) {
	img := &Image{r: r, fileSize: fileSize, name: name}
	var hdr [headerLen + xenHeaderLen]byte
	if fileSize < headerLen {
		return nil, img.corrupt("file is only %d bytes, too short for a header", fileSize)
	}
	n := min(int64(len(hdr)), fileSize)
	if err := blk.ReadFull(r, fileSize, hdr[:n], 0, name, "qcow", "header"); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	if be.Uint32(hdr[0:]) != magic {
		return nil, img.corrupt("bad magic %#x", be.Uint32(hdr[0:]))
	}
	if v := be.Uint32(hdr[4:]); v != 1 {
		return nil, fmt.Errorf("%s: %w: qcow version %d (this reader handles version 1)", name, blk.ErrUnsupported, v)
	}
	backOff := be.Uint64(hdr[8:])
	backLen := be.Uint32(hdr[16:])
	size := be.Uint64(hdr[24:])
	cb, l2b := uint(hdr[32]), uint(hdr[33])
	crypt := be.Uint32(hdr[36:])
	l1Off := be.Uint64(hdr[40:])

	if crypt != 0 {
		return nil, fmt.Errorf("%s: %w: qcow AES encryption; decrypt it first (qemu-img convert with the key)", name, blk.ErrEncrypted)
	}
	if cb < 9 || cb > 16 {
		return nil, img.corrupt("cluster bits %d out of range 9..16", cb)
	}
	if l2b < 6 || l2b > 16 {
		return nil, img.corrupt("L2 bits %d out of range 6..16", l2b)
	}
	if size > maxVirtual {
		return nil, img.corrupt("virtual size %d is implausibly large", size)
	}
	img.clusterBits, img.clusterSize = cb, 1<<cb
	img.l2Bits, img.l2Entries = l2b, 1<<l2b
	img.size = int64(size)

	// Blktap's extension header: its flags say the L1 byte order.
	if n == int64(len(hdr)) && be.Uint32(hdr[headerLen:]) == xenMagic && l1Off%4096 == 0 {
		img.xen = true
		img.xenLE = be.Uint32(hdr[headerLen+12:])&flagL1BigEndian == 0
	}

	shift := cb + l2b
	l1Size := (img.size + 1<<shift - 1) >> shift
	if l1Size*8 > maxL1Bytes {
		return nil, img.corrupt("L1 table of %d entries is too large", l1Size)
	}
	if l1Size > 0 {
		if l1Off > uint64(fileSize) || l1Size*8 > fileSize-int64(l1Off) {
			return nil, img.corrupt("L1 table at %#x (%d entries) is past the end of the file (%d bytes); truncated?", l1Off, l1Size, fileSize)
		}
		var order binary.ByteOrder = binary.BigEndian
		if img.xenLE {
			order = binary.LittleEndian
		}
		var err error
		if img.l1, err = blk.ReadUint64s(r, fileSize, order, int64(l1Off), l1Size, name, "qcow", "L1 table"); err != nil {
			return nil, err
		}
	}
	if backOff != 0 {
		if backLen == 0 || backLen > maxBackName {
			return nil, img.corrupt("backing file name length %d out of range 1..%d", backLen, maxBackName)
		}
		nb := make([]byte, backLen)
		if err := blk.ReadFull(r, fileSize, nb, int64(backOff), name, "qcow", "backing file name"); err != nil {
			return nil, err
		}
		img.backingFile = string(bytes.TrimRight(nb, "\x00"))
	}
	img.l2Cache = blk.NewTableCache[[]uint64](int(max(4, l2CacheBytes/(img.l2Entries*8))))
	img.clCache = blk.NewTableCache[[]byte](8)
	return img, nil
}

func (img *Image) loadL2(off int64) ([]uint64, error) {
	return blk.ReadUint64s(img.r, img.fileSize, binary.BigEndian, off, img.l2Entries, img.name, "qcow", "L2 table")
}

// l2Offset returns the offset of the L2 table of L1 entry i, 0 where
// the entry is unallocated.
func (img *Image) l2Offset(i int64) (int64, error) {
	off := int64(img.l1[i])
	if off < 0 || off%512 != 0 {
		return 0, img.corrupt("L1 entry %d points to invalid L2 table offset %#x", i, img.l1[i])
	}
	return off, nil
}

// entry returns the L2 entry of guest cluster c (0: unallocated).
func (img *Image) entry(c int64) (uint64, error) {
	i := c >> img.l2Bits
	if i >= int64(len(img.l1)) || img.l1[i] == 0 {
		return 0, nil
	}
	off, err := img.l2Offset(i)
	if err != nil {
		return 0, err
	}
	t, err := img.l2Cache.Get(off, func() ([]uint64, error) { return img.loadL2(off) })
	if err != nil {
		return 0, err
	}
	return t[c&(img.l2Entries-1)], nil
}

// ReadAt reads guest data; it satisfies io.ReaderAt.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	return blk.ReadUnits(img.name, p, off, img.size, img.clusterSize, img.readCluster)
}

// readCluster reads dst, which lies inside one cluster, at guest offset pos.
func (img *Image) readCluster(dst []byte, pos int64) error {
	c := pos >> img.clusterBits
	in := pos & (img.clusterSize - 1)
	e, err := img.entry(c)
	if err != nil {
		return err
	}
	switch {
	case e == 0:
		return blk.ReadBacking(img.name, img.backing, dst, pos)
	case e&oflagCompressed != 0:
		data, err := img.compressed(e, c)
		if err != nil {
			return err
		}
		copy(dst, data[in:])
		return nil
	default:
		if int64(e)%img.clusterSize != 0 {
			return img.corrupt("L2 entry for guest offset %d points to unaligned offset %#x", c*img.clusterSize, e)
		}
		return blk.ReadFull(img.r, img.fileSize, dst, int64(e)+in, img.name, "qcow", "data cluster")
	}
}

func (img *Image) compressed(e uint64, c int64) ([]byte, error) {
	mask := uint64(1)<<(63-img.clusterBits) - 1
	host := int64(e & mask)
	csize := int64(e>>(63-img.clusterBits)) & (img.clusterSize - 1)
	return img.clCache.Get(host, func() ([]byte, error) {
		bad := func(err error) error {
			return img.corrupt("compressed cluster for guest offset %d at %#x: %v", c*img.clusterSize, host, err)
		}
		if csize == 0 || host >= img.fileSize || csize > img.fileSize-host {
			return nil, bad(fmt.Errorf("%d bytes past the end of the file (%d bytes)", csize, img.fileSize))
		}
		in := make([]byte, csize)
		if err := blk.ReadFull(img.r, img.fileSize, in, host, img.name, "qcow", "compressed cluster"); err != nil {
			return nil, err
		}
		out, err := blk.Inflate(in, img.clusterSize)
		if err != nil {
			return nil, bad(err)
		}
		return out, nil
	})
}

// Extents lists the guest ranges with allocated clusters, and the backing
// image's extents under the unallocated ones.
func (img *Image) Extents(ctx context.Context) ([]blk.Extent, error) {
	l2 := func(i int64) ([]uint64, error) {
		if img.l1[i] == 0 {
			return nil, nil
		}
		off, err := img.l2Offset(i)
		if err != nil {
			return nil, err
		}
		return img.loadL2(off)
	}
	kind := func(e uint64, _ int64) (blk.Cluster, error) {
		if e == 0 {
			return blk.Unallocated, nil
		}
		return blk.Allocated, nil
	}
	return blk.TableExtents(ctx, img.backing, img.size, img.clusterSize, img.l2Entries, int64(len(img.l1)), l2, kind)
}
