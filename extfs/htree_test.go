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
	for _, k := range []fsKind{fsKinds[3], fsKinds[1]} { // 1 KiB blocks: the root index fills up soon
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
			split := n
			// Keep going until the root index is full and a full leaf makes
			// the directory drop its index.
			for ; n < 8000; n++ {
				if indexed, _ = htreeState(t, fsys, "big"); !indexed {
					break
				}
				if err := fsys.WriteFile(fmt.Sprintf("big/new-%05d", n), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if indexed {
				t.Fatalf("index still present after %d inserts", n)
			}
			t.Logf("index dropped after %d inserts", n)
			if err := fsys.WriteFile("big/after-drop", []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			fsys.Close()
			e2fsck(t, img)
			for _, i := range []int{0, split, n / 2, n - 1} {
				name := fmt.Sprintf("big/new-%05d", i)
				if got := debugfsCat(t, img, name); string(got) != "x" {
					t.Errorf("%s: %q", name, got)
				}
			}
			if got := debugfsCat(t, img, "big/after-drop"); string(got) != "x" {
				t.Errorf("big/after-drop: %q", got)
			}
			t.Logf("%d inserts split the root from %d to %d leaves", split, before, after)
		})
	}
}
