package initrd_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// plainCpio archives dir with GNU cpio, uncompressed.
func plainCpio(t *testing.T, dir string) []byte {
	t.Helper()
	testutil.NeedTool(t, "cpio")
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -o -H newc")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	return out
}

// TestCompressionsAndEarlyCpio builds dracut-style initrds with the host's
// tools: an uncompressed early cpio (CPU microcode) and then the main
// archive compressed with gzip, zstd, xz (CRC32, as the kernel wants),
// lzma or bzip2. Rebuild adds a driver; dracut's skipcpio, the host's
// decompressor and GNU cpio read the result back: the early cpio is
// unchanged, the main archive has the driver. bzip2 is read but cannot
// be written, and says so.
func TestCompressionsAndEarlyCpio(t *testing.T) {
	skipcpio := "/usr/lib/dracut/skipcpio"
	if _, err := os.Stat(skipcpio); err != nil {
		testutil.Unavailable(t, "no %s (dracut-core)", skipcpio)
	}
	rel := "2.6.32-431.el6.x86_64"
	early := t.TempDir()
	os.MkdirAll(filepath.Join(early, "kernel/x86/microcode"), 0o755)
	os.WriteFile(filepath.Join(early, "early_cpio"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(early, "kernel/x86/microcode/GenuineIntel.bin"), bytes.Repeat([]byte{0xa5}, 3000), 0o644)
	earlyCpio := plainCpio(t, early)
	main := t.TempDir()
	for n, c := range map[string]string{
		"init":                       "#!/bin/sh\n# dracut mainloop\n",
		"usr/lib/dracut/modules.txt": "base\n",
		"usr/lib/modules/" + rel + "/modules.dep":   "kernel/fs/ext4/ext4.ko:\n",
		"usr/lib/modules/" + rel + "/modules.alias": "alias fs-ext4 ext4\n",
	} {
		os.MkdirAll(filepath.Join(main, filepath.Dir(n)), 0o755)
		os.WriteFile(filepath.Join(main, n), []byte(c), 0o644)
	}
	os.Symlink("usr/lib", filepath.Join(main, "lib"))
	mainCpio := plainCpio(t, main)
	for _, tc := range []struct {
		c        initrd.Compression
		compress []string // host command, stdin to stdout
		cat      []string
	}{
		{initrd.Gzip, []string{"gzip", "-9c"}, []string{"gzip", "-dc"}},
		{initrd.Zstd, []string{"zstd", "-q", "-19", "-c"}, []string{"zstd", "-q", "-dc"}},
		{initrd.XZ, []string{"xz", "--check=crc32", "-c"}, []string{"xz", "-dc"}},
		{initrd.LZMA, []string{"lzma", "-c"}, []string{"lzma", "-dc"}},
		{initrd.Bzip2, []string{"bzip2", "-c"}, []string{"bzip2", "-dc"}},
	} {
		t.Run(string(tc.c), func(t *testing.T) {
			testutil.NeedTool(t, tc.compress[0])
			cmd := exec.Command(tc.compress[0], tc.compress[1:]...)
			cmd.Stdin = bytes.NewReader(mainCpio)
			z, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %v", tc.compress, err)
			}
			data := append(append(append([]byte{}, earlyCpio...), z...), make([]byte, 512)...) // padded, as some tools do
			img, err := initrd.Read(data)
			if err != nil {
				t.Fatal(err)
			}
			if img.Compression != tc.c || initrd.Detect(img) != initrd.Dracut {
				t.Fatalf("read as %s, %s", img.Compression, initrd.Detect(img))
			}
			if dep, err := img.ReadFile("lib/modules/" + rel + "/modules.dep"); err != nil || string(dep) != "kernel/fs/ext4/ext4.ko:\n" {
				t.Fatalf("modules.dep through the lib link: %q %v", dep, err)
			}
			spec := initrd.Spec{Release: rel, Modules: []initrd.Module{{Path: "kernel/drivers/block/virtio_blk.ko", Data: []byte("vb")}}}
			out, res, err := initrd.Rebuild(data, spec)
			if tc.c == initrd.Bzip2 {
				if !errors.Is(err, initrd.ErrUnsupported) || !strings.Contains(err.Error(), "bzip2") {
					t.Errorf("rebuilding a bzip2 initrd: %v, want an unsupported-compression error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out, earlyCpio) {
				t.Error("the early cpio is not kept at the start, byte for byte")
			}
			// What the kernel would unpack after the early cpio.
			sh := exec.Command("sh", "-c", skipcpio+" \"$1\" | "+strings.Join(tc.cat, " ")+" | cpio --quiet -it", "sh", "-")
			f := filepath.Join(t.TempDir(), "initrd.img")
			os.WriteFile(f, out, 0o644)
			sh.Args[len(sh.Args)-1] = f
			list, err := sh.Output()
			if err != nil {
				t.Fatalf("skipcpio | %v | cpio -it: %v", tc.cat, err)
			}
			for _, want := range []string{"usr/lib/modules/" + rel + "/kernel/drivers/block/virtio_blk.ko", "usr/lib/modules/" + rel + "/modules.dep", "init"} {
				if !strings.Contains("\n"+string(list), "\n"+want+"\n") {
					t.Errorf("the rebuilt main archive lacks %s:\n%s", want, list)
				}
			}
			if strings.Contains(string(list), "\nlib/modules/") {
				t.Errorf("members written through the lib link instead of to usr/lib:\n%s", list)
			}
			if !res.Changed() {
				t.Error("no change reported")
			}
		})
	}
}

// TestHugeDictionaryRefused: an lzma or xz initrd whose header asks for a
// 2 GiB dictionary is refused before the decoder allocates it.
func TestHugeDictionaryRefused(t *testing.T) {
	lzmaHdr := []byte{0x5d, 0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0}
	// xz: stream header (magic, flags CRC32, CRC of the flags), a block
	// header of 12 bytes with one filter, LZMA2 with dictionary code 39.
	xzHdr := []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1, 0x69, 0x22, 0xde, 0x36,
		2, 0, 0x21, 1, 39, 0, 0, 0, 0, 0, 0, 0}
	for name, b := range map[string][]byte{"lzma": lzmaHdr, "xz": xzHdr} {
		_, err := initrd.Read(b)
		if !errors.Is(err, initrd.ErrFormat) || !strings.Contains(err.Error(), "dictionary") {
			t.Errorf("%s: %v, want a format error about the dictionary", name, err)
		}
	}
}
