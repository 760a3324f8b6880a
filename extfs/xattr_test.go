package extfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// debugfsEAGet returns the exact value debugfs reads for attr of path, and
// whether it found one.
func debugfsEAGet(t testing.TB, img, path, attr string) ([]byte, bool) {
	t.Helper()
	testutil.NeedTool(t, "debugfs")
	out := filepath.Join(t.TempDir(), "ea")
	msg, _ := exec.Command("debugfs", "-R", fmt.Sprintf("ea_get -f %s /%s %s", out, path, attr), img).CombinedOutput()
	b, err := os.ReadFile(out)
	if err != nil {
		if strings.Contains(string(msg), "not found") || strings.Contains(string(msg), "No such") || os.IsNotExist(err) {
			return nil, false
		}
		t.Fatalf("debugfs ea_get %s %s: %v\n%s", path, attr, err, msg)
	}
	return b, true
}

// debugfsEAList returns the attribute names debugfs lists for path.
func debugfsEAList(t testing.TB, img, path string) []string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "ea_list /"+path, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs ea_list %s: %v\n%s", path, err, out)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, " ("); i > 0 && !strings.HasPrefix(l, "debugfs") {
			names = append(names, l[:i])
		}
	}
	slices.Sort(names)
	return names
}

func TestXattrWriteMatchesDebugfs(t *testing.T) {
	label := []byte("system_u:object_r:etc_t:s0\x00")
	big := pattern(700, 9)               // never fits in an inode: goes to the block
	mid := bytes.Repeat([]byte("m"), 90) // fits a 256-byte inode alone
	for _, k := range fsKinds {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, buildTreeOpts(t, 0, false), 16)
			fsys, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			set := func(name, attr string, v []byte) {
				t.Helper()
				if err := fsys.SetXattr(name, attr, v); err != nil {
					t.Fatalf("SetXattr(%s, %s): %v", name, attr, err)
				}
			}
			set("etc/fstab", "security.selinux", label)
			set("etc/fstab", "user.big", big)
			set("etc/fstab", "trusted.mid", mid)
			set("one", "security.selinux", label)
			set("etc/fstab.link", "security.selinux", []byte("system_u:object_r:etc_t:s0\x00"))
			set("var/empty/dir", "security.selinux", []byte("system_u:object_r:var_t:s0\x00"))
			set("empty", "user.gone", []byte("soon"))
			if err := fsys.RemoveXattr("empty", "user.gone"); err != nil {
				t.Fatal(err)
			}
			// Replacing a value with a longer one, twice.
			set("one", "security.selinux", []byte("system_u:object_r:admin_home_t:s0\x00"))
			set("one", "user.b", pattern(300, 1))
			set("one", "user.b", pattern(20, 2))
			if err := fsys.RemoveXattr("one", "user.none"); !errors.Is(err, guestfs.ErrNoXattr) {
				t.Errorf("RemoveXattr of a missing attribute: %v, want ErrNoXattr", err)
			}
			if err := fsys.SetXattr("one", "bogus.name", nil); err == nil {
				t.Error("SetXattr in an unknown namespace succeeded")
			}
			e2fsck(t, img)
			want := map[string]map[string][]byte{
				"etc/fstab": {"security.selinux": label, "user.big": big, "trusted.mid": mid,
					"user.xen2kvm": []byte("fstab-attr")},
				"etc/hosts":      {"user.xen2kvm": []byte("kept")},
				"one":            {"security.selinux": []byte("system_u:object_r:admin_home_t:s0\x00"), "user.b": pattern(20, 2)},
				"etc/fstab.link": {"security.selinux": label},
				"var/empty/dir":  {"security.selinux": []byte("system_u:object_r:var_t:s0\x00")},
				"empty":          {},
			}
			for path, attrs := range want {
				var names []string
				for a, v := range attrs {
					names = append(names, a)
					got, ok := debugfsEAGet(t, img, path, a)
					if !ok || !bytes.Equal(got, v) {
						t.Errorf("debugfs reads %s %s = %q (found %v), want %q", path, a, trunc(got), ok, trunc(v))
					}
				}
				slices.Sort(names)
				if got := debugfsEAList(t, img, path); !slices.Equal(got, names) {
					t.Errorf("debugfs lists %s attributes %v, want %v", path, got, names)
				}
				// Our reader, on a fresh read-only open, agrees.
				ro, err := Open(openDev(t, img, false), ReadOnly())
				if err != nil {
					t.Fatal(err)
				}
				if got, err := ro.ListXattr(path); err != nil || !slices.Equal(got, names) {
					t.Errorf("ListXattr(%s) = %v, %v; want %v", path, got, err, names)
				}
				for a, v := range attrs {
					if got, err := ro.GetXattr(path, a); err != nil || !bytes.Equal(got, v) {
						t.Errorf("GetXattr(%s, %s) = %q, %v", path, a, trunc(got), err)
					}
				}
			}
			// File data is untouched.
			if got := debugfsCat(t, img, "etc/fstab"); !bytes.HasPrefix(got, []byte("/dev/xvda1")) {
				t.Errorf("fstab content changed: %q", got)
			}
			// Removing everything frees the block: e2fsck counts blocks.
			for _, a := range []string{"user.big", "trusted.mid", "security.selinux", "user.xen2kvm"} {
				if err := fsys.RemoveXattr("etc/fstab", a); err != nil {
					t.Fatal(err)
				}
			}
			e2fsck(t, img)
			if got := debugfsEAList(t, img, "etc/fstab"); len(got) != 0 {
				t.Errorf("after removing all, debugfs lists %v", got)
			}
			// Deleting a file with an attribute block frees it too.
			set("one", "user.big", big)
			if err := fsys.Remove("one"); err != nil {
				t.Fatal(err)
			}
			e2fsck(t, img)
		})
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return append(b[:40:40], "..."...)
	}
	return b
}

