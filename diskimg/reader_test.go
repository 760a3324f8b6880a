package diskimg_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestOpenReader reads images made by qemu-img through a plain
// io.ReaderAt (as disks on a Xen host are read): the content equals what
// qemu-img converts them to, a backing file is refused, and a declared
// format that the content contradicts is an error.
func TestOpenReader(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	data := bytes.Repeat([]byte("xen2kvm!"), 1<<17) // 1 MiB
	f := testutil.SparseFile(t, raw, 16<<20)
	if _, err := f.WriteAt(data, 5<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	q2 := filepath.Join(dir, "img.qcow2")
	testutil.Run(t, qemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, q2)
	want, _ := os.ReadFile(raw)
	for _, tc := range []struct{ path, format, detected string }{
		{q2, "", diskimg.FormatQCOW2},
		{q2, diskimg.FormatQCOW2, diskimg.FormatQCOW2},
		{raw, diskimg.FormatRaw, diskimg.FormatRaw},
		{q2, diskimg.FormatRaw, diskimg.FormatRaw}, // declared raw: not interpreted
	} {
		f, err := os.Open(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		img, err := diskimg.OpenReader(f, st.Size(), "host:"+tc.path, tc.format)
		if err != nil {
			t.Fatalf("%s as %q: %v", tc.path, tc.format, err)
		}
		if img.Format() != tc.detected {
			t.Errorf("%s as %q: format %s", tc.path, tc.format, img.Format())
		}
		if tc.detected == diskimg.FormatRaw && tc.path == q2 {
			continue
		}
		got := make([]byte, img.Size())
		if _, err := img.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s as %q: content differs", tc.path, tc.format)
		}
		ext, err := img.Extents(context.Background())
		if err != nil || len(ext) == 0 {
			t.Errorf("%s: extents %v, %v", tc.path, ext, err)
		}
		if _, err := img.WriteAt([]byte{1}, 0); !errors.Is(err, diskimg.ErrReadOnly) {
			t.Errorf("WriteAt: %v", err)
		}
	}
	over := filepath.Join(dir, "over.qcow2")
	testutil.Run(t, qemuImg, "create", "-f", "qcow2", "-b", q2, "-F", "qcow2", over)
	f, _ = os.Open(over)
	defer f.Close()
	st, _ := f.Stat()
	if _, err := diskimg.OpenReader(f, st.Size(), "host:"+over, ""); !errors.Is(err, diskimg.ErrUnsupported) {
		t.Errorf("backing file: %v, want ErrUnsupported", err)
	}
	rf, _ := os.Open(raw)
	defer rf.Close()
	if _, err := diskimg.OpenReader(rf, 16<<20, "host:"+raw, diskimg.FormatQCOW2); !errors.Is(err, diskimg.ErrCorrupt) {
		t.Errorf("raw declared qcow2: %v, want ErrCorrupt", err)
	}
}
