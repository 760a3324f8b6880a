package guestgen

import (
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestPlainGuest checks the plain-partition guest with e2fsprogs and
// sfdisk: the partition table, both filesystems, and the RHEL 5 files.
func TestPlainGuest(t *testing.T) {
	testutil.NeedTool(t, "sfdisk")
	testutil.NeedTool(t, "e2fsck")
	testutil.NeedTool(t, "debugfs")
	g := buildForTest(t, CentOS5PV)
	img := g.Images[0]

	var dump struct {
		PartitionTable struct {
			Label      string `json:"label"`
			Partitions []struct {
				Start, Size int64
				Type        string
				Bootable    bool
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", img)), &dump); err != nil {
		t.Fatal(err)
	}
	type part struct {
		Start, Size int64
		Type        string
		Boot        bool
	}
	want := []part{{63, 208782, "83", true}, {208845, 240975, "83", false}, {449820, 64260, "82", false}}
	if dump.PartitionTable.Label != "dos" || len(dump.PartitionTable.Partitions) != len(want) {
		t.Fatalf("partition table: %+v", dump.PartitionTable)
	}
	for i, p := range dump.PartitionTable.Partitions {
		if got := (part{p.Start, p.Size, p.Type, p.Bootable}); got != want[i] {
			t.Errorf("partition %d: %+v, want %+v", i+1, got, want[i])
		}
	}
	boot, root := int64(63*512), int64(208845*512)
	for _, off := range []int64{boot, root} {
		out, err := exec.Command("e2fsck", "-fn", fsAt(img, off)).CombinedOutput()
		if err != nil {
			t.Errorf("e2fsck -fn at %d: %v\n%s", off, err, out)
		}
	}
	if out := run(t, "blkid", "-p", "-O", "230307840", img); !strings.Contains(out, `TYPE="swap"`) {
		t.Errorf("no swap signature on partition 3: %s", out)
	}
	if out := run(t, "dumpe2fs", "-h", fsAt(img, root)); !strings.Contains(out, "Inode size:\t          128") ||
		!strings.Contains(out, "has_journal") || strings.Contains(out, "extent") {
		t.Errorf("root is not a RHEL 5 style ext3:\n%s", out)
	}

	files := []struct {
		off      int64
		path     string
		contains []string
		lacks    []string
	}{
		{root, "/etc/redhat-release", []string{"CentOS release 5.4 (Final)"}, nil},
		{boot, "/grub/grub.conf", []string{"default=0", "title CentOS (2.6.18-164.el5xen)",
			"kernel /vmlinuz-2.6.18-164.el5xen ro root=/dev/xvda2 console=xvc0\n",
			"kernel /vmlinuz-2.6.18-164.el5 ro root=/dev/xvda2\n", "initrd /initrd-2.6.18-164.el5.img"}, nil},
		{boot, "/grub/device.map", []string{"(hd0)     /dev/xvda"}, nil},
		{root, "/etc/fstab", []string{"/dev/xvda2              /  ", "/dev/xvda1              /boot", "/dev/xvda3              swap"}, nil},
		{root, "/etc/modprobe.conf", []string{"alias eth0 xennet\n", "alias scsi_hostadapter xenblk\n"}, nil},
		{root, "/etc/inittab", []string{"id:3:initdefault:", "co:2345:respawn:/sbin/agetty xvc0 9600 vt100-nav",
			"1:2345:respawn:/sbin/mingetty tty1"}, nil},
		{root, "/etc/securetty", []string{"console\n", "tty1\n"}, []string{"ttyS0"}},
		{root, "/etc/sysconfig/kernel", []string{"DEFAULTKERNEL=kernel-xen\n"}, nil},
		{root, "/etc/sysconfig/network-scripts/ifcfg-eth0", []string{"HWADDR=" + strings.ToUpper(g.MAC) + "\n"}, nil},
		{boot, "/config-2.6.18-164.el5xen", []string{"CONFIG_X86_XEN=y\n", "CONFIG_X86_64_XEN=y\n", "# CONFIG_VIRTIO_BLK is not set"}, nil},
		{boot, "/config-2.6.18-164.el5", []string{"CONFIG_VIRTIO_BLK=m\n"}, []string{"CONFIG_X86_XEN"}},
		{root, "/lib/modules/2.6.18-164.el5xen/modules.dep", []string{
			"/lib/modules/2.6.18-164.el5xen/kernel/drivers/xen/blkfront/xenblk.ko:\n",
			"/lib/modules/2.6.18-164.el5xen/kernel/fs/ext4/ext4.ko: /lib/modules/2.6.18-164.el5xen/kernel/fs/mbcache.ko"}, []string{"virtio"}},
		{root, "/lib/modules/2.6.18-164.el5/modules.dep", []string{
			"/lib/modules/2.6.18-164.el5/kernel/drivers/block/virtio_blk.ko: /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio.ko /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_ring.ko\n"}, []string{"xenblk"}},
	}
	for _, f := range files {
		got := readGuestFile(t, img, f.off, f.path)
		for _, w := range f.contains {
			if !strings.Contains(got, w) {
				t.Errorf("%s lacks %q:\n%s", f.path, w, got)
			}
		}
		for _, w := range f.lacks {
			if strings.Contains(got, w) {
				t.Errorf("%s has %q", f.path, w)
			}
		}
	}
	links := []struct {
		off          int64
		path, target string
	}{
		{root, "/etc/grub.conf", "../boot/grub/grub.conf"},
		{boot, "/grub/menu.lst", "./grub.conf"},
	}
	for _, l := range links {
		out := run(t, "debugfs", "-R", "stat "+l.path, fsAt(img, l.off))
		if !strings.Contains(out, "Type: symlink") || !strings.Contains(out, `Fast link dest: "`+l.target+`"`) {
			t.Errorf("%s is not a symlink to %s:\n%s", l.path, l.target, out)
		}
	}

	cfg, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`name = "centos5"`, `bootloader = "/usr/bin/pygrub"`,
		`disk = [ "tap:aio:/var/lib/xen/images/centos5.img,xvda,w" ]`,
		`vif = [ "mac=` + g.MAC + `,bridge=xenbr0,script=vif-bridge" ]`} {
		if !strings.Contains(string(cfg), w) {
			t.Errorf("config lacks %q:\n%s", w, cfg)
		}
	}
	if !strings.HasPrefix(g.MAC, "00:16:3e:") {
		t.Errorf("MAC %s is not a Xen MAC", g.MAC)
	}
}

// TestInitrd unpacks the Xen kernel's initrd with cpio: a nash /init
// loading only the Xen block driver and the filesystem, the shim, the
// device nodes.
func TestInitrd(t *testing.T) {
	testutil.NeedTool(t, "cpio")
	g := buildForTest(t, CentOS5PV)
	p, _ := plan(CentOS5PV.withDefaults(), ids{CentOS5PV.Name})
	initrd := dumpGuestFile(t, g.Images[0], p.Boot.Offset(), "/initrd-2.6.18-164.el5xen.img")
	list := run(t, "sh", "-c", "zcat "+initrd+" | cpio -tv --quiet")
	for _, w := range []string{" init\n", " bin/nash\n", " bin/busybox\n", " lib/xenblk.ko\n", " lib/ext4.ko\n",
		"sbin -> bin\n"} {
		if !strings.Contains(list, w) {
			t.Errorf("initrd lacks %q:\n%s", w, list)
		}
	}
	if !strings.Contains(list, "crw-------   1 root     root       5,   1") {
		t.Errorf("initrd has no /dev/console device node:\n%s", list)
	}
	if strings.Contains(list, "virtio") {
		t.Errorf("the Xen initrd has virtio modules:\n%s", list)
	}
	init := run(t, "sh", "-c", "zcat "+initrd+" | cpio -i --quiet --to-stdout init")
	for _, w := range []string{"#!/bin/nash\n", "insmod /lib/xenblk.ko", "mkrootdev -t ext3 -o defaults,ro /dev/xvda2\n",
		"mount /sysroot\n", "switchroot\n"} {
		if !strings.Contains(init, w) {
			t.Errorf("init lacks %q:\n%s", w, init)
		}
	}
	if strings.Index(init, "insmod /lib/jbd2.ko") > strings.Index(init, "insmod /lib/ext4.ko") {
		t.Errorf("ext4 is loaded before jbd2:\n%s", init)
	}
}

func TestBuildIsCached(t *testing.T) {
	g := buildForTest(t, CentOS5PV)
	fi, err := os.Stat(g.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	g2, err := Build(context.Background(), filepath.Dir(g.Dir), CentOS5PV)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cached build took %v", d)
	}
	fi2, err := os.Stat(g2.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	if !fi2.ModTime().Equal(fi.ModTime()) || g2.Config != g.Config {
		t.Errorf("the second build rebuilt the guest")
	}
	if _, err := os.Stat(filepath.Join(g.Dir, stampName)); err != nil {
		t.Errorf("no completion stamp: %v", err)
	}
}

// TestBuildRebuildsTouchedImage: an image written to after the build is
// not handed out again.
func TestBuildRebuildsTouchedImage(t *testing.T) {
	dir := t.TempDir()
	g, err := Build(context.Background(), dir, Windows2003HVM)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAt(g.Images[0], 0, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	os.Chtimes(g.Images[0], future, future)
	if _, err := Build(context.Background(), dir, Windows2003HVM); err != nil {
		t.Fatal(err)
	}
	mbr := make([]byte, 512)
	f, err := os.Open(g.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		t.Error("the touched image was handed out again")
	}
}

func TestBuildInvalid(t *testing.T) {
	for _, s := range []Spec{
		{Name: "bad name", Kernels: []string{"2.6.18-164.el5"}},
		{Name: "nokernel"},
		{Name: "hvmkernel", HVM: true, Kernels: []string{"2.6.18-164.el5"}},
		{Name: "dup", Kernels: []string{"2.6.18-164.el5", "2.6.18-164.el5"}},
		{Name: "tiny", DiskMiB: 10, Kernels: []string{"2.6.18-164.el5"}},
		{Name: "badip", IPAddr: "192.168.1.5", Kernels: []string{"2.6.18-164.el5"}},
		{Name: "badgw", IPAddr: "192.168.1.5/24", Gateway: "gw", Kernels: []string{"2.6.18-164.el5"}},
		{Name: "badmac", IfcfgMAC: "00:16", Kernels: []string{"2.6.18-164.el5"}},
		{Name: "badport", SSHPort: 70000, Kernels: []string{"2.6.18-164.el5"}},
	} {
		_, err := Build(context.Background(), t.TempDir(), s)
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: got %v, want ErrInvalidSpec", s, err)
		}
	}
	for _, w := range []WindowsSpec{
		{Name: "w2k8r2-32", Version: "2008R2", Arch: "x86"}, // there is no 32-bit 2008 R2
		{Name: "w2012", Version: "2012", Arch: "x64"},
	} {
		if _, err := BuildWindows(context.Background(), t.TempDir(), w); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: got %v, want ErrInvalidSpec", w, err)
		}
	}
}

// TestLVMCRC compares lvmCRC with LVM2's own algorithm, a nibble table
// from 0xf597a6cf, written out here.
func TestLVMCRC(t *testing.T) {
	tab := [16]uint32{0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
		0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c}
	ref := func(b []byte) uint32 {
		c := uint32(lvmInitialCRC)
		for _, x := range b {
			c ^= uint32(x)
			c = c>>4 ^ tab[c&0xf]
			c = c>>4 ^ tab[c&0xf]
		}
		return c
	}
	for _, in := range []string{"", "a", "LVM2 001", strings.Repeat("VolGroup00 {\n", 100)} {
		if got, want := lvmCRC([]byte(in)), ref([]byte(in)); got != want {
			t.Errorf("lvmCRC(%q) = %#x, want %#x", in, got, want)
		}
	}
	if lvmCRC([]byte("a")) == crc32.ChecksumIEEE([]byte("a")) {
		t.Error("lvmCRC is plain CRC-32")
	}
}

func TestPresets(t *testing.T) {
	for name, s := range Presets() {
		if err := s.withDefaults().validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
		if name != s.Name {
			t.Errorf("preset %s named %s", name, s.Name)
		}
	}
	if len(PresetNames()) != 6 {
		t.Errorf("presets: %v", PresetNames())
	}
}

func TestSkelFiles(t *testing.T) {
	all := []string{"nash", "init", "agetty", "mingetty", "rc.sysinit", "rc", "network", "syslog", "acpid", "sshd", "kudzu", "halt", "udhcpc.script", "kdump", "rpm", "start_udev"}
	for _, name := range all {
		if s := skel(name); strings.Contains(s, "guestgen: missing") || !strings.HasPrefix(s, "#!/") {
			t.Errorf("skel/%s missing or not a script", name)
		}
	}
	for _, name := range all {
		if _, err := exec.LookPath("busybox"); err != nil {
			t.Skip("no busybox to syntax-check the scripts")
		}
		if out, err := exec.Command("busybox", "sh", "-n", filepath.Join("skel", name)).CombinedOutput(); err != nil {
			t.Errorf("skel/%s: %v\n%s", name, err, out)
		}
	}
}
