package assemble

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/overlay"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// fileDev is a read-only image file.
type fileDev struct {
	f    *os.File
	size int64
}

func (d *fileDev) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }
func (d *fileDev) WriteAt([]byte, int64) (int, error)      { return 0, diskimg.ErrReadOnly }
func (d *fileDev) Size() int64                             { return d.size }

func openFile(t *testing.T, path string) *fileDev {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return &fileDev{f, st.Size()}
}

// fsSpec is a filesystem to make with mke2fs -d (or mkswap).
type fsSpec struct {
	typ   string // ext2, ext3, ext4, swap
	label string
	uuid  string
	size  int64
	files map[string]string
}

// mkfs makes a filesystem image and returns its bytes.
func mkfs(t *testing.T, s fsSpec, mke2fsArgs ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, s.size); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if s.typ == "swap" {
		cmd = exec.Command(testutil.NeedTool(t, "mkswap"), "-L", s.label, "-U", s.uuid, img)
	} else {
		tree := filepath.Join(dir, "tree")
		for name, content := range s.files {
			p := filepath.Join(tree, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(name, "/") {
				continue
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-q", "-F", "-t", s.typ, "-b", "1024", "-L", s.label, "-U", s.uuid,
			"-E", "root_owner=0:0", "-d", tree}, mke2fsArgs...)
		cmd = exec.Command(testutil.NeedTool(t, "mke2fs"), append(args, img)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	checkBlkid(t, img, s)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkBlkid makes sure the image is what blkid says, so the expectations
// of the tests are blkid's.
func checkBlkid(t *testing.T, img string, s fsSpec) {
	t.Helper()
	out, err := exec.Command(testutil.NeedTool(t, "blkid"), "-p", "-o", "export", img).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", img, err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	if got["TYPE"] != s.typ || got["LABEL"] != s.label || got["UUID"] != s.uuid {
		t.Fatalf("blkid says %v, want %s %s %s", got, s.typ, s.label, s.uuid)
	}
}

// mkdisk writes an sfdisk layout and the partitions' contents into a
// disk image file. parts maps a start sector to content.
func mkdisk(t *testing.T, size int64, layout string, parts map[int64][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f := testutil.SparseFile(t, path, size)
	defer f.Close()
	if layout != "" {
		cmd := exec.Command(testutil.NeedTool(t, "sfdisk"), "-q", path)
		cmd.Stdin = strings.NewReader(layout)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
	}
	for start, b := range parts {
		if _, err := f.WriteAt(b, start*512); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	uuidBoot = "1b0c7a3e-0000-4000-8000-00000000b007"
	uuidRoot = "2b0c7a3e-0000-4000-8000-0000000000f5"
	uuidVar  = "3b0c7a3e-0000-4000-8000-000000000a11"
	uuidData = "4b0c7a3e-0000-4000-8000-00000000da7a"
	uuidSwap = "5b0c7a3e-0000-4000-8000-00000000505a"
)

var rhel6ext4 = []string{"-O", "^metadata_csum,^64bit,^metadata_csum_seed,uninit_bg"}

const fstab = `# /etc/fstab, RHEL 5 style
LABEL=/                 /           ext3    defaults        1 1
LABEL=/boot             /boot       ext2    defaults        1 2
UUID=` + uuidVar + ` /var ext4 defaults 1 2
/dev/xvdb               /srv/data   ext3    defaults        1 2
tmpfs                   /dev/shm    tmpfs   defaults        0 0
devpts                  /dev/pts    devpts  gid=5,mode=620  0 0
proc                    /proc       proc    defaults        0 0
/dev/xvda6              swap        swap    defaults        0 0
/dev/xvdc1              /missing    ext3    defaults        0 0
`

// twoDisks builds a RHEL 5 style guest on plain partitions: xvda with
// /boot, / and logical /var and swap; xvdb a whole-disk filesystem.
func twoDisks(t *testing.T) (string, string) {
	boot := mkfs(t, fsSpec{"ext2", "/boot", uuidBoot, 4 << 20, map[string]string{
		"grub/grub.conf": "default=0\ntitle CentOS\n\troot (hd0,0)\n\tkernel /vmlinuz-2.6.18-398.el5xen ro root=LABEL=/\n",
	}})
	root := mkfs(t, fsSpec{"ext3", "/", uuidRoot, 8 << 20, map[string]string{
		"etc/fstab":          fstab,
		"etc/redhat-release": "CentOS release 5.11 (Final)\n",
		"sbin/init":          "ELF",
		"boot/":              "",
		"var/":               "",
		"srv/data/":          "",
		"etc/grub.conf":      "",
	}})
	// ext4 as RHEL 6 makes it (no metadata_csum, no 64bit).
	vr := mkfs(t, fsSpec{"ext4", "var", uuidVar, 4 << 20, map[string]string{"log/messages": "booted\n"}}, rhel6ext4...)
	swap := mkfs(t, fsSpec{"swap", "SWAP-xvda6", uuidSwap, 1 << 20, nil})
	data := mkfs(t, fsSpec{"ext3", "data", uuidData, 4 << 20, map[string]string{"payload.txt": "data disk\n"}})

	// Sectors: p1 2048+8192, p2 10240+16384, p3 extended 26624+..., p5 28672 (4 MiB), p6 38912 (1 MiB).
	layout := "label: dos\nstart=2048,size=8192,type=83,bootable\nstart=10240,size=16384,type=83\nstart=26624,type=5\nstart=28672,size=8192,type=83\nstart=38912,size=2048,type=82\n"
	xvda := mkdisk(t, 24<<20, layout, map[int64][]byte{2048: boot, 10240: root, 28672: vr, 38912: swap})
	xvdb := mkdisk(t, 4<<20, "", map[int64][]byte{0: data})
	return xvda, xvdb
}

func TestOpen(t *testing.T) {
	xvda, xvdb := twoDisks(t)
	hashA, hashB := testutil.HashFile(t, xvda), testutil.HashFile(t, xvdb)
	ovA, ovB := overlay.New(openFile(t, xvda)), overlay.New(openFile(t, xvdb))
	defer ovA.Close()
	defer ovB.Close()
	g, err := Open(context.Background(), []Disk{{"xvda", ovA}, {"/dev/xvdb", ovB}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	type fsWant struct {
		devices          string
		typ, label, uuid string
		mountPoint       string
	}
	want := []fsWant{
		{"/dev/xvda1", "ext2", "/boot", uuidBoot, "/boot"},
		{"/dev/xvda2", "ext3", "/", uuidRoot, "/"},
		{"/dev/xvda5", "ext4", "var", uuidVar, "/var"},
		{"/dev/xvda6", "swap", "SWAP-xvda6", uuidSwap, ""},
		{"/dev/xvdb", "ext3", "data", uuidData, "/srv/data"},
	}
	var got []fsWant
	for _, f := range g.Filesystems {
		if f.Err != nil {
			t.Errorf("%s: %v", f.Devices[0], f.Err)
		}
		got = append(got, fsWant{strings.Join(f.Devices, ","), f.Type, f.Label, f.UUID, f.MountPoint})
	}
	if !slices.Equal(got, want) {
		t.Errorf("filesystems:\n got %v\nwant %v", got, want)
	}
	if g.RootFS == nil || g.RootFS.Devices[0] != "/dev/xvda2" {
		t.Fatalf("root = %+v", g.RootFS)
	}
	var dirs []string
	for _, m := range g.Mounts {
		dirs = append(dirs, m.Dir+"="+m.Spec)
	}
	if w := []string{"/=/dev/xvda2", "/boot=LABEL=/boot", "/srv/data=/dev/xvdb", "/var=UUID=" + uuidVar}; !slices.Equal(dirs, w) {
		t.Errorf("mounts = %v, want %v", dirs, w)
	}
	wantDevs := []string{"/dev/xvda", "/dev/xvda1", "/dev/xvda2", "/dev/xvda3", "/dev/xvda5", "/dev/xvda6", "/dev/xvdb"}
	if !slices.Equal(g.Devices, wantDevs) {
		t.Errorf("devices = %v, want %v", g.Devices, wantDevs)
	}
	if len(g.Warnings) != 1 || !strings.Contains(g.Warnings[0], "/dev/xvdc1") {
		t.Errorf("warnings = %q, want one about /dev/xvdc1", g.Warnings)
	}

	// Every mounted filesystem is reachable through the union.
	for name, content := range map[string]string{
		"etc/redhat-release":   "CentOS release 5.11 (Final)\n",
		"boot/grub/grub.conf":  "default=0\ntitle CentOS\n\troot (hd0,0)\n\tkernel /vmlinuz-2.6.18-398.el5xen ro root=LABEL=/\n",
		"var/log/messages":     "booted\n",
		"srv/data/payload.txt": "data disk\n",
	} {
		b, err := fs.ReadFile(g.Root, name)
		if err != nil || string(b) != content {
			t.Errorf("ReadFile(%s) = %q, %v", name, b, err)
		}
	}
	if _, err := fs.Stat(g.Root, "etc/grub.conf"); err != nil {
		t.Errorf("etc/grub.conf on the root: %v", err)
	}

	// Writes go into the overlays; the images stay as they were and the
	// written filesystem is clean for e2fsck.
	if err := g.Root.WriteFile("boot/grub/grub.conf", []byte("default=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Root.WriteFile("srv/data/new.txt", []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if testutil.HashFile(t, xvda) != hashA || testutil.HashFile(t, xvdb) != hashB {
		t.Fatal("an image file changed")
	}
	g2, err := Open(context.Background(), []Disk{{"xvda", ovA}, {"xvdb", ovB}}, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if b, err := fs.ReadFile(g2.Root, "boot/grub/grub.conf"); err != nil || string(b) != "default=1\n" {
		t.Errorf("after reopening: grub.conf = %q, %v", b, err)
	}
	if err := g2.Root.WriteFile("etc/motd", nil, 0o644); err == nil {
		t.Error("write through a ReadOnly guest succeeded")
	}
	e2fsck(t, g2.Lookup("LABEL=/boot").Dev)
	e2fsck(t, g2.Lookup("/dev/xvdb").Dev)
}

// e2fsck copies a device into a file and runs e2fsck -fn on it.
func e2fsck(t *testing.T, dev diskimg.Device) {
	t.Helper()
	tool := testutil.NeedTool(t, "e2fsck")
	b := make([]byte, dev.Size())
	if _, err := dev.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "-fn", path).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
}

func TestLookup(t *testing.T) {
	g := &Guest{Filesystems: []*Filesystem{
		{Devices: []string{"/dev/VolGroup00/LogVol00", "/dev/mapper/VolGroup00-LogVol00"}, Label: "", UUID: "ab-cd"},
		{Devices: []string{"/dev/xvda1"}, Label: "/boot"},
	}}
	for spec, want := range map[string]int{
		"/dev/mapper/VolGroup00-LogVol00": 0,
		"/dev/VolGroup00/LogVol00":        0,
		"/dev//VolGroup00/LogVol00/":      0,
		"UUID=AB-CD":                      0,
		"LABEL=/boot":                     1,
		"/dev/xvda1":                      1,
		"LABEL=":                          -1,
		"UUID=":                           -1,
		"/dev/xvda2":                      -1,
	} {
		got := g.Lookup(spec)
		if (want < 0) != (got == nil) || (want >= 0 && got != g.Filesystems[want]) {
			t.Errorf("Lookup(%q) = %v, want #%d", spec, got, want)
		}
	}
}

func TestParseFstab(t *testing.T) {
	got := parseFstab("# c\n\n  LABEL=/  /  ext3 defaults 1 1 # trailing\n/dev/x /mnt/My\\040Disk auto defaults\nbad line\n")
	want := []fstabEntry{{"LABEL=/", "/", "ext3"}, {"/dev/x", "/mnt/My Disk", "auto"}}
	if !slices.Equal(got, want) {
		t.Errorf("parseFstab = %q, want %q", got, want)
	}
}

func TestPartitionName(t *testing.T) {
	for disk, want := range map[string]string{"xvda": "xvda3", "hda": "hda3", "nvme0n1": "nvme0n1p3", "cciss/c0d0": "cciss/c0d0p3"} {
		if got := partitionName(disk, 3); got != want {
			t.Errorf("partitionName(%s, 3) = %s, want %s", disk, got, want)
		}
	}
}

// TestPartitionTarget: a Xen target naming a partition is that partition.
func TestPartitionTarget(t *testing.T) {
	root := mkfs(t, fsSpec{"ext3", "/", uuidRoot, 4 << 20, map[string]string{"etc/fstab": "/dev/xvda1 / ext3 defaults 1 1\n", "sbin/": ""}})
	swap := mkfs(t, fsSpec{"swap", "SWAP", uuidSwap, 1 << 20, nil})
	g, err := Open(context.Background(), []Disk{
		{"xvda1", openFile(t, mkdisk(t, 4<<20, "", map[int64][]byte{0: root}))},
		{"xvda2", openFile(t, mkdisk(t, 1<<20, "", map[int64][]byte{0: swap}))},
	}, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.RootFS == nil || g.RootFS.Devices[0] != "/dev/xvda1" || len(g.Filesystems) != 2 || g.Filesystems[1].Type != "swap" {
		t.Errorf("filesystems %v, root %v", g.Filesystems, g.RootFS)
	}
	if !slices.Equal(g.Devices, []string{"/dev/xvda1", "/dev/xvda2"}) {
		t.Errorf("devices = %v", g.Devices)
	}
}

func TestNoRoot(t *testing.T) {
	data := mkfs(t, fsSpec{"ext3", "data", uuidData, 4 << 20, map[string]string{"x": "y"}})
	g, err := Open(context.Background(), []Disk{
		{"hda", openFile(t, mkdisk(t, 4<<20, "", map[int64][]byte{0: data}))},
		{"hdb", openFile(t, mkdisk(t, 1<<20, "", nil))}, // blank
	}, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Root != nil || g.RootFS != nil || len(g.Filesystems) != 1 {
		t.Errorf("root %v, filesystems %v", g.Root, g.Filesystems)
	}
}

func TestErrors(t *testing.T) {
	xvda, _ := twoDisks(t)
	b, err := os.ReadFile(xvda)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[446+8:], []byte{0, 0, 0, 0}) // partition 1 starts on the MBR
	bad := &testutil.MemDev{B: b}
	if _, err := Open(context.Background(), []Disk{{"xvda", bad}}); err == nil || !strings.Contains(err.Error(), "xvda") {
		t.Errorf("corrupt table: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, []Disk{{"xvda", openFile(t, xvda)}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := Open(context.Background(), []Disk{{"", openFile(t, xvda)}}); err == nil {
		t.Error("empty target accepted")
	}
}

// TestWriteUnsupported: a filesystem extfs can read but not write is
// opened read-only, with a warning, so the guest can still be inspected.
func TestWriteUnsupported(t *testing.T) {
	root := mkfs(t, fsSpec{"ext4", "root", uuidRoot, 8 << 20, map[string]string{"etc/fstab": "LABEL=root / ext4 defaults 1 1\n"}},
		"-O", "metadata_csum")
	g, err := Open(context.Background(), []Disk{{"sda", openFile(t, mkdisk(t, 8<<20, "", map[int64][]byte{0: root}))}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	f := g.RootFS
	if f == nil || f.FS == nil || f.Type != "ext4" || f.Err != nil {
		t.Fatalf("root = %+v", f)
	}
	if len(g.Warnings) != 1 || !strings.Contains(g.Warnings[0], "metadata_csum") || !strings.Contains(g.Warnings[0], "read-only") {
		t.Errorf("warnings = %q", g.Warnings)
	}
	if err := g.Root.WriteFile("etc/motd", nil, 0o644); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("write on the read-only root: %v, want fs.ErrPermission", err)
	}
}
