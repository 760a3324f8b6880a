package xenhost_test

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// TestZeroMap: python's one character per block and dd+md5sum's hashes
// give the same map, true exactly for the all-zero blocks (a block with a
// single non-zero byte, and a short last block, are data), and the
// disk's Extents then list only the data blocks; the file is not
// written.
func TestZeroMap(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	const bs = 64 << 10
	data := make([]byte, 20*bs+1234)
	rand.Read(data[:3*bs])
	data[9*bs+bs/2] = 1            // block 9: one byte
	rand.Read(data[14*bs : 15*bs]) // block 14
	data[len(data)-1] = 7          // block 20, short
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := testutil.HashFile(t, img)
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, nil)
	want := make([]bool, 21)
	for i := range want {
		want[i] = !(i < 3 || i == 9 || i == 14 || i == 20)
	}
	for _, m := range []xenhost.HashMethod{xenhost.HashPython, xenhost.HashDD} {
		t.Run(string(m), func(t *testing.T) {
			z, err := h.ZeroMap(context.Background(), img, int64(len(data)), bs, m)
			if err != nil {
				t.Fatal(err)
			}
			if z.Method != string(m) {
				t.Errorf("method %q, want %q", z.Method, m)
			}
			if len(z.Zero) != len(want) {
				t.Fatalf("%d blocks, want %d", len(z.Zero), len(want))
			}
			for i := range want {
				if z.Zero[i] != want[i] {
					t.Errorf("block %d: zero %v, want %v", i, z.Zero[i], want[i])
				}
			}
			if got, w := z.ZeroBytes(), int64(15*bs); got != w {
				t.Errorf("ZeroBytes %d, want %d", got, w)
			}
			d, err := h.OpenDisk(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			d.SetZeroMap(z)
			ext, err := d.Extents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wantExt := []xenhost.Extent{{Offset: 0, Length: 3 * bs}, {Offset: 9 * bs, Length: bs}, {Offset: 14 * bs, Length: bs}, {Offset: 20 * bs, Length: 1234}}
			if len(ext) != len(wantExt) {
				t.Fatalf("extents %v, want %v", ext, wantExt)
			}
			for i := range ext {
				if ext[i] != wantExt[i] {
					t.Errorf("extent %d: %v, want %v", i, ext[i], wantExt[i])
				}
			}
		})
	}
	if _, err := h.ZeroMap(context.Background(), filepath.Join(srv.Dir, "nope.img"), bs, bs, xenhost.HashPython); err == nil {
		t.Error("missing file: no error")
	}
	if after := testutil.HashFile(t, img); after != before {
		t.Error("the zero map wrote the source image")
	}
}

// TestZeroMapCopy copies a sparse disk off the host with diskimg's copy
// engine: with the zero map the output equals the source (qemu-img
// compare) and exactly the data blocks were read over SSH; when the
// helper cannot run (dd, forced, fails on the host: python cannot be
// taken away here, root's .bashrc puts pyenv's shims first on the PATH),
// ZeroMap fails (the caller then reads everything) and the copy still
// equals the source.
func TestZeroMapCopy(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	const mib = 1 << 20
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, mib)
	rand.Read(buf)
	var data int64
	for _, blk := range []int64{0, 1, 7, 30, 31, 63} {
		if _, err := f.WriteAt(buf, blk*mib); err != nil {
			t.Fatal(err)
		}
		data += mib
	}
	// Zeros written out (not a hole) in block 40: also left out.
	if _, err := f.WriteAt(make([]byte, mib), 40*mib); err != nil {
		t.Fatal(err)
	}
	f.Close()
	const size = 64 * mib
	before := testutil.HashFile(t, img)
	shim := "#!/bin/sh\nexit 127\n"
	for _, tc := range []struct {
		name     string
		method   xenhost.HashMethod
		programs map[string]string
	}{
		{"auto", xenhost.HashAuto, nil},
		{"nohelper", xenhost.HashDD, map[string]string{"dd": shim}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testsshd.Start(t, testsshd.Options{Programs: tc.programs})
			h, _ := dial(t, srv, nil)
			ctx := context.Background()
			z, zerr := h.ZeroMap(ctx, img, size, mib, tc.method)
			if tc.programs != nil {
				if zerr == nil {
					t.Fatalf("ZeroMap ran on a host where dd cannot run (method %s, %d blocks)", z.Method, len(z.Zero))
				}
			} else if zerr != nil {
				t.Fatal(zerr)
			}
			d, err := h.OpenDisk(ctx, img)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if z != nil {
				d.SetZeroMap(z)
			}
			ri, err := diskimg.OpenReader(d, d.Size(), img, diskimg.FormatRaw)
			if err != nil {
				t.Fatal(err)
			}
			read0 := d.BytesRead()
			out := filepath.Join(t.TempDir(), "out.qcow2")
			if err := diskimg.Convert(ctx, ri, out, diskimg.OutputQCOW2); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", img, out).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img compare: %v\n%s", err, b)
			}
			want := data
			if z == nil {
				want = size
			}
			if got := d.BytesRead() - read0; got != want {
				t.Errorf("the copy read %d bytes over SSH, want %d", got, want)
			}
		})
	}
	if testutil.HashFile(t, img) != before {
		t.Error("the source changed")
	}
}
