package qcow_test

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blktest"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow"
)

// blktapImage lays out an image the way RHEL 5 blktap's qcow_create and
// get_cluster_offset do: 4 KiB clusters, 512-entry L2 tables, the Xen
// extension header, the L1 table at 4096, and each new L2 table followed
// by its whole preallocated extent of 512 clusters.
type blktapImage struct {
	tiny        bool // 512-byte clusters and 64-entry L2 tables, for fuzz seeds
	size        int64
	littleL1    bool             // old tapdisk: L1 in host byte order
	clusters    map[int64][]byte // guest cluster -> 4 KiB of data
	compressed  map[int64][]byte // guest cluster -> data stored deflated
	backingFile string
}

const (
	cs      = 4096
	l2n     = 512
	extent  = cs * l2n // guest bytes per L2 table
	l1Start = 4096
)

func (b blktapImage) build(t testing.TB) []byte {
	cs, l2n, extent, cb, l2b := int64(cs), int64(l2n), int64(extent), byte(12), byte(9)
	if b.tiny {
		cs, l2n, cb, l2b = 512, 64, 9, 6
		extent = cs * l2n
	}
	be := binary.BigEndian
	l1n := (b.size + extent - 1) / extent
	file := make([]byte, l1Start+((l1n*8+4095)&^4095))
	hdr := file[:64]
	copy(hdr, "QFI\xfb")
	be.PutUint32(hdr[4:], 1)
	if b.backingFile != "" {
		be.PutUint64(hdr[8:], 64)
		be.PutUint32(hdr[16:], uint32(len(b.backingFile)))
		copy(file[64:], b.backingFile)
	}
	be.PutUint64(hdr[24:], uint64(b.size))
	hdr[32], hdr[33] = cb, l2b
	be.PutUint64(hdr[40:], l1Start)
	copy(hdr[48:], "XEN\xfb")
	be.PutUint32(hdr[56:], uint32(l2n)) // min_cluster_alloc
	flags := uint32(1)                  // SPARSE_FILE
	if !b.littleL1 {
		flags |= 2 // EXTHDR_L1_BIG_ENDIAN
	}
	be.PutUint32(hdr[60:], flags)

	l1 := make([]uint64, l1n)
	touched := map[int64]bool{}
	for c := range b.clusters {
		touched[c/l2n] = true
	}
	for c := range b.compressed {
		touched[c/l2n] = true
	}
	for i := range l1n {
		if !touched[i] {
			continue
		}
		for int64(len(file))%cs != 0 { // blktap rounds new L2 tables up to a cluster
			file = append(file, 0)
		}
		l2off := int64(len(file))
		l1[i] = uint64(l2off)
		l2 := make([]byte, cs)
		ext := make([]byte, extent)
		for j := range int64(l2n) {
			be.PutUint64(l2[j*8:], uint64(l2off+cs+j*cs))
			if d, ok := b.clusters[i*l2n+j]; ok {
				copy(ext[j*cs:], d)
			}
		}
		file = append(file, l2...)
		file = append(file, ext...)
		for j := range int64(l2n) {
			d, ok := b.compressed[i*l2n+j]
			if !ok {
				continue
			}
			var z bytes.Buffer
			zw, _ := flate.NewWriter(&z, flate.BestCompression)
			zw.Write(d)
			zw.Close()
			off := int64(len(file))
			file = append(file, z.Bytes()...)
			e := uint64(1)<<63 | uint64(z.Len())<<(63-cb) | uint64(off)
			be.PutUint64(file[l2off+j*8:], e)
		}
	}
	for i, v := range l1 {
		if b.littleL1 {
			binary.LittleEndian.PutUint64(file[l1Start+i*8:], v)
		} else {
			be.PutUint64(file[l1Start+i*8:], v)
		}
	}
	return file
}

func randomCluster(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, cs)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func (b blktapImage) want() []byte {
	out := make([]byte, b.size)
	for c, d := range b.clusters {
		copy(out[c*cs:], d)
	}
	for c, d := range b.compressed {
		copy(out[c*cs:], d)
	}
	return out
}

func sampleImage(little bool) blktapImage {
	return blktapImage{
		size:     5*extent + 3*cs,
		littleL1: little,
		clusters: map[int64][]byte{
			0: randomCluster(1), 1: randomCluster(2), 700: randomCluster(3),
			5*l2n + 2: randomCluster(4),
		},
		compressed: map[int64][]byte{3: bytes.Repeat([]byte("blktap "), cs/7+1)[:cs]},
	}
}

type memBacking struct {
	*bytes.Reader
}

