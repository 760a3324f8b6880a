package extfs

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var update = flag.Bool("update", false, "regenerate the seed images under testdata/")

// Small images the fuzzers mutate: a block-mapped ext2, an ext4 with
// extents, uninit_bg and an htree directory, and an ext3 whose journal
// needs recovery (too small an image gets no journal from mke2fs).
var seedImages = []struct {
	file    string
	args    []string
	size    string
	journal string // debugfs script leaving the journal to be recovered
}{
	{"ext2.img.gz", []string{"-t", "ext2", "-b", "1024", "-N", "64", "-O", "^resize_inode"}, "256K", ""},
	{"ext4.img.gz", []string{"-t", "ext4", "-b", "1024", "-N", "128", "-O", "^metadata_csum,^64bit,uninit_bg,^resize_inode"}, "1536K", ""},
	{"journal.img.gz", []string{"-t", "ext3", "-b", "1024", "-N", "64", "-J", "size=1", "-O", "^resize_inode"}, "4M",
		"jo\njw -b 1400 BLK\njw -b 1401 BLK\njw -r 1401\njw -b 1403 BLK\njc\n"},
}

// memDev is an in-memory diskimg.Device.
type memDev []byte

func (m memDev) Size() int64 { return int64(len(m)) }
func (m memDev) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (m memDev) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m)) {
		return 0, io.ErrShortWrite
	}
	return copy(m[off:], p), nil
}

// TestSeedImages regenerates the fuzz seed images with -update and checks
// that the committed ones open and pass e2fsck.
func TestSeedImages(t *testing.T) {
	for _, s := range seedImages {
		gz := filepath.Join("testdata", s.file)
		if *update {
			tree := filepath.Join(t.TempDir(), "tree")
			for i := range 40 {
				p := filepath.Join(tree, "dir", fmt.Sprintf("entry-with-a-long-name-%03d", i))
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, bytes.Repeat([]byte{byte('a' + i%26)}, 100*i), 0o644)
			}
			os.WriteFile(filepath.Join(tree, "file"), bytes.Repeat([]byte("seventy kilobytes of text\n"), 2800), 0o644)
			os.Symlink("dir/entry-with-a-long-name-001", filepath.Join(tree, "link"))
			isl, _ := os.Create(filepath.Join(tree, "islands"))
			for i := range 12 {
				isl.WriteAt([]byte("island"), int64(i)*8192)
			}
			isl.Close()
			os.Symlink("/"+string(bytes.Repeat([]byte("long/"), 20)), filepath.Join(tree, "slowlink"))
			img := filepath.Join(t.TempDir(), "seed.img")
			args := append([]string{"-q", "-F", "-E", "lazy_itable_init=1", "-U", "3a0fe6b1-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "-d", tree}, s.args...)
			cmd := exec.Command("mke2fs", append(args, img, s.size)...)
			cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
			}
			exec.Command("e2fsck", "-fyD", img).Run()
			if s.journal != "" {
				blk := filepath.Join(t.TempDir(), "blk")
				os.WriteFile(blk, bytes.Repeat([]byte("journaled block "), 64), 0o644)
				cmd := exec.Command("debugfs", "-w", "-f", "-", img)
				cmd.Stdin = strings.NewReader(strings.ReplaceAll(s.journal, "BLK", blk))
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("debugfs: %v\n%s", err, out)
				}
			}
			raw, _ := os.ReadFile(img)
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(raw)
			zw.Close()
			if err := os.WriteFile(gz, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		raw := loadSeed(t, s.file)
		img := filepath.Join(t.TempDir(), "check.img")
		os.WriteFile(img, raw, 0o644)
		if s.journal == "" {
			e2fsck(t, img)
		}
		fsys, err := Open(memDev(raw), ReadOnly())
		if err != nil {
			t.Fatal(err)
		}
		if n := exercise(fsys); n < 40 {
			t.Errorf("%s: walked only %d entries", s.file, n)
		}
	}
}

func loadSeed(t testing.TB, name string) []byte {
	t.Helper()
	return testutil.ReadGz(t, filepath.Join("testdata", name))
}

// exercise reads everything it can reach (bounded, since a corrupt
// directory may contain its own ancestors) and returns how many entries it
// saw. Errors are expected; panics and hangs are the bugs.
func exercise(fsys *FS) int {
	seen := 0
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if depth > 6 || seen > 500 {
			return
		}
		entries, err := fsys.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			seen++
			p := path.Join(dir, e.Name())
			if !fs.ValidPath(p) {
				continue
			}
			fi, err := fsys.Lstat(p)
			if err != nil {
				continue
			}
			_ = fi.Sys().(*guestfs.Stat)
			if names, err := fsys.ListXattr(p); err == nil {
				for _, n := range names {
					fsys.GetXattr(p, n)
				}
			}
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				fsys.ReadLink(p)
				fsys.Stat(p)
			case fi.IsDir():
				walk(p, depth+1)
			default:
				if f, err := fsys.Open(p); err == nil {
					io.Copy(io.Discard, io.LimitReader(f.(io.Reader), 4<<20))
					f.Close()
				}
			}
		}
	}
	walk(".", 0)
	return seen
}

