package extfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/overlay"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// Writes through a copy-on-write overlay leave the image byte-identical,
// and base + overlay is a clean filesystem holding the edits.
func TestWritesThroughOverlay(t *testing.T) {
	for _, k := range []fsKind{fsKinds[1], fsKinds[3]} {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, buildTree(t, 300), 64)
			indexDirs(t, img)
			before := testutil.HashFile(t, img)
			base := openDev(t, img, false) // opened read-only: a write would fail
			ov := overlay.New(base)
			defer ov.Close()
			fsys, err := Open(ov)
			if err != nil {
				t.Fatal(err)
			}
			fstab := []byte(strings.Repeat("LABEL=/ / ext3 defaults 1 1\n", 30))
			steps := []struct {
				name string
				err  error
			}{
				{"write", fsys.WriteFile("etc/fstab", fstab, 0o644)},
				{"rename", fsys.Rename("etc/hosts", "etc/hosts.orig")},
				{"symlink", fsys.Symlink("hosts.orig", "etc/hosts")},
				{"mkdir", fsys.Mkdir("etc/modprobe.d", 0o755)},
				{"create", fsys.WriteFile("etc/modprobe.d/virtio.conf", []byte("alias scsi_hostadapter virtio_blk\n"), 0o644)},
				{"remove", fsys.Remove("data/odd")},
				{"big", fsys.WriteFile("data/big20m", pattern(5<<20, 42), 0o644)},
			}
			for _, s := range steps {
				if s.err != nil {
					t.Fatalf("%s: %v", s.name, s.err)
				}
			}
			if got, err := fsys.ReadFile("etc/hosts"); err != nil || string(got) != "127.0.0.1 localhost\n" {
				t.Errorf("etc/hosts through the new symlink: %q, %v", got, err)
			}
			if testutil.HashFile(t, img) != before {
				t.Fatal("the base image changed")
			}
			// Materialise base + overlay and let e2fsprogs judge it.
			merged := filepath.Join(t.TempDir(), "merged.img")
			out, err := os.Create(merged)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, io.NewSectionReader(ov, 0, ov.Size())); err != nil {
				t.Fatal(err)
			}
			out.Close()
			e2fsck(t, merged)
			if got := debugfsCat(t, merged, "etc/fstab"); !bytes.Equal(got, fstab) {
				t.Errorf("debugfs cat etc/fstab: %q", got)
			}
			if got := debugfsCat(t, merged, "data/big20m"); !bytes.Equal(got, pattern(5<<20, 42)) {
				t.Errorf("debugfs cat data/big20m differs")
			}
		})
	}
}
