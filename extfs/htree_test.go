package extfs

import (
	"fmt"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestfs"
)

// htreeState reports whether a directory is indexed and how many leaves
// its root index points at.
func htreeState(t *testing.T, fsys *FS, name string) (bool, int) {
	t.Helper()
	fi, err := fsys.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	in, err := fsys.readInode(uint32(fi.Sys().(*guestfs.Stat).Ino))
	if err != nil {
		t.Fatal(err)
	}
	if in.flags()&flagIndex == 0 {
		return false, 0
	}
	phys, err := fsys.dirBlockPhys(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fsys.readBlock(phys)
	if err != nil {
		t.Fatal(err)
	}
	return true, int(le16(b, 24+8+2))
}

// TestHtreeInsert adds entries to an indexed directory: they go into the
// right leaves, full leaves are split while the root has room, and the
// result passes e2fsck's htree checks.
func TestHtreeInsert(t *testing.T) {
	for _, k := range []fsKind{fsKinds[3], fsKinds[2]} {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, sharedTree(t), 64)
			indexDirs(t, img)
			fsys, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			indexed, before := htreeState(t, fsys, "big")
			if !indexed {
				t.Fatal("big is not indexed")
			}
			n := 0
			for {
				if err := fsys.WriteFile(fmt.Sprintf("big/new-%05d", n), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				n++
				if _, count := htreeState(t, fsys, "big"); count > before+2 || n > 2000 {
					break
				}
			}
			indexed, after := htreeState(t, fsys, "big")
			if !indexed || after <= before+2 {
				t.Fatalf("after %d inserts: indexed %v, leaves %d -> %d; want splits", n, indexed, before, after)
			}
			fsys.Close()
			e2fsck(t, img)
			for _, i := range []int{0, n / 2, n - 1} {
				name := fmt.Sprintf("big/new-%05d", i)
				if got := debugfsCat(t, img, name); string(got) != "x" {
					t.Errorf("%s: %q", name, got)
				}
			}
			t.Logf("%d inserts split the root from %d to %d leaves", n, before, after)
		})
	}
}
