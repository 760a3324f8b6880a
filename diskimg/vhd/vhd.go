// Package vhd reads Microsoft VHD (Virtual PC / "vpc") disk images, fixed
// and dynamic, the formats Xen's `tap:vhd:` and `tap2:vhd:` disks use.
// Differencing images are refused with a clear error.
//
//	img, err := vhd.Open(f, fileSize, f.Name())
//	if err != nil { ... }
//	fmt.Println(img.Type(), img.Size())
//	n, err := img.ReadAt(buf, off)
//
// The virtual size is the footer's current size field, which is what
// Xen's blktap, Hyper-V and qemu-img (for the images it writes) use.
package vhd

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

const (
	footerLen     = 512
	dynHeaderLen  = 1024
	unusedBAT     = 0xffffffff
	maxBATEntries = 1 << 24 // 32 TiB at 2 MiB blocks
	maxBlockSize  = 256 << 20
	maxVirtual    = 1 << 56

	typeFixed        = 2
	typeDynamic      = 3
	typeDifferencing = 4
)

// Image reads a VHD image. It is safe for concurrent use.
type Image struct {
	r        io.ReaderAt
	fileSize int64
	name     string

	diskType   uint32
	size       int64
	blockSize  int64
	bitmapSize int64
	bat        []uint32
}

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// Type is "fixed" or "dynamic".
func (img *Image) Type() string {
	if img.diskType == typeFixed {
		return "fixed"
	}
	return "dynamic"
}

func (img *Image) corrupt(msg string, args ...any) error {
	return blk.Corruptf(img.name, "vhd", msg, args...)
}

// checksum is the one's complement of the byte sum of b, skipping the
// four checksum bytes at skip.
func checksum(b []byte, skip int) uint32 {
	var s uint32
	for i, c := range b {
		if i >= skip && i < skip+4 {
			continue
		}
		s += uint32(c)
	}
	return ^s
}

// Open parses the footer (and for dynamic images the dynamic header and
// block allocation table) of the VHD image r of fileSize bytes.
func Open(r io.ReaderAt, fileSize int64, name string) (*Image, error) {
	img := &Image{r: r, fileSize: fileSize, name: name}
	if fileSize < footerLen {
		return nil, img.corrupt("file is only %d bytes, too short for a footer", fileSize)
	}
	foot := make([]byte, footerLen)
	if err := blk.ReadFull(r, fileSize, foot, fileSize-footerLen, name, "vhd", "footer"); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(foot, []byte("conectix")) {
		// A dynamic image keeps a copy of the footer at offset 0; use it
		// to say what is wrong with the end of the file.
		if err := blk.ReadFull(r, fileSize, foot, 0, name, "vhd", "footer copy"); err == nil && bytes.HasPrefix(foot, []byte("conectix")) {
			return nil, img.corrupt("footer missing at the end of the file (only the copy at offset 0 is there); truncated?")
		}
		return nil, img.corrupt("no \"conectix\" footer")
	}
	be := binary.BigEndian
	if got, want := be.Uint32(foot[64:]), checksum(foot, 64); got != want {
		return nil, img.corrupt("footer checksum %#x, computed %#x", got, want)
	}
	size := be.Uint64(foot[48:])
	if size > maxVirtual {
		return nil, img.corrupt("virtual size %d is implausibly large", size)
	}
	img.size = int64(size)
	img.diskType = be.Uint32(foot[60:])
	switch img.diskType {
	case typeFixed:
		if img.size > fileSize-footerLen {
			return nil, img.corrupt("fixed disk of %d bytes in a %d byte file; truncated?", img.size, fileSize)
		}
		return img, nil
	case typeDynamic:
	case typeDifferencing:
		return nil, fmt.Errorf("%s: %w: differencing VHD; merge it into its parent first (vhd-util coalesce or qemu-img convert)", name, blk.ErrUnsupported)
	default:
		return nil, img.corrupt("unknown disk type %d", img.diskType)
	}

	dynOff := be.Uint64(foot[16:])
	if dynOff > uint64(fileSize) {
		return nil, img.corrupt("dynamic header offset %#x is past the end of the file (%d bytes)", dynOff, fileSize)
	}
	dyn := make([]byte, dynHeaderLen)
	if err := blk.ReadFull(r, fileSize, dyn, int64(dynOff), name, "vhd", "dynamic header"); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(dyn, []byte("cxsparse")) {
		return nil, img.corrupt("no \"cxsparse\" dynamic header at %#x", dynOff)
	}
	if got, want := be.Uint32(dyn[36:]), checksum(dyn, 36); got != want {
		return nil, img.corrupt("dynamic header checksum %#x, computed %#x", got, want)
	}
	batOff := be.Uint64(dyn[16:])
	entries := be.Uint32(dyn[28:])
	bs := be.Uint32(dyn[32:])
	if bs < 512 || bs > maxBlockSize || bs&(bs-1) != 0 {
		return nil, img.corrupt("block size %d is not a power of two from 512 to %d", bs, maxBlockSize)
	}
	img.blockSize = int64(bs)
	img.bitmapSize = (int64(bs)/512/8 + 511) &^ 511
	need := (img.size + img.blockSize - 1) / img.blockSize
	if int64(entries) < need || entries > maxBATEntries {
		return nil, img.corrupt("block table has %d entries, %d needed for %d bytes", entries, need, img.size)
	}
	if batOff > uint64(fileSize) || need*4 > fileSize-int64(batOff) {
		return nil, img.corrupt("block table at %#x is past the end of the file (%d bytes); truncated?", batOff, fileSize)
	}
	buf := make([]byte, need*4)
	if err := blk.ReadFull(r, fileSize, buf, int64(batOff), name, "vhd", "block table"); err != nil {
		return nil, err
	}
	img.bat = make([]uint32, need)
	for i := range img.bat {
		img.bat[i] = be.Uint32(buf[i*4:])
	}
	return img, nil
}

// ReadAt reads guest data; it satisfies io.ReaderAt.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if img.diskType == typeFixed {
		// One unit: the data is the file's first size bytes.
		return blk.ReadUnits(img.name, p, off, img.size, img.size, func(dst []byte, pos int64) error {
			return blk.ReadFull(img.r, img.fileSize, dst, pos, img.name, "vhd", "data")
		})
	}
	return blk.ReadUnits(img.name, p, off, img.size, img.blockSize, func(dst []byte, pos int64) error {
		b := pos / img.blockSize
		in := pos % img.blockSize
		if img.bat[b] == unusedBAT {
			clear(dst)
			return nil
		}
		return blk.ReadFull(img.r, img.fileSize, dst, int64(img.bat[b])*512+img.bitmapSize+in, img.name, "vhd", fmt.Sprintf("data block %d", b))
	})
}

// Extents lists the allocated blocks (the whole disk for a fixed image).
func (img *Image) Extents(ctx context.Context) ([]blk.Extent, error) {
	var out blk.List
	if img.diskType == typeFixed {
		out.Add(0, img.size)
		return out, nil
	}
	for b, e := range img.bat {
		if b%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if e != unusedBAT {
			off := int64(b) * img.blockSize
			out.Add(off, min(img.blockSize, img.size-off))
		}
	}
	return out, nil
}
