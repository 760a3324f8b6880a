package part

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var update = flag.Bool("update", false, "rebuild testdata images with sfdisk")

// layouts are sfdisk scripts for the test images.
var layouts = []struct {
	name       string
	size       int64
	script     string
	sectorSize int // 512 when 0
}{
	{"mbr-primary", 128 << 10, "label: dos\nstart=4,size=20,type=83,bootable\nstart=24,size=40,type=8e\nstart=100,size=20,type=82\n", 0},
	{"mbr-logical", 128 << 10, "label: dos\nlabel-id: 0x4f8cf84a\nstart=4,size=20,type=83,bootable\nstart=24,size=20,type=8e\nstart=44,size=150,type=5\nstart=46,size=30,type=83\nstart=78,size=40,type=82\nstart=120,size=70,type=8e\n", 0},
	{"mbr-logical-only", 64 << 10, "label: dos\nstart=2,size=100,type=f\nstart=4,size=30,type=7\nstart=40,size=60,type=c\n", 0},
	{"mbr-empty-extended", 64 << 10, "label: dos\nstart=2,size=20,type=83\nstart=30,size=60,type=5\n", 0},
	{"gpt", 128 << 10, "label: gpt\nfirst-lba: 34\nstart=34,size=40,type=linux,name=\"root fs\"\nstart=80,size=40,type=uefi,attrs=\"LegacyBIOSBootable\"\nstart=140,size=20,type=E6D6D379-F507-44C2-A23C-238F2A3DF928,name=\"LVM\"\n", 0},
	{"gpt-empty", 64 << 10, "label: gpt\n", 0},
	{"gpt-4k", 1 << 20, "label: gpt\nstart=6,size=40,type=linux,name=\"root\"\nstart=50,size=100,type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n", 4096},
}

// sfdiskJSON is the part of `sfdisk --json` the tests compare against.
type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
			Attrs    string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// makeImage writes an image with sfdisk and returns its bytes and the
// sfdisk --json description.
func makeImage(t *testing.T, size int64, script string) ([]byte, []byte) {
	return makeImageSectors(t, size, script, 512)
}

// makeImageSectors makes the image with the given logical sector size;
// 4096 needs a loop device (root), since this sfdisk has no
// --sector-size.
func makeImageSectors(t *testing.T, size int64, script string, sectorSize int) ([]byte, []byte) {
	t.Helper()
	sfdisk := testutil.NeedTool(t, "sfdisk")
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	target, node := path, path
	if sectorSize != 512 {
		testutil.NeedRoot(t, "a %d-byte sector image needs a loop device (root)", sectorSize)
		loop := testutil.Loop(t, path, "-b", strconv.Itoa(sectorSize))
		target, node = loop, loop+"p"
	}
	cmd := exec.Command(sfdisk, "-q", "--no-reread", "--no-tell-kernel", target)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	js, err := exec.Command(sfdisk, "--json", target).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	// Node names depend on the path; keep only the partition number.
	js = bytes.ReplaceAll(js, []byte(node), []byte("disk"))
	js = bytes.ReplaceAll(js, []byte(target), []byte("disk"))
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return img, js
}

// check compares a parsed table with sfdisk's description.
func check(t *testing.T, tab *Table, js []byte) {
	t.Helper()
	var want sfdiskJSON
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatalf("sfdisk json: %v", err)
	}
	w := want.PartitionTable
	scheme := map[string]string{"dos": MBR, "gpt": GPT}[w.Label]
	if tab.Scheme != scheme || tab.ID != w.ID || tab.SectorSize != w.SectorSize {
		t.Errorf("table = %s %s %d, sfdisk says %s %s %d", tab.Scheme, tab.ID, tab.SectorSize, scheme, w.ID, w.SectorSize)
	}
	if len(tab.Partitions) != len(w.Partitions) {
		t.Fatalf("%d partitions, sfdisk lists %d", len(tab.Partitions), len(w.Partitions))
	}
	ss := int64(w.SectorSize)
	for i, p := range tab.Partitions {
		wp := w.Partitions[i]
		num, _ := strconv.Atoi(strings.TrimPrefix(wp.Node, "disk"))
		bootable := wp.Bootable || strings.Contains(wp.Attrs, "LegacyBIOSBootable")
		if p.Number != num || p.Start != wp.Start*ss || p.Size != wp.Size*ss || p.Type != wp.Type ||
			p.UUID != wp.UUID || p.Name != wp.Name || p.Bootable != bootable {
			t.Errorf("partition %d = %+v\nsfdisk: %+v", i, *p, wp)
		}
		if p.Extended != (w.Label == "dos" && (wp.Type == "5" || wp.Type == "f" || wp.Type == "85")) {
			t.Errorf("partition %d: Extended = %v for type %s", p.Number, p.Extended, p.Type)
		}
	}
}

