package testutil

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// MemDev is an in-memory read-write disk (a diskimg.Device) over B.
// Writes must lie inside B; reads past its end return io.EOF.
//
//	dev := &testutil.MemDev{B: make([]byte, 1<<20)}
type MemDev struct{ B []byte }

// Size returns len(d.B).
func (d *MemDev) Size() int64 { return int64(len(d.B)) }

// ReadAt reads from d.B, returning io.EOF with a short read at its end.
func (d *MemDev) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(d.B)) {
		return 0, io.EOF
	}
	n := copy(p, d.B[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes into d.B; a write reaching outside it fails.
func (d *MemDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d.B)) {
		return 0, errors.New("memDev: write out of range")
	}
	return copy(d.B[off:], p), nil
}

// NeedRoot skips the test (fails it under CI) with the message unless it
// runs as root, as loop devices and device-mapper need.
func NeedRoot(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, format, args...)
	}
}

// Run runs a command and returns its standard output; when it fails the
// test fails with the command line and its standard error. Like RunErr it
// sets LVM_SUPPRESS_FD_WARNINGS=1 so the lvm tools do not complain about
// the test binary's inherited descriptors.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := RunErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunErr is Run returning the failure (command line, error and standard
// error) instead of failing the test.
func RunErr(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// Loop attaches the file at path to a free loop device (losetup --find
// --show, with opts such as "--offset", "1048576" added) and returns the
// device's path. The device is detached when the test ends; a failure to
// detach fails the test. The caller checks for root (NeedRoot) first.
//
//	loop := testutil.Loop(t, img, "--sizelimit", "5242880")
func Loop(t testing.TB, path string, opts ...string) string {
	t.Helper()
	losetup := NeedTool(t, "losetup")
	args := append([]string{"--find", "--show"}, opts...)
	loop := strings.TrimSpace(string(Run(t, losetup, append(args, path)...)))
	t.Cleanup(func() {
		if _, err := RunErr(losetup, "-d", loop); err != nil {
			t.Errorf("detaching %s: %v", loop, err)
		}
	})
	return loop
}

// ReadGz returns the gunzipped contents of a file such as a test image
// under testdata/.
func ReadGz(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WriteGz writes b gzipped (best compression) to path, for -update runs
// that regenerate test images.
func WriteGz(t testing.TB, path string, b []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// SparseFile creates path (replacing a file there) as a sparse file of
// size bytes and returns it open for writing; the caller closes it.
func SparseFile(t testing.TB, path string, size int64) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return f
}