// Attributes debugfs writes (in-inode and in a block) read back the same.
func TestXattrReadDebugfsWritten(t *testing.T) {
	testutil.NeedTool(t, "debugfs")
	for _, k := range fsKinds {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, buildTreeOpts(t, 0, false), 16)
			vals := map[string]string{
				"security.selinux": "unconfined_u:object_r:user_home_t:s0",
				"user.a":           "1",
				"user.long":        strings.Repeat("L", 600),
			}
			for a, v := range vals {
				vf := filepath.Join(t.TempDir(), "v")
				if err := os.WriteFile(vf, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("debugfs", "-w", "-R", fmt.Sprintf("ea_set -f %s /data/block %s", vf, a), img).CombinedOutput(); err != nil {
					t.Fatalf("debugfs ea_set: %v\n%s", err, out)
				}
			}
			fsys, err := Open(openDev(t, img, false), ReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			for a, v := range vals {
				got, err := fsys.GetXattr("data/block", a)
				if err != nil || string(got) != v {
					t.Errorf("GetXattr(%s) = %q, %v; want %q", a, trunc(got), err, trunc([]byte(v)))
				}
			}
			if _, err := fsys.GetXattr("data/block", "user.none"); !errors.Is(err, guestfs.ErrNoXattr) {
				t.Errorf("missing attribute: %v, want ErrNoXattr", err)
			}
		})
	}
}

// A block shared by two inodes (refcount 2) is copied, not changed, when
// one of them changes its attributes.
func TestXattrSharedBlock(t *testing.T) {
	k := fsKinds[1] // 128-byte inodes: everything goes to the block
	img := mkfs(t, k, buildTreeOpts(t, 0, false), 16)
	fsys, err := Open(openDev(t, img, true))
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.SetXattr("etc/fstab", "security.selinux", []byte("system_u:object_r:etc_t:s0\x00")); err != nil {
		t.Fatal(err)
	}
	// Share fstab's block with data/block, as the kernel does for equal
	// attribute sets.
	err = fsys.update("share", "data/block", func() error {
		a, err := fsys.walk("share", "etc/fstab", false)
		if err != nil {
			return err
		}
		b, err := fsys.walk("share", "data/block", false)
		if err != nil {
			return err
		}
		blk := a.in.fileACL()
		raw, err := fsys.readBlock(blk)
		if err != nil {
			return err
		}
		put32(raw, 4, 2)
		fsys.writeBlock(blk, raw)
		if err := fsys.storeXattrs(b.in, nil); err != nil {
			return err
		}
		put32(b.in.raw, 0x68, uint32(blk))
		fsys.addInodeBlocks(b.in, 1)
		return fsys.writeInode(b.in)
	})
	if err != nil {
		t.Fatal(err)
	}
	e2fsck(t, img)
	if err := fsys.SetXattr("data/block", "security.selinux", []byte("system_u:object_r:var_t:s0\x00")); err != nil {
		t.Fatal(err)
	}
	e2fsck(t, img)
	if got, _ := debugfsEAGet(t, img, "etc/fstab", "security.selinux"); string(got) != "system_u:object_r:etc_t:s0\x00" {
		t.Errorf("the other user of the shared block sees %q", got)
	}
	if got, _ := debugfsEAGet(t, img, "data/block", "security.selinux"); string(got) != "system_u:object_r:var_t:s0\x00" {
		t.Errorf("changed inode reads %q", got)
	}
	// Dropping the last attribute of one user leaves the other's intact.
	if err := fsys.RemoveXattr("etc/fstab", "security.selinux"); err != nil {
		t.Fatal(err)
	}
	e2fsck(t, img)
}

