package qcow2_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blktest"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
)

// smallImage writes a small qcow2 with our writer (whose output the
// writer tests prove against qemu-img check) and returns its bytes.
func smallImage(t testing.TB, compress bool) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.qcow2")
	const size = 64 << 10
	w, err := qcow2.Create(p, size, qcow2.WithClusterSize(512), qcow2.WithCompression(compress))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 4096 {
		data[i] = byte(r.Uint32())
	}
	copy(data[20000:], bytes.Repeat([]byte("qcow2 "), 1000))
	if _, err := w.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenErrors(t *testing.T) {
	plain := smallImage(t, false)
	compressed := smallImage(t, true)
	be := binary.BigEndian
	l1Off := func(b []byte) int64 { return int64(be.Uint64(b[40:])) }
	tests := []struct {
		name   string
		base   []byte
		mutate func([]byte) []byte
		want   error
		msg    string
	}{
		{"truncated-half", plain, func(b []byte) []byte { return b[:len(b)/2] }, blk.ErrCorrupt, "past the end"},
		{"truncated-header", plain, func(b []byte) []byte { return b[:40] }, blk.ErrCorrupt, "too short"},
		{"encrypted-aes", plain, func(b []byte) []byte { be.PutUint32(b[32:], 1); return b }, blk.ErrEncrypted, "encryption"},
		{"cluster-bits", plain, func(b []byte) []byte { be.PutUint32(b[20:], 40); return b }, blk.ErrCorrupt, "cluster bits"},
		{"l1-too-small", plain, func(b []byte) []byte { be.PutUint32(b[36:], 0); return b }, blk.ErrCorrupt, "L1 table has 0 entries"},
		{"l1-huge", plain, func(b []byte) []byte { be.PutUint32(b[36:], 1<<30); return b }, blk.ErrCorrupt, "too large"},
		{"l1-unaligned", plain, func(b []byte) []byte { be.PutUint64(b[40:], 7); return b }, blk.ErrCorrupt, "not cluster aligned"},
		{"l1-reserved-bits", plain, func(b []byte) []byte { be.PutUint64(b[l1Off(b):], 1<<63|512|3); return b }, blk.ErrCorrupt, "reserved bits"},
		{"marked-corrupt", plain, func(b []byte) []byte { be.PutUint64(b[72:], 2); return b }, blk.ErrCorrupt, "marked corrupt"},
		{"external-data", plain, func(b []byte) []byte { be.PutUint64(b[72:], 4); return b }, blk.ErrUnsupported, "external data"},
		{"subclusters", plain, func(b []byte) []byte { be.PutUint64(b[72:], 16); return b }, blk.ErrUnsupported, "subclusters"},
		{"unknown-feature", plain, func(b []byte) []byte { be.PutUint64(b[72:], 1<<40); return b }, blk.ErrUnsupported, "unknown"},
		{"version", plain, func(b []byte) []byte { be.PutUint32(b[4:], 4); return b }, blk.ErrUnsupported, "version 4"},
		{"backing-name-length", plain, func(b []byte) []byte { be.PutUint64(b[8:], 200); be.PutUint32(b[16:], 5000); return b }, blk.ErrCorrupt, "backing file name length"},
		{"extension-overrun", plain, func(b []byte) []byte { be.PutUint32(b[104:], 1); be.PutUint32(b[108:], 1<<20); return b }, blk.ErrCorrupt, "overruns"},
		{"compressed-garbage", compressed, func(b []byte) []byte {
			l2 := int64(be.Uint64(b[l1Off(b):]) & 0x00fffffffffffe00)
			var e uint64
			for i := l2; e&(1<<62) == 0 && i < l2+512; i += 8 {
				e = be.Uint64(b[i:])
			}
			x := 62 - (be.Uint32(b[20:]) - 8)
			host := int64(e & (1<<x - 1))
			for i := range 64 {
				b[host+int64(i)] = 0xff
			}
			return b
		}, blk.ErrCorrupt, "compressed cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(bytes.Clone(tc.base))
			img, err := qcow2.Open(bytes.NewReader(b), int64(len(b)), "bad.qcow2")
			if err == nil {
				err = blktest.ReadAll(img)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "bad.qcow2") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v: want %v naming the file and %q", err, tc.want, tc.msg)
			}
		})
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(smallImage(f, false))
	f.Add(smallImage(f, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := qcow2.Open(bytes.NewReader(b), int64(len(b)), "fuzz.qcow2")
		if err != nil {
			return
		}
		blktest.ReadAll(img)
	})
}