func TestSfdisk(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			img, js := makeImageSectors(t, l.size, l.script, cmp.Or(l.sectorSize, 512))
			tab, err := Read(&testutil.MemDev{B: img})
			if err != nil {
				t.Fatal(err)
			}
			check(t, tab, js)
			if *update {
				testutil.WriteGz(t, filepath.Join("testdata", l.name+".img.gz"), img)
				if err := os.WriteFile(filepath.Join("testdata", l.name+".json"), js, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestGolden reads the committed images, so the parser is checked against
// sfdisk's view even where sfdisk is not installed.
func TestGolden(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			img := testutil.ReadGz(t, filepath.Join("testdata", l.name+".img.gz"))
			js, err := os.ReadFile(filepath.Join("testdata", l.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			tab, err := Read(&testutil.MemDev{B: img})
			if err != nil {
				t.Fatal(err)
			}
			check(t, tab, js)
		})
	}
}

// TestRealLayout is a RHEL 5 default layout on a 1 MiB-aligned sparse
// disk: /boot, then an LVM PV, and logical partitions.
func TestRealLayout(t *testing.T) {
	img, js := makeImage(t, 64<<20, "label: dos\n,8M,83,*\n,16M,8e\n,,5\n,4M,82\n,,83\n")
	d := &testutil.MemDev{B: img}
	tab, err := Read(d)
	if err != nil {
		t.Fatal(err)
	}
	check(t, tab, js)
	// Data written through a partition device lands at its offset.
	p := tab.Partitions[len(tab.Partitions)-1]
	dev := p.Device()
	if dev.Size() != p.Size {
		t.Fatalf("Device().Size() = %d, want %d", dev.Size(), p.Size)
	}
	if _, err := dev.WriteAt([]byte("hello"), 10); err != nil {
		t.Fatal(err)
	}
	if got := string(img[p.Start+10 : p.Start+15]); got != "hello" {
		t.Errorf("disk at partition start+10 = %q", got)
	}
}

func TestWindow(t *testing.T) {
	disk := &testutil.MemDev{B: bytes.Repeat([]byte{'.'}, 1000)}
	p := &Partition{Start: 100, Size: 50, disk: disk}
	dev := p.Device()
	buf := make([]byte, 20)
	n, err := dev.ReadAt(buf, 40)
	if n != 10 || err != io.EOF {
		t.Errorf("ReadAt across the end = %d, %v; want 10, EOF", n, err)
	}
	if n, err := dev.ReadAt(buf, 50); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := dev.ReadAt(buf, -1); err == nil {
		t.Error("ReadAt at -1 succeeded")
	}
	if _, err := dev.WriteAt(make([]byte, 11), 40); err == nil {
		t.Error("WriteAt across the end succeeded")
	}
	if string(disk.B[140:160]) != strings.Repeat(".", 20) {
		t.Error("a refused write changed the disk")
	}
	if _, err := dev.WriteAt([]byte("0123456789"), 40); err != nil {
		t.Fatal(err)
	}
	if string(disk.B[140:151]) != "0123456789." {
		t.Errorf("disk = %q", disk.B[140:151])
	}
}

func TestNoTable(t *testing.T) {
	ext := make([]byte, 64<<10)
	binary.LittleEndian.PutUint16(ext[1024+56:], 0xEF53) // an ext2 superblock, no MBR
	fat := make([]byte, 64<<10)                          // a FAT boot sector: signature, but jump code where boot flags are
	copy(fat, []byte{0xEB, 0x3C, 0x90, 'M', 'S', 'D', 'O', 'S', '5', '.', '0'})
	for i := 446; i < 510; i++ {
		fat[i] = 0x4F
	}
	fat[510], fat[511] = 0x55, 0xAA
	for name, b := range map[string][]byte{"zeros": make([]byte, 1<<20), "ext2": ext, "boot sector": fat, "tiny": make([]byte, 100)} {
		if _, err := Read(&testutil.MemDev{B: b}); !errors.Is(err, ErrNoTable) {
			t.Errorf("%s: err = %v, want ErrNoTable", name, err)
		}
	}
}

func TestCorrupt(t *testing.T) {
	logical := testutil.ReadGz(t, "testdata/mbr-logical.img.gz")
	gpt := testutil.ReadGz(t, "testdata/gpt.img.gz")
	le32 := binary.LittleEndian.PutUint32
	tests := []struct {
		name  string
		img   []byte
		edit  func(b []byte)
		noErr bool // a recoverable defect: the table still reads
	}{
		{"EBR chain loops", logical, func(b []byte) {
			// The second EBR (sector 77) links back to the first (sector 44).
			le32(b[77*512+446+16+8:], 0)
		}, false},
		{"EBR link leaves extended", logical, func(b []byte) { le32(b[44*512+446+16+8:], 10000) }, false},
		{"EBR without signature", logical, func(b []byte) { b[77*512+510] = 0 }, false},
		{"primary outside disk", logical, func(b []byte) { le32(b[446+8:], 1<<30) }, false},
		{"logical outside disk", logical, func(b []byte) { le32(b[44*512+446+8:], 1<<30) }, false},
		{"primary starts at sector 0", logical, func(b []byte) { le32(b[446+8:], 0) }, false},
		{"two extended", logical, func(b []byte) { b[446+16+4] = 0x05 }, false},
		{"disk truncated before an EBR", logical[:100*512], nil, false},
		{"GPT primary header bad, backup good", gpt, func(b []byte) { b[512+40]++ }, true},
		{"GPT primary entries bad, backup good", gpt, func(b []byte) { b[1024+3]++ }, true},
		{"GPT both headers bad", gpt, func(b []byte) { b[512+40]++; b[len(b)-512+40]++ }, false},
		{"GPT both entry arrays bad", gpt, func(b []byte) { b[1024+3]++; b[len(b)-33*512+3]++ }, false},
		{"GPT huge entry array", gpt, func(b []byte) {
			hdr := b[512 : 512+92]
			le32(hdr[80:], 1<<20)
			le32(hdr[16:], 0)
			le32(hdr[16:], crc(hdr))
			b[len(b)-512+40]++
		}, false},
		{"GPT partition past the end", gpt, func(b []byte) {
			e := b[1024:]
			binary.LittleEndian.PutUint64(e[32:], 1<<40)
			binary.LittleEndian.PutUint64(e[40:], 1<<41)
			fixGPT(b)
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := bytes.Clone(tc.img)
			if tc.edit != nil {
				tc.edit(img)
			}
			tab, err := Read(&testutil.MemDev{B: img})
			if tc.noErr {
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				if len(tab.Partitions) != 3 {
					t.Errorf("%d partitions from the backup GPT, want 3", len(tab.Partitions))
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

func TestTruncatedPartitionIsCut(t *testing.T) {
	img := testutil.ReadGz(t, "testdata/mbr-primary.img.gz")
	img = img[:110*512] // partition 3 spans sectors 100-119
	tab, err := Read(&testutil.MemDev{B: img})
	if err != nil {
		t.Fatal(err)
	}
	if p := tab.Partitions[2]; p.Start != 100*512 || p.Size != 10*512 {
		t.Errorf("partition 3 = %d+%d, want cut at the end of the disk", p.Start, p.Size)
	}
}

// fixGPT recomputes the primary GPT's checksums after an edit of its
// entries.
func fixGPT(b []byte) {
	hdr := b[512 : 512+92]
	n := binary.LittleEndian.Uint32(hdr[80:]) * binary.LittleEndian.Uint32(hdr[84:])
	binary.LittleEndian.PutUint32(hdr[88:], crc(b[1024:1024+n]))
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	binary.LittleEndian.PutUint32(hdr[16:], crc(hdr))
}

// sparseDev is a fuzz device: head at the start, tail at the end, zeros
// between.
type sparseDev struct {
	head, tail []byte
	size       int64
}

func (d *sparseDev) Size() int64                        { return d.size }
func (d *sparseDev) WriteAt([]byte, int64) (int, error) { return 0, diskimg.ErrReadOnly }
func (d *sparseDev) ReadAt(p []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), d.size-off)
	tailStart := d.size - int64(len(d.tail))
	for i := range n {
		o := off + i
		switch {
		case o < int64(len(d.head)):
			p[i] = d.head[o]
		case o >= tailStart:
			p[i] = d.tail[o-tailStart]
		default:
			p[i] = 0
		}
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// FuzzRead feeds the parser a disk made of a head and a tail (where MBR,
// EBRs and the two GPT copies live) and zeros between.
func FuzzRead(f *testing.F) {
	for _, l := range layouts {
		img := testutil.ReadGz(f, filepath.Join("testdata", l.name+".img.gz"))
		end := len(img)
		for end > 0 && img[end-1] == 0 {
			end--
		}
		head := img[:min(len(img), 64*512)]
		tail := img[max(len(head), len(img)-34*512):]
		if !strings.HasPrefix(l.name, "gpt") {
			head, tail = img[:(end+511)/512*512], nil
		}
		f.Add(head, tail, uint32(len(img)))
	}
	f.Fuzz(func(t *testing.T, head, tail []byte, size uint32) {
		size %= 64 << 20
		d := &sparseDev{head: head, tail: tail, size: max(int64(size), int64(len(head)+len(tail)))}
		tab, err := Read(d)
		if err != nil {
			if !errors.Is(err, ErrNoTable) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is neither ErrNoTable nor ErrCorrupt", err)
			}
			return
		}
		for _, p := range tab.Partitions {
			if p.Start <= 0 || p.Size <= 0 || p.Start+p.Size > d.size {
				t.Fatalf("partition %d = %d+%d outside the %d-byte disk", p.Number, p.Start, p.Size, d.size)
			}
			buf := make([]byte, 16)
			if _, err := p.Device().ReadAt(buf, 0); err != nil && err != io.EOF {
				t.Fatalf("reading partition %d: %v", p.Number, err)
			}
		}
	})
}

var _ diskimg.Device = (*testutil.MemDev)(nil)

func crc(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// listingDev is a memDev that lists extents.
type listingDev struct {
	*testutil.MemDev
	extents []diskimg.Extent
}

func (d listingDev) Extents(context.Context) ([]diskimg.Extent, error) { return d.extents, nil }

func TestWindowExtents(t *testing.T) {
	disk := listingDev{&testutil.MemDev{B: make([]byte, 1000)}, []diskimg.Extent{{Offset: 0, Length: 120}, {Offset: 130, Length: 5}, {Offset: 140, Length: 100}}}
	p := &Partition{Start: 100, Size: 50, disk: disk}
	got, err := p.Device().(diskimg.ExtentLister).Extents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []diskimg.Extent{{Offset: 0, Length: 20}, {Offset: 30, Length: 5}, {Offset: 40, Length: 10}}
	if !slices.Equal(got, want) {
		t.Errorf("Extents() = %v, want %v", got, want)
	}
	p = &Partition{Start: 100, Size: 50, disk: &testutil.MemDev{B: make([]byte, 1000)}}
	if _, err := p.Device().(diskimg.ExtentLister).Extents(context.Background()); !errors.Is(err, diskimg.ErrNotSupported) {
		t.Errorf("Extents() on a disk without extents: %v, want ErrNotSupported", err)
	}
}
