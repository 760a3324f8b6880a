package xenhost_test

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
// coreutils having both) and its CPU count, HashBlocks with it agrees
// with xenhost.Sum, and Sum is MD5 or SHA-1 cut to 128 bits.
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
	out, err := exec.Command("getconf", "_NPROCESSORS_ONLN").Output()
	if err != nil {
		t.Fatal(err)
	}
	cpus, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	for _, m := range []xenhost.HashMethod{xenhost.HashAuto, xenhost.HashPython, xenhost.HashDD} {
		p, err := h.ProbeHash(ctx, m)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		algo := p.Algo
		t.Logf("method %q: %s, %d CPUs", m, algo, p.CPUs)
		if p.CPUs != cpus || cpus < 1 {
			t.Errorf("%s: probe said %d CPUs, getconf %d", m, p.CPUs, cpus)
		}
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
// has none) it probes, hashes and compares with both functions and maps
// zeros with it as the host's python, agreeing with crypto/md5 and
// crypto/sha1.
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
	p, err := h.ProbeHash(ctx, xenhost.HashPython)
	if err != nil || (p.Algo != xenhost.HashMD5 && p.Algo != xenhost.HashSHA1) || p.CPUs < 1 {
		t.Fatalf("probe with %s: %+v, %v", py2[0], p, err)
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
	for _, a := range []xenhost.HashAlgo{xenhost.HashMD5, xenhost.HashSHA1} {
		img, data, was := diffImage(t, a, bs)
		checkDiff(t, a, bs, 0, data, func(fn func(int64, xenhost.BlockDiff) error) error {
			return h.DiffBlocks(ctx, img, bs, 0, 8, xenhost.Hashing{Method: xenhost.HashPython, Algo: a}, was, fn)
		})
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

// diffImage writes a disk of 7 blocks and a short one and returns it with
// the hashes the blocks "had" (those of another disk): blocks 0, 2 and 5
// unchanged, 1 changed, 3 zeros now and data before, 4 zeros now and
// then, 6 unknown before (a zero BlockHash), 7 (short) changed.
func diffImage(t *testing.T, algo xenhost.HashAlgo, bs int) (string, []byte, []xenhost.BlockHash) {
	data := make([]byte, 7*bs+300)
	rand.Read(data[:3*bs])
	rand.Read(data[5*bs:])
	old := make([]byte, len(data))
	copy(old, data)
	old[bs+10] ^= 0xff
	rand.Read(old[3*bs : 4*bs])
	old[len(old)-1] ^= 0xff
	n := (len(data) + bs - 1) / bs
	was := make([]xenhost.BlockHash, n)
	for i := range was {
		was[i] = blockSum(algo, old[i*bs:min((i+1)*bs, len(old))])
	}
	was[6] = xenhost.BlockHash{}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return img, data, was
}

// checkDiff runs diff (DiffBlocks or a prepared helper's RunDiff) on the
// blocks first.. of diffImage's disk and checks every answer.
func checkDiff(t *testing.T, algo xenhost.HashAlgo, bs int, first int64, data []byte, diff func(fn func(int64, xenhost.BlockDiff) error) error) {
	t.Helper()
	want := map[int64]string{0: "same", 1: "data", 2: "same", 3: "zero", 4: "same", 5: "same", 6: "data", 7: "data"}
	var got []int64
	err := diff(func(i int64, b xenhost.BlockDiff) error {
		got = append(got, i)
		block := data[i*int64(bs) : min((i+1)*int64(bs), int64(len(data)))]
		kind := "data"
		switch {
		case b.Same:
			kind = "same"
		case b.Zero:
			kind = "zero"
		case b.Sum != blockSum(algo, block) || string(b.Data) != string(block):
			t.Errorf("block %d: sent %d bytes hashing %x, want %d hashing %x", i, len(b.Data), b.Sum, len(block), blockSum(algo, block))
		}
		if kind != want[i] {
			t.Errorf("block %d: %s, want %s", i, kind, want[i])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8-int(first) || got[0] != first {
		t.Errorf("answers for blocks %v, want %d..7", got, first)
	}
}

// TestDiffBlocks: the host compares the blocks with the hashes they had
// and answers each with the same, zeros, or its new hash and bytes, the
// short last block included, from a range starting mid-file and with a
// helper prepared ahead; the bytes sent count as read; nothing is written
// on the host. dd cannot compare, nor a host without python
// (ErrNeedsPython).
func TestDiffBlocks(t *testing.T) {
	const bs = 64 << 10
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, nil)
	ctx := context.Background()
	for _, hs := range []xenhost.Hashing{{}, {Method: xenhost.HashPython, Algo: xenhost.HashSHA1}} {
		img, data, was := diffImage(t, hs.Algo, bs)
		before := testutil.HashFile(t, img)
		for _, first := range []int64{0, 3} {
			t.Run(fmt.Sprintf("%s/%s/%d", hs.Method, hs.Algo, first), func(t *testing.T) {
				read := h.BytesRead()
				checkDiff(t, hs.Algo, bs, first, data, func(fn func(int64, xenhost.BlockDiff) error) error {
					return h.DiffBlocks(ctx, img, bs, first, 8-first, hs, was[first:], fn)
				})
				if got, want := h.BytesRead()-read, int64(2*bs+300); first == 0 && got != want {
					t.Errorf("%d bytes read, want %d (blocks 1, 6 and 7)", got, want)
				}
			})
		}
		t.Run(fmt.Sprintf("%s/%s/prepared", hs.Method, hs.Algo), func(t *testing.T) {
			p, err := h.PrepareDiffBlocks(ctx, img, bs, 0, 8, hs, was)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Run(ctx, func(int64, xenhost.BlockHash) error { return nil }); err == nil {
				t.Error("a diff helper ran as a hash helper")
			}
			checkDiff(t, hs.Algo, bs, 0, data, func(fn func(int64, xenhost.BlockDiff) error) error { return p.RunDiff(ctx, fn) })
		})
		if testutil.HashFile(t, img) != before {
			t.Error("comparing wrote the source image")
		}
	}
	// A short last block of zeros is zeros too: "z" against another
	// hash, the same against the hash of its zeros.
	short := filepath.Join(t.TempDir(), "short.img")
	sdata := make([]byte, 2*bs+100)
	rand.Read(sdata[:2*bs])
	if err := os.WriteFile(short, sdata, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, same := range []bool{false, true} {
		was := make([]xenhost.BlockHash, 3)
		if same {
			was[2] = blockSum("", make([]byte, 100))
		}
		var kinds []string
		err := h.DiffBlocks(ctx, short, bs, 0, 3, xenhost.Hashing{}, was, func(i int64, b xenhost.BlockDiff) error {
			kinds = append(kinds, fmt.Sprintf("same=%v zero=%v %d bytes", b.Same, b.Zero, len(b.Data)))
			return nil
		})
		want := fmt.Sprintf("[same=false zero=false %d bytes same=false zero=false %d bytes same=%v zero=%v 0 bytes]", bs, bs, same, !same)
		if err != nil || fmt.Sprint(kinds) != want {
			t.Errorf("short zero block: %v, %v; want %s", kinds, err, want)
		}
	}

	img, _, was := diffImage(t, "", bs)
	nop := func(int64, xenhost.BlockDiff) error { return nil }
	if err := h.DiffBlocks(ctx, img, bs, 0, 8, xenhost.Hashing{Method: xenhost.HashDD}, was, nop); !errors.Is(err, xenhost.ErrNeedsPython) {
		t.Errorf("DiffBlocks with dd: %v, want ErrNeedsPython", err)
	}
	if err := h.DiffBlocks(ctx, img, bs, 0, 8, xenhost.Hashing{}, was[:3], nop); err == nil {
		t.Error("DiffBlocks with fewer hashes than blocks: no error")
	}
	if err := h.DiffBlocks(ctx, filepath.Join(srv.Dir, "nope.img"), bs, 0, 8, xenhost.Hashing{}, was, nop); err == nil || !strings.Contains(err.Error(), "nope.img") {
		t.Errorf("missing file: %v", err)
	}
	bare := testsshd.Start(t, testsshd.Options{NoPython: true})
	hb, _ := dial(t, bare, nil)
	for _, prepared := range []bool{false, true} {
		var err error
		if prepared {
			var p *xenhost.PreparedHash
			if p, err = hb.PrepareDiffBlocks(ctx, img, bs, 0, 8, xenhost.Hashing{}, was); err == nil {
				err = p.RunDiff(ctx, nop)
			}
		} else {
			err = hb.DiffBlocks(ctx, img, bs, 0, 8, xenhost.Hashing{}, was, nop)
		}
		if !errors.Is(err, xenhost.ErrNeedsPython) {
			t.Errorf("a host without python (prepared %v): %v, want ErrNeedsPython", prepared, err)
		}
	}
	// Its dd and md5sum still hash.
	n := 0
	if err := hb.HashBlocks(ctx, img, bs, 0, 8, xenhost.Hashing{}, func(int64, xenhost.BlockHash) error { n++; return nil }); err != nil || n != 8 {
		t.Errorf("hashing without python: %d hashes, %v", n, err)
	}
}
