package lvm

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var update = flag.Bool("update", false, "rebuild testdata/lvm.img.gz with the lvm2 tools (root)")

// The test disk: an MBR with a 2 MiB partition and two 5 MiB LVM PVs
// holding VolGroup00 (1 MiB extents) with LogVol00 (linear, 3 MiB on the
// first PV extended by 2 MiB on the second) and LogVol01 (2 stripes of
// 16 KiB).
const (
	diskSize   = 16 << 20
	diskLayout = "label: dos\nstart=2048,size=4096,type=83\nstart=6144,size=10240,type=8e\nstart=16384,size=10240,type=8e\n"
)

// pattern is the content written to each LV: every 512-byte sector starts
// with the LV's name and the sector number, so misplaced data shows.
func pattern(lv string, size int64) []byte {
	b := make([]byte, size)
	for s := int64(0); s < size/512; s++ {
		copy(b[s*512:], fmt.Sprintf("%s sector %06d\n", lv, s))
	}
	return b
}

// report is what the lvm2 tools said about the volumes they made.
type report struct {
	VG struct {
		Name       string `json:"vg_name"`
		UUID       string `json:"vg_uuid"`
		ExtentSize string `json:"vg_extent_size"`
		SeqNo      string `json:"vg_seqno"`
	} `json:"vg"`
	LVs []struct {
		Name    string `json:"lv_name"`
		UUID    string `json:"lv_uuid"`
		Size    string `json:"lv_size"`
		SegType string `json:"segtype"`
	} `json:"lvs"`
}

func TestGolden(t *testing.T) {
	img := testutil.ReadGz(t, "testdata/lvm.img.gz")
	js, err := os.ReadFile("testdata/lvm.json")
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	verify(t, img, rep)
}

