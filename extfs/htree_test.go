package extfs

import (
	"fmt"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestfs"
)

// htreeInfo reports whether a directory is indexed, its index depth and
// how many entries its root holds.
func htreeInfo(t *testing.T, fsys *FS, name string) (indexed bool, levels, rootCount int) {
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
		return false, 0, 0
	}
	phys, err := fsys.dirBlockPhys(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fsys.readBlock(phys)
	if err != nil {
		t.Fatal(err)
	}
	return true, int(b[30]), int(le16(b, 24+8+2))
}

// TestHtreeInsert adds entries to an indexed directory: they go into the
// right leaves, full leaves are split, a full root grows a second level of
// index nodes, full nodes are split, and e2fsck's htree checks pass.
func TestHtreeInsert(t *testing.T) {
	for _, k := range []fsKind{fsKinds[3], fsKinds[1]} { // 1 KiB blocks: the root fills up soon
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, sharedTree(t), 64)
			indexDirs(t, img)
			fsys, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			indexed, levels, before := htreeInfo(t, fsys, "big")
			if !indexed || levels != 0 {
				t.Fatalf("big: indexed %v, levels %d; want a one-level index to start from", indexed, levels)
			}
			n := 0
			insert := func() {
				t.Helper()
				if err := fsys.WriteFile(fmt.Sprintf("big/new-%05d", n), []byte("x"), 0o644); err != nil {
					t.Fatalf("insert %d: %v", n, err)
				}
				n++
			}
			for _, phase := range []struct {
				name string
				done func(levels, count int) bool
			}{
				{"leaf splits", func(l, c int) bool { return l > 0 || c > before+2 }},
				{"second level", func(l, c int) bool { return l == 1 }},
				{"node split", func(l, c int) bool { return l == 1 && c >= 2 }},
			} {
				for start := n; ; {
					indexed, levels, count := htreeInfo(t, fsys, "big")
					if !indexed {
						t.Fatalf("%s: the index was dropped after %d inserts", phase.name, n)
					}
					if phase.done(levels, count) {
						t.Logf("%s after %d more inserts (levels %d, root entries %d)", phase.name, n-start, levels, count)
						break
					}
					if n > 20000 {
						t.Fatalf("%s: not reached after %d inserts", phase.name, n)
					}
					insert()
				}
			}
			// Every name is still found through the index.
			for i := 0; i < n; i += 97 {
				if _, err := fsys.Stat(fmt.Sprintf("big/new-%05d", i)); err != nil {
					t.Fatal(err)
				}
			}
			fsys.Close()
			e2fsck(t, img)
			for _, i := range []int{0, n / 3, n / 2, n - 1} {
				name := fmt.Sprintf("big/new-%05d", i)
				if got := debugfsCat(t, img, name); string(got) != "x" {
					t.Errorf("%s: %q", name, got)
				}
			}
		})
	}
}

// TestHtreeDropIndex covers the fallback: when the index cannot grow, the
// directory loses its index flag and stays a valid linear directory.
func TestHtreeDropIndex(t *testing.T) {
	img := mkfs(t, fsKinds[3], sharedTree(t), 64)
	indexDirs(t, img)
	fsys, err := Open(openDev(t, img, true))
	if err != nil {
		t.Fatal(err)
	}
	fsys.maxIndexLevels = 1
	n := 0
	for ; n < 20000; n++ {
		if indexed, _, _ := htreeInfo(t, fsys, "big"); !indexed {
			break
		}
		if err := fsys.WriteFile(fmt.Sprintf("big/new-%05d", n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if indexed, _, _ := htreeInfo(t, fsys, "big"); indexed {
		t.Fatalf("index still present after %d inserts", n)
	}
	if err := fsys.WriteFile("big/after-drop", []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys.Close()
	e2fsck(t, img)
	for _, name := range []string{"big/new-00000", fmt.Sprintf("big/new-%05d", n-1), "big/after-drop", "big/entry-00500"} {
		if got := debugfsCat(t, img, name); len(got) == 0 {
			t.Errorf("%s: empty", name)
		}
	}
}
