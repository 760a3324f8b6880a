package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// damagedDisk makes a 24 MiB raw disk whose one MBR partition holds an
// ext3 with etc/fstab, runs the debugfs commands on the filesystem and
// then edit on the whole image.
func damagedDisk(t *testing.T, debugfs string, edit func(img []byte) []byte) string {
	t.Helper()
	testutil.NeedTool(t, "sfdisk")
	testutil.NeedTool(t, "mke2fs")
	testutil.NeedTool(t, "debugfs")
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "fs.img")
	testutil.Run(t, "mke2fs", "-q", "-F", "-t", "ext3", fsImg, "16M")
	cmd := exec.Command("debugfs", "-w", "-f", "-", fsImg)
	cmd.Stdin = strings.NewReader("mkdir etc\nwrite /dev/null etc/fstab\n" + debugfs)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	disk := filepath.Join(dir, "disk.img")
	os.WriteFile(disk, nil, 0o644)
	os.Truncate(disk, 24<<20)
	sf := exec.Command("sfdisk", "-q", disk)
	sf.Stdin = strings.NewReader("label: dos\nstart=2048, size=32768, type=83\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(disk)
	fsData, _ := os.ReadFile(fsImg)
	copy(data[1<<20:], fsData)
	if edit != nil {
		data = edit(data)
	}
	os.WriteFile(disk, data, 0o644)
	return disk
}

func assembleDisk(t *testing.T, path string) (*guestView, error) {
	t.Helper()
	img, err := diskimg.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	v, closeView, err := assembleView(context.Background(), []namedDisk{{name: "xvda", dev: img}}, true)
	if err == nil {
		t.Cleanup(func() { closeView() })
	}
	return v, err
}

// TestDamagedSourceNamesTheDamage: a damaged or cut source either
// assembles with a warning saying what is wrong, or fails with an error
// that carries the real problem (not only "no root filesystem") and
// points at the source.
func TestDamagedSourceNamesTheDamage(t *testing.T) {
	const sb = 1<<20 + 1024 // the superblock of the partition's ext3
	for _, tc := range []struct {
		name    string
		debugfs string
		edit    func([]byte) []byte
		fails   bool
		want    string
	}{
		{"superblock error flag", "ssv state 3\n", nil, false, "superblock records errors"},
		{"superblock error count", "ssv error_count 4\n", nil, false, "superblock records errors"},
		{"image cut inside the partition", "", func(b []byte) []byte { return b[:1<<20+12<<20] }, true, "shorter than its partition table says"},
		{"swap-like partition cut, filesystem whole", "", func(b []byte) []byte {
			// A second partition after the filesystem, cut short.
			copy(b[446+16:], []byte{0, 0, 0, 0, 0x82, 0, 0, 0})
			binary.LittleEndian.PutUint32(b[446+16+8:], 2048+32768)
			binary.LittleEndian.PutUint32(b[446+16+12:], 40960)
			return b
		}, false, "/dev/xvda2: the image is"},
		{"corrupt superblock", "", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[sb+0x20:], 0) // s_blocks_per_group
			return b
		}, true, "xvda1"},
		{"corrupt etc directory", "", nil, true, "etc/fstab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edit := tc.edit
			if tc.name == "corrupt etc directory" {
				edit = nil
			}
			disk := damagedDisk(t, tc.debugfs, edit)
			if tc.name == "corrupt etc directory" {
				corruptDir(t, disk, "etc")
			}
			v, err := assembleDisk(t, disk)
			if tc.fails {
				var nr *NoRootError
				if !errors.As(err, &nr) || !errors.Is(err, ErrNoRoot) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(nr.Hint(), "e2fsck -fn on a copy") {
					t.Fatalf("err = %v, want a NoRootError carrying %q", err, tc.want)
				}
				t.Logf("%v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("warnings %q", v.warnings)
			if !strings.Contains(strings.Join(v.warnings, "\n"), tc.want) {
				t.Errorf("warnings %q lack %q", v.warnings, tc.want)
			}
		})
	}
}

// corruptDir overwrites the first block of a directory of the ext3 on
// the disk's first partition with garbage.
func corruptDir(t *testing.T, disk, dir string) {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "bmap "+dir+" 0", disk+"?offset=1048576").CombinedOutput()
	if err != nil {
		// Older debugfs has no ?offset=: read from a copy of the partition.
		t.Fatalf("debugfs bmap: %v\n%s", err, out)
	}
	fields := strings.Fields(string(out))
	blk, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
	if err != nil {
		t.Fatalf("debugfs bmap: %s", out)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	garbage := []byte(strings.Repeat("\xff\x7f\x01", 400))
	if _, err := f.WriteAt(garbage, 1<<20+blk*1024); err != nil {
		t.Fatal(err)
	}
}

// TestValidationDamageOutsideConversionWarns: damage a filesystem walk
// finds away from the files the conversion wrote is a warning naming the
// source and e2fsck; damage on the way to them fails the check.
func TestValidationDamageOutsideConversionWarns(t *testing.T) {
	cyc := fstest.MapFS{
		"etc/fstab":       {},
		"var":             {Mode: fs.ModeDir, Sys: &guestfs.Stat{Ino: 20}},
		"var/spool":       {Mode: fs.ModeDir, Sys: &guestfs.Stat{Ino: 21}},
		"var/spool/again": {Mode: fs.ModeDir, Sys: &guestfs.Stat{Ino: 20}},
	}
	v := &guestView{filesystems: map[string]fs.FS{"vda1": cyc}, broken: map[string]error{}}
	k := &config.KVMDomain{OS: "windows"} // stop after the filesystem checks
	checks := validateView(v, k, true, []string{"etc/fstab", "boot/grub/grub.conf"}, t.TempDir())
	if len(checks) != 1 || !checks[0].OK || !strings.Contains(checks[0].Warning, "source filesystem vda1 is damaged") ||
		!strings.Contains(checks[0].Warning, "/var/spool/again") || !strings.Contains(checks[0].Warning, "e2fsck -fn on a copy of the source image") {
		t.Fatalf("checks %+v", checks)
	}
	checks = validateView(v, k, true, []string{"var/spool/again/x.conf"}, t.TempDir())
	if len(checks) != 1 || checks[0].OK || !strings.Contains(checks[0].Detail, "directory cycle") {
		t.Fatalf("checks %+v", checks)
	}
}