func TestXattrHash(t *testing.T) {
	// ext4_xattr_hash_entry by hand for a 1-char name and a 4-byte value:
	// name: h = 'a'; value word 0x64636261 ("abcd"): h = h<<16 ^ h>>16 ^ v.
	h := uint32('a')
	h = h<<16 ^ h>>16 ^ 0x64636261
	if got := xattrHash("a", []byte("abcd")); got != h {
		t.Errorf("xattrHash = %#x, want %#x", got, h)
	}
}

// FuzzXattrArea feeds arbitrary attribute areas (in-inode and block form)
// to the parser; what parses must pack and parse back the same.
func FuzzXattrArea(f *testing.F) {
	area := make([]byte, 1024)
	packXattrs(area, xattrHeaderSize, []xattr{{6, "selinux", []byte("system_u:object_r:etc_t:s0\x00")}, {1, "a", []byte("v")}, {1, "empty", nil}})
	f.Add(area, uint8(xattrHeaderSize))
	small := make([]byte, 96)
	packXattrs(small, 0, []xattr{{6, "selinux", []byte("x")}})
	f.Add(small, uint8(0))
	f.Add([]byte{1, 1, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 'x', 0, 0, 0}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, first uint8) {
		if int(first) > len(b) {
			return
		}
		xs, err := parseXattrEntries(b, int(first), "fuzz")
		if err != nil {
			return
		}
		out := make([]byte, len(b))
		n := packXattrs(out, int(first), xs)
		back, err := parseXattrEntries(out, int(first), "repacked")
		if err != nil {
			t.Fatalf("repacked area does not parse: %v", err)
		}
		if len(back) != n {
			t.Fatalf("packed %d entries, parsed %d", n, len(back))
		}
		for i := range back {
			if back[i].index != xs[i].index || back[i].name != xs[i].name || !bytes.Equal(back[i].value, xs[i].value) {
				t.Fatalf("entry %d changed by pack/parse: %+v vs %+v", i, back[i], xs[i])
			}
		}
	})
}

// Equal attribute sets share one block (as the kernel shares them), and
// e2fsck agrees with the reference counts through changes and deletes.
func TestXattrBlocksShared(t *testing.T) {
	img := mkfs(t, fsKinds[1], buildTreeOpts(t, 0, false), 16) // 128-byte inodes
	fsys, err := Open(openDev(t, img, true))
	if err != nil {
		t.Fatal(err)
	}
	label := []byte("system_u:object_r:etc_t:s0\x00")
	files := []string{"etc/fstab", "etc/hosts", "one", "empty", "bin/tool"}
	for _, f := range files[2:] {
		if err := fsys.SetXattr(f, "security.selinux", label); err != nil {
			t.Fatal(err)
		}
	}
	acl := func(name string) uint64 {
		r, err := fsys.walk("t", name, false)
		if err != nil {
			t.Fatal(err)
		}
		return r.in.fileACL()
	}
	if a, b, c := acl("one"), acl("empty"), acl("bin/tool"); a == 0 || a != b || b != c {
		t.Errorf("equal labels use blocks %d, %d, %d; want one shared block", a, b, c)
	}
	e2fsck(t, img)
	if err := fsys.SetXattr("empty", "security.selinux", []byte("system_u:object_r:var_t:s0\x00")); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove("one"); err != nil {
		t.Fatal(err)
	}
	e2fsck(t, img)
	if got, _ := debugfsEAGet(t, img, "bin/tool", "security.selinux"); !bytes.Equal(got, label) {
		t.Errorf("bin/tool label %q", got)
	}
	if err := fsys.RemoveXattr("bin/tool", "security.selinux"); err != nil {
		t.Fatal(err)
	}
	e2fsck(t, img)
}