// verify reads the disk image with part and lvm and compares with what
// the lvm2 tools reported and the data written.
func verify(t *testing.T, img []byte, rep report) {
	t.Helper()
	vg := scanDisk(t, img)
	if vg.Name != rep.VG.Name || vg.UUID != rep.VG.UUID || strconv.FormatInt(vg.ExtentSize, 10) != rep.VG.ExtentSize ||
		strconv.FormatInt(vg.SeqNo, 10) != rep.VG.SeqNo {
		t.Errorf("VG = %s %s extent %d seqno %d; lvm2 says %+v", vg.Name, vg.UUID, vg.ExtentSize, vg.SeqNo, rep.VG)
	}
	if len(vg.Missing()) != 0 {
		t.Errorf("missing PVs %v", vg.Missing())
	}
	if len(vg.LVs) != len(rep.LVs) {
		t.Fatalf("%d LVs, lvm2 lists %d", len(vg.LVs), len(rep.LVs))
	}
	for i, lv := range vg.LVs {
		w := rep.LVs[i]
		if lv.Name != w.Name || lv.UUID != w.UUID || strconv.FormatInt(lv.Size, 10) != w.Size || lv.Type != w.SegType || !lv.Visible {
			t.Errorf("LV %d = %s %s %d %s visible=%v; lvm2 says %+v", i, lv.Name, lv.UUID, lv.Size, lv.Type, lv.Visible, w)
		}
		dev := lv.Device()
		got := make([]byte, dev.Size())
		if _, err := dev.ReadAt(got, 0); err != nil {
			t.Fatalf("reading %s: %v", lv.Name, err)
		}
		want := pattern(lv.Name, lv.Size)
		if !bytes.Equal(got, want) {
			i := firstDiff(got, want)
			t.Errorf("%s differs at byte %d: %q, want %q", lv.Name, i, got[i:min(i+24, len(got))], want[i:min(i+24, len(want))])
		}
		// Unaligned reads across segment and stripe boundaries.
		for _, off := range []int64{0, 511, 16383, 16384 + 100, 3<<20 - 7, lv.Size - 1000} {
			if off < 0 || off >= lv.Size {
				continue
			}
			buf := make([]byte, min(40000, lv.Size-off))
			if _, err := dev.ReadAt(buf, off); err != nil {
				t.Fatalf("reading %s at %d: %v", lv.Name, off, err)
			}
			if !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
				t.Errorf("%s: read at %d differs", lv.Name, off)
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// scanDisk finds the PVs among the disk's partitions and returns the one
// VG.
func scanDisk(t *testing.T, img []byte) *VG {
	t.Helper()
	tab, err := part.Read(&testutil.MemDev{B: img})
	if err != nil {
		t.Fatal(err)
	}
	var devs []diskimg.Device
	for _, p := range tab.Partitions {
		devs = append(devs, p.Device())
	}
	vgs, err := Scan(devs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(vgs) != 1 {
		t.Fatalf("%d VGs, want 1", len(vgs))
	}
	return vgs[0]
}

// TestLVM2Tools builds the volumes with the real lvm2 tools on loop
// devices over an image file, writes known data into the LVs, detaches
// everything and reads the image with this package.
func TestLVM2Tools(t *testing.T) {
	testutil.NeedRoot(t, "building LVM volumes needs root (loop devices)")
	for _, tool := range []string{"losetup", "lvm", "sfdisk"} {
		testutil.NeedTool(t, tool)
	}
	img, rep := buildLVM(t)
	verify(t, img, rep)
	if *update {
		testutil.WriteGz(t, "testdata/lvm.img.gz", img)
		js, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile("testdata/lvm.json", append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// dmAvailable tells whether device-mapper works here; without it the LVs
// are made with activation disabled and the data is written at the
// physical extents that lvs reports.
func dmAvailable() bool {
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		return false
	}
	_, err := testutil.RunErr("dmsetup", "version")
	return err == nil
}

func buildLVM(t *testing.T) ([]byte, report) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, diskSize); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", path)
	cmd.Stdin = strings.NewReader(diskLayout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	// One loop device per PV partition (partition scanning of loop
	// devices is not available everywhere).
	starts := map[string]int64{}
	var loops []string
	for _, p := range [][2]int64{{6144, 10240}, {16384, 10240}} {
		loop := testutil.Loop(t, path, "--offset", strconv.FormatInt(p[0]*512, 10),
			"--sizelimit", strconv.FormatInt(p[1]*512, 10))
		loops = append(loops, loop)
		starts[loop] = p[0] * 512
	}
	dm := dmAvailable()
	vgName := "VolGroup00"
	if dm {
		if m, _ := filepath.Glob("/dev/mapper/VolGroup00-*"); len(m) > 0 {
			vgName = fmt.Sprintf("VolGroup00t%d", os.Getpid()) // the host has its own VolGroup00 active
		}
	}
	// Only our loop devices are seen, nothing goes to /etc/lvm.
	conf := "backup { backup=0 archive=0 } devices { obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 monitoring=0 }"
	if !dm {
		conf += " global { activation=0 }"
	}
	lvm := func(args ...string) []byte {
		t.Helper()
		full := append([]string{args[0], "--devices", strings.Join(loops, ","), "--config", conf}, args[1:]...)
		return testutil.Run(t, "lvm", full...)
	}
	lvm("pvcreate", "-q", loops[0], loops[1])
	lvm("vgcreate", "-q", "-s", "1M", vgName, loops[0], loops[1])
	if dm {
		t.Cleanup(func() {
			if _, err := testutil.RunErr("lvm", "vgchange", "--devices", strings.Join(loops, ","), "--config", conf, "-an", vgName); err != nil {
				t.Errorf("deactivating: %v", err)
			}
		})
	}
	create := []string{"-q", "-Zn"}
	if !dm {
		create = append(create, "-an")
	}
	lvm(append([]string{"lvcreate", "-L", "3M", "-n", "LogVol00"}, append(create, vgName)...)...)
	lvm(append([]string{"lvcreate", "-i", "2", "-I", "16k", "-L", "2M", "-n", "LogVol01"}, append(create, vgName)...)...)
	lvm("lvextend", "-q", "-L", "+2M", vgName+"/LogVol00")

	var segs struct {
		Report []struct {
			Seg []struct {
				Name       string `json:"lv_name"`
				UUID       string `json:"lv_uuid"`
				Size       string `json:"lv_size"`
				SegStart   string `json:"seg_start"`
				SegSize    string `json:"seg_size"`
				SegType    string `json:"segtype"`
				Stripes    string `json:"stripes"`
				StripeSize string `json:"stripe_size"`
				PERanges   string `json:"seg_pe_ranges"`
			} `json:"seg"`
			PV []struct {
				Name    string `json:"pv_name"`
				PEStart string `json:"pe_start"`
			} `json:"pv"`
			VG []json.RawMessage `json:"vg"`
		} `json:"report"`
	}
	units := []string{"--reportformat", "json", "--units", "b", "--nosuffix"}
	if err := json.Unmarshal(lvm(append([]string{"lvs", "--segments", "-o", "lv_name,lv_uuid,lv_size,seg_start,seg_size,segtype,stripes,stripe_size,seg_pe_ranges"}, append(units, vgName)...)...), &segs); err != nil {
		t.Fatal(err)
	}
	var pvs, vgs = segs, segs
	if err := json.Unmarshal(lvm(append([]string{"pvs", "-o", "pv_name,pe_start"}, units...)...), &pvs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lvm(append([]string{"vgs", "-o", "vg_name,vg_uuid,vg_extent_size,vg_seqno"}, append(units, vgName)...)...), &vgs); err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(vgs.Report[0].VG[0], &rep.VG); err != nil {
		t.Fatal(err)
	}
	peStart := map[string]int64{}
	for _, pv := range pvs.Report[0].PV {
		peStart[pv.Name] = atoi(t, pv.PEStart)
	}
	extent := atoi(t, rep.VG.ExtentSize)

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	for _, s := range segs.Report[0].Seg {
		if !seen[s.Name] {
			seen[s.Name] = true
			rep.LVs = append(rep.LVs, struct {
				Name    string `json:"lv_name"`
				UUID    string `json:"lv_uuid"`
				Size    string `json:"lv_size"`
				SegType string `json:"segtype"`
			}{s.Name, s.UUID, s.Size, s.SegType})
		}
		data := pattern(s.Name, atoi(t, s.Size))
		segStart, segSize := atoi(t, s.SegStart), atoi(t, s.SegSize)
		if dm {
			continue // written through device-mapper below
		}
		// Place the segment's data as dm-linear / dm-stripe would: the
		// segment is cut into chunks dealt round-robin to the stripes.
		ranges := strings.Fields(s.PERanges)
		n := atoi(t, s.Stripes)
		chunk := atoi(t, s.StripeSize)
		if n == 1 {
			chunk = segSize
		}
		for off := int64(0); off < segSize; off += chunk {
			c := off / chunk
			dev, pe := parseRange(t, ranges[c%n])
			phys := starts[dev] + peStart[dev] + pe*extent + (c/n)*chunk
			if _, err := f.WriteAt(data[segStart+off:segStart+off+chunk], phys); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dm {
		testutil.Run(t, "dmsetup", "mknodes")
		for _, lv := range rep.LVs {
			node := fmt.Sprintf("/dev/mapper/%s-%s", vgName, lv.Name)
			if err := os.WriteFile(node, pattern(lv.Name, atoi(t, lv.Size)), 0); err != nil {
				t.Fatalf("writing %s: %v", node, err)
			}
		}
		lvm("vgchange", "-an", vgName)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if vgName != "VolGroup00" {
		rep.VG.Name = vgName
	}
	return img, rep
}

// parseRange parses "/dev/loop3:4-7" into the device and first extent.
func parseRange(t *testing.T, r string) (string, int64) {
	t.Helper()
	dev, ext, ok := strings.Cut(r, ":")
	first, _, ok2 := strings.Cut(ext, "-")
	if !ok || !ok2 {
		t.Fatalf("bad PE range %q", r)
	}
	return dev, atoi(t, first)
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return n
}

// TestTwoMetadataAreas: a PV made with two metadata copies still reads
// when the first copy is damaged.
func TestTwoMetadataAreas(t *testing.T) {
	testutil.NeedRoot(t, "building LVM volumes needs root (loop devices)")
	testutil.NeedTool(t, "losetup")
	testutil.NeedTool(t, "lvm")
	path := filepath.Join(t.TempDir(), "pv.img")
	if err := os.WriteFile(path, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	loop := testutil.Loop(t, path)
	conf := "backup { backup=0 archive=0 } global { activation=0 }"
	lvm := func(args ...string) {
		t.Helper()
		testutil.Run(t, "lvm", append([]string{args[0], "--devices", loop, "--config", conf}, args[1:]...)...)
	}
	lvm("pvcreate", "-q", "--pvmetadatacopies", "2", loop)
	lvm("vgcreate", "-q", "-s", "1M", "VolGroup00", loop)
	lvm("lvcreate", "-q", "-an", "-Zn", "-L", "2M", "-n", "LogVol00", "VolGroup00")
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := readLabel(&testutil.MemDev{B: img})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.mdas) != 2 {
		t.Fatalf("%d metadata areas, want 2", len(l.mdas))
	}
	img[l.mdas[0].offset+100]++ // the first copy's header checksum fails
	vgs, err := Scan(&testutil.MemDev{B: img})
	if err != nil {
		t.Fatal(err)
	}
	if len(vgs) != 1 || vgs[0].LV("LogVol00") == nil {
		t.Errorf("VGs from the second copy: %+v", vgs)
	}
	img[l.mdas[1].offset+100]++ // both damaged
	if _, err := Scan(&testutil.MemDev{B: img}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("both copies damaged: %v, want ErrCorrupt", err)
	}
}
