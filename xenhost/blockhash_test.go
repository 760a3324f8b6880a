package xenhost_test

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// TestHashBlocks: the helper's hashes, by python and by dd+md5sum or
// sha1sum, are the MD5s (or SHA-1s cut to 128 bits) of the file's
// blocks, the last (short) block included, and a range starting
// mid-file; the file is not written.
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
	for _, hs := range []xenhost.Hashing{
		{Method: xenhost.HashAuto}, {Method: xenhost.HashPython}, {Method: xenhost.HashDD},
		{Method: xenhost.HashPython, Algo: xenhost.HashSHA1}, {Method: xenhost.HashDD, Algo: xenhost.HashSHA1},
	} {
		for _, first := range []int64{0, 5} {
			t.Run(fmt.Sprintf("%s/%s/%d", hs.Method, hs.Algo, first), func(t *testing.T) {
				var got []int64
				err := h.HashBlocks(context.Background(), img, bs, first, n-first, hs, func(i int64, sum xenhost.BlockHash) error {
					got = append(got, i)
					want := blockSum(hs.Algo, data[i*bs:min((i+1)*bs, int64(len(data)))])
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
	if err := h.HashBlocks(context.Background(), filepath.Join(srv.Dir, "nope.img"), bs, 0, 1, xenhost.Hashing{Method: xenhost.HashDD}, func(int64, xenhost.BlockHash) error { return nil }); err == nil || !strings.Contains(err.Error(), "nope.img") {
		t.Errorf("missing file: %v", err)
	}
	if err := h.HashBlocks(context.Background(), filepath.Join(srv.Dir, "nope.img"), bs, 0, 1, xenhost.Hashing{Method: xenhost.HashPython}, func(int64, xenhost.BlockHash) error { return nil }); err == nil || !strings.Contains(err.Error(), "nope.img") {
		t.Errorf("missing file: %v", err)
	}
	if after := testutil.HashFile(t, img); after != before {
		t.Error("hashing wrote the source image")
	}
}

// blockSum is what the helper should print for p: MD5, or SHA-1's
// first 16 bytes (computed here, not by xenhost.Sum, which it checks).
func blockSum(algo xenhost.HashAlgo, p []byte) xenhost.BlockHash {
	if algo == xenhost.HashSHA1 {
		s := sha1.Sum(p)
		return xenhost.BlockHash(s[:16])
	}
	return md5.Sum(p)
}

// TestProbeHash: the host names a hash its helper can do (dd: md5sum's,
// coreutils having both), HashBlocks with it agrees with xenhost.Sum, and
// Sum is MD5 or SHA-1 cut to 128 bits.
func TestProbeHash(t *testing.T) {
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, nil)
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, 3<<16)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []xenhost.HashMethod{xenhost.HashAuto, xenhost.HashPython, xenhost.HashDD} {
		algo, err := h.ProbeHash(ctx, m)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		t.Logf("method %q: %s", m, algo)
		if algo != xenhost.HashMD5 && algo != xenhost.HashSHA1 {
			t.Fatalf("%s: probe said %q", m, algo)
		}
		if m == xenhost.HashDD && algo != xenhost.HashMD5 {
			t.Errorf("dd: probe said %q, want md5 (md5sum is there)", algo)
		}
		err = h.HashBlocks(ctx, img, 1<<16, 0, 3, xenhost.Hashing{Method: m, Algo: algo}, func(i int64, sum xenhost.BlockHash) error {
			p := data[i<<16 : (i+1)<<16]
			if sum != xenhost.Sum(algo, p) || sum != blockSum(algo, p) {
				t.Errorf("%s/%s: block %d: %x, want %x", m, algo, i, sum, blockSum(algo, p))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.ProbeHash(ctx, "perl"); err == nil {
		t.Error("probe with an unknown method: no error")
	}
}

// TestHelperPython2: the helper's Python is written for RHEL 5's python
// 2.4 and for 3; where a Python 2 is at hand (pyenv's 2.7 here; Debian 12
// has none) it probes, hashes with both functions and maps zeros with it
// as the host's python, agreeing with crypto/md5 and crypto/sha1.
func TestHelperPython2(t *testing.T) {
	py2, _ := filepath.Glob("/root/.pyenv/versions/2.*/bin/python2")
	if p, err := exec.LookPath("python2"); err == nil && !strings.Contains(p, "shims") {
		py2 = append([]string{p}, py2...)
	}
	if len(py2) == 0 {
		t.Skip("no Python 2 on this machine")
	}
	used := filepath.Join(t.TempDir(), "python2-ran")
	srv := testsshd.Start(t, testsshd.Options{Programs: map[string]string{"python": "#!/bin/sh\ntouch " + used + "\nexec " + py2[0] + " \"$@\"\n"}})
	h, _ := dial(t, srv, nil)
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.img")
	const bs = 1 << 16
	data := make([]byte, 5*bs+100)
	rand.Read(data[bs : 2*bs])
	rand.Read(data[4*bs:])
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	algo, err := h.ProbeHash(ctx, xenhost.HashPython)
	if err != nil || (algo != xenhost.HashMD5 && algo != xenhost.HashSHA1) {
		t.Fatalf("probe with %s: %q, %v", py2[0], algo, err)
	}
	for _, a := range []xenhost.HashAlgo{xenhost.HashMD5, xenhost.HashSHA1} {
		n := 0
		err := h.HashBlocks(ctx, img, bs, 0, 6, xenhost.Hashing{Method: xenhost.HashPython, Algo: a}, func(i int64, sum xenhost.BlockHash) error {
			n++
			if want := blockSum(a, data[i*bs:min((i+1)*bs, int64(len(data)))]); sum != want {
				t.Errorf("%s: block %d: %x, want %x", a, i, sum, want)
			}
			return nil
		})
		if err != nil || n != 6 {
			t.Errorf("%s: %d hashes, %v", a, n, err)
		}
	}
	z, err := h.ZeroMap(ctx, img, int64(len(data)), bs, xenhost.HashPython)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(z.Zero) != "[true false true true false false]" {
		t.Errorf("zero map %v", z.Zero)
	}
	if _, err := os.Stat(used); err != nil {
		t.Errorf("the helper did not run %s: %v", py2[0], err)
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
		{"d41d8cd98f00b204e9800998ecf8427eda39a3ee  -", true}, // sha1sum's 40 digits: the first 32 count
		{"d41d8cd98f00b204e9800998ecf8427eda39a3e", false},
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
		if len(h) == 40 {
			h = h[:32]
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
		p, err := h.PrepareHashBlocks(ctx, img, bs, 2, 5, xenhost.Hashing{Method: m})
		if err != nil {
			t.Fatal(err)
		}
		unused, err := h.PrepareHashBlocks(ctx, img, bs, 0, 7, xenhost.Hashing{Method: m})
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