func (m memBacking) Size() int64 { return m.Reader.Size() }
func (m memBacking) Extents(context.Context) ([]blk.Extent, error) {
	return []blk.Extent{{Offset: 0, Length: m.Reader.Size()}}, nil
}

func TestBlktapImages(t *testing.T) {
	for _, little := range []bool{false, true} {
		name := map[bool]string{false: "big-endian-L1", true: "little-endian-L1"}[little]
		t.Run(name, func(t *testing.T) {
			b := sampleImage(little)
			file := b.build(t)
			img, err := qcow.Open(bytes.NewReader(file), int64(len(file)), "disk.qcow")
			if err != nil {
				t.Fatal(err)
			}
			if !img.Xen() || img.Size() != b.size {
				t.Fatalf("Xen()=%v Size()=%d", img.Xen(), img.Size())
			}
			got := make([]byte, b.size)
			if n, err := img.ReadAt(got, 0); n != len(got) || err != nil {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if !bytes.Equal(got, b.want()) {
				t.Fatal("content differs")
			}
			ext, err := img.Extents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// Blktap preallocates whole extents: L2 tables 0 and 5.
			wantExt := []blk.Extent{{Offset: 0, Length: 2 * extent}, {Offset: 5 * extent, Length: 3 * cs}}
			if len(ext) != 2 || ext[0] != wantExt[0] || ext[1] != wantExt[1] {
				t.Errorf("Extents = %v, want %v", ext, wantExt)
			}
		})
	}
}

func TestBlktapBacking(t *testing.T) {
	b := blktapImage{size: 2 * extent, clusters: map[int64][]byte{1: randomCluster(9)}, backingFile: "/var/lib/xen/images/base.img"}
	b.size = 2 * extent
	file := b.build(t)
	img, err := qcow.Open(bytes.NewReader(file), int64(len(file)), "child.qcow")
	if err != nil {
		t.Fatal(err)
	}
	if img.BackingFile() != "/var/lib/xen/images/base.img" {
		t.Fatalf("BackingFile() = %q", img.BackingFile())
	}
	base := bytes.Repeat([]byte{0xb5}, extent+100) // shorter than the child
	img.SetBacking(memBacking{bytes.NewReader(base)})
	got := make([]byte, b.size)
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, b.size)
	copy(want, base)
	// Clusters 0..511 are preallocated zeros in the child's first extent:
	// blktap maps them, so they hide the backing file.
	clear(want[:extent])
	copy(want[cs:], randomCluster(9))
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
}

func TestOpenErrors(t *testing.T) {
	good := sampleImage(false).build(t)
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   error
		msg    string
	}{
		{"truncated-l1", func(b []byte) []byte { return b[:l1Start+4] }, blk.ErrCorrupt, "past the end"},
		{"truncated-data", func(b []byte) []byte { return b[:len(b)/2] }, blk.ErrCorrupt, "past the end"},
		{"encrypted", func(b []byte) []byte { binary.BigEndian.PutUint32(b[36:], 1); return b }, blk.ErrEncrypted, "AES"},
		{"cluster-bits", func(b []byte) []byte { b[32] = 30; return b }, blk.ErrCorrupt, "cluster bits"},
		{"version", func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 2); return b }, blk.ErrUnsupported, "version 2"},
		{"huge-size", func(b []byte) []byte { binary.BigEndian.PutUint64(b[24:], 1<<60); return b }, blk.ErrCorrupt, "implausibly"},
		{"bad-compressed", func(b []byte) []byte {
			// Point cluster 3's compressed entry at the header.
			l2 := int64(binary.BigEndian.Uint64(b[l1Start:]))
			binary.BigEndian.PutUint64(b[l2+3*8:], 1<<63|100<<(63-12)|16)
			return b
		}, blk.ErrCorrupt, "compressed cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(bytes.Clone(good))
			img, err := qcow.Open(bytes.NewReader(b), int64(len(b)), "bad.qcow")
			if err == nil {
				buf := make([]byte, img.Size())
				_, err = img.ReadAt(buf, 0)
				if err == nil {
					_, err = img.Extents(context.Background())
				}
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "bad.qcow") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v: want %v naming the file and %q", err, tc.want, tc.msg)
			}
		})
	}
}

func FuzzOpen(f *testing.F) {
	for _, little := range []bool{false, true} {
		tiny := blktapImage{tiny: true, littleL1: little, size: 100 * 512,
			clusters:   map[int64][]byte{1: randomCluster(3)[:512], 70: []byte("tiny")},
			compressed: map[int64][]byte{2: make([]byte, 512)}}
		f.Add(tiny.build(f))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := qcow.Open(bytes.NewReader(b), int64(len(b)), "fuzz.qcow")
		if err != nil {
			return
		}
		blktest.ReadAll(img)
	})
}
