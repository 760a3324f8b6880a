package xenhost_test

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// TestHashBlocks: the helper's hashes, by python and by dd+md5sum, are
// the MD5s of the file's blocks, the last (short) block included, and a
// range starting mid-file; the file is not written.
func TestHashBlocks(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	const bs = 64 << 10
	data := make([]byte, 20*bs+1234)
	rand.Read(data[:7*bs])
	rand.Read(data[12*bs:]) // blocks 7..11 zero
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := testutil.HashFile(t, img)
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, nil)
	n := int64(len(data)+bs-1) / bs
	for _, m := range []xenhost.HashMethod{xenhost.HashAuto, xenhost.HashPython, xenhost.HashDD} {
		for _, first := range []int64{0, 5} {
			t.Run(string(m)+"/"+string(rune('0'+first)), func(t *testing.T) {
				var got []int64
				err := h.HashBlocks(context.Background(), img, bs, first, n-first, m, func(i int64, sum xenhost.BlockHash) error {
					got = append(got, i)
					want := md5.Sum(data[i*bs : min((i+1)*bs, int64(len(data)))])
					if sum != want {
						t.Errorf("block %d: %x, want %x", i, sum, want)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(got)) != n-first || got[0] != first {
					t.Errorf("got blocks %v, want %d..%d", got, first, n-1)
				}
			})
		}
	}
	if err := h.HashBlocks(context.Background(), filepath.Join(srv.Dir, "nope.img"), bs, 0, 1, xenhost.HashDD, func(int64, xenhost.BlockHash) error { return nil }); err == nil || !strings.Contains(err.Error(), "nope.img") {
		t.Errorf("missing file: %v", err)
	}
	if err := h.HashBlocks(context.Background(), filepath.Join(srv.Dir, "nope.img"), bs, 0, 1, xenhost.HashPython, func(int64, xenhost.BlockHash) error { return nil }); err == nil || !strings.Contains(err.Error(), "nope.img") {
		t.Errorf("missing file: %v", err)
	}
	if after := testutil.HashFile(t, img); after != before {
		t.Error("hashing wrote the source image")
	}
}

func TestParseHashLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{"d41d8cd98f00b204e9800998ecf8427e", true},
		{"d41d8cd98f00b204e9800998ecf8427e  -", true},
		{"D41D8CD98F00B204E9800998ECF8427E", true},
		{"d41d8cd98f00b204e9800998ecf8427", false},
		{"d41d8cd98f00b204e9800998ecf8427x", false},
		{"", false},
		{"Traceback (most recent call last):", false},
	} {
		sum, err := xenhost.ParseHashLine(tc.line)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.line, err)
		}
		if tc.ok && sum != xenhost.BlockHash(md5.Sum(nil)) {
			t.Errorf("%q: %x", tc.line, sum)
		}
	}
}

func FuzzParseHashLine(f *testing.F) {
	f.Add("d41d8cd98f00b204e9800998ecf8427e  -")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, line string) {
		sum, err := xenhost.ParseHashLine(line)
		if err != nil {
			return
		}
		h := line
		if i := strings.IndexByte(h, ' '); i >= 0 {
			h = h[:i]
		}
		if !strings.EqualFold(fmt.Sprintf("%x", sum), h) {
			t.Errorf("%q parsed as %x", line, sum)
		}
	})
}

// TestPrepareHashBlocks: a prepared helper waits without opening the
// disk (it is prepared before the file exists) and, told to go, hashes
// as HashBlocks does; one closed unrun goes away quietly.
func TestPrepareHashBlocks(t *testing.T) {
	const bs = 64 << 10
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, nil)
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "later.img")
	for _, m := range []xenhost.HashMethod{xenhost.HashAuto, xenhost.HashDD} {
		p, err := h.PrepareHashBlocks(ctx, img, bs, 2, 5, m)
		if err != nil {
			t.Fatal(err)
		}
		unused, err := h.PrepareHashBlocks(ctx, img, bs, 0, 7, m)
		if err != nil {
			t.Fatal(err)
		}
		unused.Close()
		data := make([]byte, 7*bs-100)
		rand.Read(data[:4*bs])
		if err := os.WriteFile(img, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var got []int64
		err = p.Run(ctx, func(i int64, sum xenhost.BlockHash) error {
			got = append(got, i)
			if want := md5.Sum(data[i*bs : min((i+1)*bs, int64(len(data)))]); sum != want {
				t.Errorf("%s: block %d: %x, want %x", m, i, sum, want)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if fmt.Sprint(got) != "[2 3 4 5 6]" {
			t.Errorf("%s: hashed blocks %v, want 2..6", m, got)
		}
		os.Remove(img)
	}
}