// mutateWrite runs a few edits on a writable FS; on corrupt input they may
// fail, but must not panic.
func mutateWrite(fsys *FS) {
	fsys.WriteFile("file", []byte("replaced"), 0o644)
	fsys.WriteFile("dir/new-entry", []byte("new"), 0o644)
	fsys.Mkdir("newdir", 0o755)
	fsys.Symlink("file", "dir/newlink")
	fsys.Rename("dir/entry-with-a-long-name-002", "dir/renamed")
	fsys.Remove("dir/entry-with-a-long-name-003")
	fsys.Remove("link")
	fsys.Chmod("file", 0o600)
	fsys.SetXattr("file", "security.selinux", []byte("system_u:object_r:etc_t:s0\x00"))
	fsys.SetXattr("dir", "user.big", bytes.Repeat([]byte("v"), 300))
	fsys.RemoveXattr("file", "security.selinux")
}

// regionOf returns where one kind of metadata lives in a seed image.
func regions(t testing.TB, raw []byte) map[string][2]int64 {
	t.Helper()
	fsys, err := Open(memDev(raw), ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	bs := int64(fsys.bs)
	out := map[string][2]int64{
		"super": {superOffset, superSize},
		"gdt":   {int64(fsys.sb.descBlock(0)) * bs, bs},
	}
	if fsys.sb.journalInum != 0 && fsys.sb.compat&compatHasJournal != 0 {
		jin, _ := fsys.readInode(fsys.sb.journalInum)
		m, err := fsys.mapInode(jin)
		if err != nil {
			t.Fatal(err)
		}
		for lb := uint64(0); lb < 12; lb++ {
			if e := m.lookup(lb); e != nil {
				out[fmt.Sprintf("journal:%d", lb)] = [2]int64{int64(e.phys+lb-e.logical) * bs, bs}
			}
		}
	}
	for _, name := range []string{".", "dir", "file", "slowlink", "islands"} {
		fi, err := fsys.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		ino := uint32(fi.Sys().(*guestfs.Stat).Ino)
		blk, off, _ := fsys.inodeLoc(ino)
		out["inode:"+name] = [2]int64{int64(blk)*bs + int64(off), int64(fsys.sb.inodeSize)}
		in, _ := fsys.readInode(ino)
		m, err := fsys.mapInode(in)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range m.extents {
			if i < 3 {
				out[fmt.Sprintf("data:%s:%d", name, i)] = [2]int64{int64(e.phys) * bs, bs}
			}
		}
		for i, b := range m.meta {
			out[fmt.Sprintf("meta:%s:%d", name, i)] = [2]int64{int64(b) * bs, bs}
		}
	}
	return out
}

// fuzzRegion applies patch inside one metadata region of a seed image.
func fuzzRegion(f *testing.F, kinds ...string) {
	var seeds [][]byte
	var regs []map[string][2]int64
	for _, s := range seedImages {
		raw := loadSeed(f, s.file)
		seeds = append(seeds, raw)
		regs = append(regs, regions(f, raw))
	}
	var list [][3]int64 // seed, start, length
	for i, r := range regs {
		for name, span := range r {
			for _, k := range kinds {
				if len(name) >= len(k) && name[:len(k)] == k {
					list = append(list, [3]int64{int64(i), span[0], span[1]})
				}
			}
		}
	}
	if len(list) == 0 {
		f.Fatal("no region to fuzz")
	}
	for i := range list {
		f.Add(uint16(i), uint16(0), []byte{0xff})
		f.Add(uint16(i), uint16(4), []byte{0, 0, 0, 0})
		f.Add(uint16(i), uint16(24), []byte{0x10, 0x27})
	}
	f.Fuzz(func(t *testing.T, which, off uint16, patch []byte) {
		r := list[int(which)%len(list)]
		img := bytes.Clone(seeds[r[0]])
		start := r[1] + int64(off)%r[2]
		copy(img[start:min(start+r[2]-int64(off)%r[2], int64(len(img)))], patch)
		fsys, err := Open(memDev(img), ReadOnly())
		if err == nil {
			exercise(fsys)
		}
		if fsys, err := Open(memDev(img)); err == nil {
			mutateWrite(fsys)
			exercise(fsys)
		}
	})
}

// FuzzSuperblock feeds arbitrary bytes to the superblock parser.
func FuzzSuperblock(f *testing.F) {
	for _, s := range seedImages {
		raw := loadSeed(f, s.file)
		f.Add(raw[superOffset : superOffset+superSize])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := parseSuperblock(b)
		if err != nil {
			return
		}
		n := sb.groupCount()
		for g := uint32(0); g < min(n, 64); g++ {
			sb.hasSuper(g)
			sb.groupMetaBlocks(g)
			sb.groupBlocks(g)
		}
		sb.descBlock(0)
	})
}

// FuzzImageSuperblock corrupts the superblock and descriptors of a real image.
func FuzzImageSuperblock(f *testing.F) { fuzzRegion(f, "super", "gdt") }

// FuzzInode corrupts inodes and their block maps / extent trees.
func FuzzInode(f *testing.F) { fuzzRegion(f, "inode:", "meta:") }

// FuzzJournal corrupts the journal of an image that needs recovery.
func FuzzJournal(f *testing.F) { fuzzRegion(f, "journal:") }

// FuzzDirectory corrupts directory blocks, linear and htree.
func FuzzDirectory(f *testing.F) { fuzzRegion(f, "data:.", "data:dir") }
