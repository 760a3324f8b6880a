package pipeline

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestDeclaredRawIsNotSniffed: a disk the Xen config declares raw (file:,
// phy:, tap:aio:) is read as raw even when the guest wrote an image header
// into it, so its content cannot send xen2kvm after a backing file on the
// host; a disk with no declared format is detected from its content.
func TestDeclaredRawIsNotSniffed(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	open := realParts().source.Open
	for _, tc := range []struct {
		declared, wantFormat string
		wantSize             int64
	}{
		{"raw", "raw", fi.Size()},
		{"", "qcow2", 64 << 20},
	} {
		src, err := open(img, tc.declared)
		if err != nil {
			t.Fatalf("declared %q: %v", tc.declared, err)
		}
		if src.Format() != tc.wantFormat || src.Size() != tc.wantSize {
			t.Errorf("declared %q: read as %s of %d bytes, want %s of %d", tc.declared, src.Format(), src.Size(), tc.wantFormat, tc.wantSize)
		}
		src.Close()
	}
}
