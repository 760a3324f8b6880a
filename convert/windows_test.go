package convert_test

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
	"github.com/xen2kvm/xen2kvm/ntfs"
)

type winDisk struct {
	dev *testutil.MemDev
	p   *part.Partition
	vol *ntfs.Volume
}

func openWin(t *testing.T, img string) *winDisk {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	d := &winDisk{dev: &testutil.MemDev{B: b}}
	tab, err := part.Read(d.dev)
	if err != nil {
		t.Fatal(err)
	}
	d.p = tab.Partitions[0]
	if d.vol, err = ntfs.Open(d.p.Device()); err != nil {
		t.Fatal(err)
	}
	return d
}

// hiveFile extracts a file from the volume with ntfscat (the oracle).
func (d *winDisk) hiveFile(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.WriteFile(vol, d.dev.B[d.p.Start:d.p.Start+d.p.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(out, testutil.Run(t, "ntfscat", vol, path), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func (d *winDisk) volFile(t *testing.T) string {
	vol := filepath.Join(t.TempDir(), "vol")
	if err := os.WriteFile(vol, d.dev.B[d.p.Start:d.p.Start+d.p.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	return vol
}

// regExport reads hivexregedit --export output into key -> value name ->
// its exported data.
func regExport(t *testing.T, hiveFile string) map[string]map[string]string {
	t.Helper()
	m := map[string]map[string]string{}
	for k, v := range testutil.RegExport(t, hiveFile) {
		if v == "(key)" {
			if m[k] == nil {
				m[k] = map[string]string{}
			}
			continue
		}
		i := strings.LastIndexByte(k, '\\')
		if m[k[:i]] == nil {
			m[k[:i]] = map[string]string{}
		}
		m[k[:i]][k[i+1:]] = v
	}
	return m
}

func TestInspectWindows(t *testing.T) {
	for _, tc := range []struct {
		spec    guestgen.WindowsSpec
		product string
		pv      []string
		boot    string
	}{
		{guestgen.WindowsSpec{Name: "w2k3", Version: "2003", Arch: "x86", PV: "gplpv"}, "Microsoft Windows Server 2003 Service Pack 2 (5.2.3790, x86)", []string{"xennet", "xenpci", "xenscsi", "xenusb", "xenvbd"}, "boot.ini"},
		{guestgen.WindowsSpec{Name: "w2k8", Version: "2008", Arch: "x64", PV: "citrix", UTC: true, Hostname: "DB02"}, "Windows Server (R) 2008 Enterprise Service Pack 2 (6.0.6002, AMD64)", []string{"xenbus", "xenfilt", "xeniface", "xennet", "xenvbd", "xenvif"}, "Boot/BCD"},
		{guestgen.WindowsSpec{Name: "w2k3rh", Version: "2003", Arch: "x64", PV: "redhat"}, "Microsoft Windows Server 2003 Service Pack 2 (5.2.3790, AMD64)", []string{"rhelfltr", "rhelnet", "rhelscsi"}, "boot.ini"},
		{guestgen.WindowsSpec{Name: "w2k8r2", Version: "2008R2", Arch: "x64", PV: "gplpv", Hostname: "APP03"}, "Windows Server 2008 R2 Enterprise Service Pack 1 (6.1.7601, AMD64)", []string{"xennet", "xenpci", "xenscsi", "xenusb", "xenvbd"}, "Boot/BCD"},
		{guestgen.WindowsSpec{Name: "plain", Version: "2003", Arch: "x86"}, "Microsoft Windows Server 2003 Service Pack 2 (5.2.3790, x86)", nil, "boot.ini"},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			g := wintest.Build(t, tc.spec)
			d := openWin(t, g.Images[0])
			w, err := convert.InspectWindows(d.vol)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Product(); got != tc.product {
				t.Errorf("product %q, want %q", got, tc.product)
			}
			host := tc.spec.Hostname
			if host == "" {
				host = strings.ToUpper(tc.spec.Name)
			}
			if w.Hostname != host || w.CurrentControlSet != 1 || !slices.Equal(w.ControlSets, []int{1, 2}) {
				t.Errorf("hostname %q, control set %d of %v", w.Hostname, w.CurrentControlSet, w.ControlSets)
			}
			if w.BootConfig != tc.boot || w.RealTimeIsUniversal != tc.spec.UTC || w.Is2003() != (tc.spec.Version == "2003") {
				t.Errorf("boot %q, UTC %v, 2003 %v", w.BootConfig, w.RealTimeIsUniversal, w.Is2003())
			}
			var pv []string
			for _, s := range w.PVDrivers {
				pv = append(pv, s.Name)
			}
			slices.Sort(pv)
			if !slices.Equal(pv, tc.pv) {
				t.Errorf("PV drivers %v, want %v", pv, tc.pv)
			}
			if len(w.Storage) != 3 {
				t.Errorf("storage drivers %+v", w.Storage)
			}
			if b := w.Blockers(); len(b) > 0 {
				t.Errorf("blockers %v", b)
			}
		})
	}
}

// TestApplyWindows plans and applies the registry edits, then checks with
// hivexregedit --export on the hive read back by ntfscat that exactly the
// planned values changed, that the hive and its clusters did not move or
// grow, and that ntfsfix -n finds the volume consistent.
func TestApplyWindows(t *testing.T) {
	for _, tc := range []struct {
		spec    guestgen.WindowsSpec
		viostor bool
	}{
		{guestgen.WindowsSpec{Name: "w2k3", Version: "2003", Arch: "x86", PV: "gplpv"}, true},
		{guestgen.WindowsSpec{Name: "w2k8", Version: "2008", Arch: "x64", PV: "citrix"}, true},
		{guestgen.WindowsSpec{Name: "w2k8r2", Version: "2008R2", Arch: "x64", PV: "gplpv"}, true},
		{guestgen.WindowsSpec{Name: "w2k3rh", Version: "2003", Arch: "x86", PV: "redhat"}, false},
	} {
		spec := tc.spec
		opts := convert.WindowsOptions{Viostor: tc.viostor}
		t.Run(spec.Name, func(t *testing.T) {
			g := wintest.Build(t, spec)
			d := openWin(t, g.Images[0])
			w, err := convert.InspectWindows(d.vol)
			if err != nil {
				t.Fatal(err)
			}
			hp := w.HivePath("SYSTEM")
			before := regExport(t, d.hiveFile(t, hp))
			f0, err := d.vol.File(hp)
			if err != nil {
				t.Fatal(err)
			}
			edits, err := convert.PlanWindows(w, d.vol, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(edits) == 0 {
				t.Fatal("no edits planned")
			}
			want := map[string]string{}             // "key\value" -> new export data
			added := map[string]map[string]string{} // new key -> value -> planned data
			for _, e := range edits {
				key := strings.ToLower(e.Key)
				old := before[key][strings.ToLower(e.Value)]
				if e.Old == "(none)" {
					if old != "" || e.Rule != convert.RuleWinViostor {
						t.Fatalf("planned addition %s: value exists (%q) or rule %s", e, old, e.Rule)
					}
					if added[key] == nil {
						added[key] = map[string]string{}
					}
					added[key][strings.ToLower(e.Value)] = e.New
					continue
				}
				if old == "" {
					t.Fatalf("planned edit %s: no such value in the hive", e)
				}
				want[key+`\`+strings.ToLower(e.Value)] = e.New
			}
			checkViostorPlan(t, added, tc.viostor)
			// Every control set's PV drivers are disabled, both control sets.
			for _, cs := range []string{"controlset001", "controlset002"} {
				for _, s := range w.PVDrivers {
					if e := want[cs+`\services\`+strings.ToLower(s.Name)+`\start`]; e != "4" && s.Start != 4 {
						t.Errorf("%s %s: Start not planned to 4 (%q)", cs, s.Name, e)
					}
				}
				if want[cs+`\services\intelppm\start`] != "4" {
					t.Errorf("%s: intelppm not disabled", cs)
				}
			}
			before1 := slices.Clone(d.dev.B)
			if err := convert.ApplyWindows(w, d.vol, d.p.Device(), edits, opts); err != nil {
				t.Fatal(err)
			}
			// Only bytes inside the hive file's clusters changed.
			for i := range before1 {
				if before1[i] == d.dev.B[i] {
					continue
				}
				off := int64(i) - d.p.Start
				in := false
				for _, x := range f0.Extents {
					in = in || (off >= x.VolumeOffset && off < x.VolumeOffset+x.Length)
				}
				if !in {
					t.Fatalf("byte %d of the disk changed outside the hive's clusters", i)
				}
			}
			d2 := &winDisk{dev: d.dev, p: d.p}
			if d2.vol, err = ntfs.Open(d.p.Device()); err != nil {
				t.Fatal(err)
			}
			hf := d2.hiveFile(t, hp)
			after := regExport(t, hf)
			for key, vals := range before {
				for name, data := range vals {
					got := after[key][name]
					nw, changed := want[key+`\`+name]
					switch {
					case !changed && got != data:
						t.Errorf(`%s\%s changed: %s -> %s`, key, name, data, got)
					case changed && strings.HasPrefix(data, "dword:"):
						if got != "dword:0000000"+nw {
							t.Errorf(`%s\%s = %s, planned %s`, key, name, got, nw)
						}
					case changed && got == data:
						t.Errorf(`%s\%s did not change`, key, name)
					}
				}
			}
			// The added keys hold exactly the planned values (hivexget reads
			// one of each); no other key appeared.
			for key, vals := range added {
				got, ok := after[key]
				if !ok {
					t.Errorf("key %s not added", key)
					continue
				}
				if len(got) != len(vals) {
					t.Errorf("%s has %d values, planned %d: %v", key, len(got), len(vals), got)
				}
				for name, data := range vals {
					if _, ok := got[name]; !ok {
						t.Errorf(`%s\%s not added`, key, name)
						continue
					}
					if out := strings.TrimSpace(string(testutil.Run(t, "hivexget", hf, `\`+key, name))); out != data {
						t.Errorf(`hivexget %s\%s = %q, planned %q`, key, name, out, data)
					}
				}
			}
			for key := range after {
				if _, ok := before[key]; !ok && added[key] == nil {
					t.Errorf("unplanned key %s", key)
				}
			}
			if len(after) != len(before)+len(added) {
				t.Errorf("%d keys after, %d before and %d added", len(after), len(before), len(added))
			}
			// hivexget reads a planned filter change.
			for _, e := range edits {
				if e.Value == "UpperFilters" || e.Value == "LowerFilters" {
					out := strings.TrimSpace(string(testutil.Run(t, "hivexget", hf, `\`+e.Key, e.Value)))
					for _, pv := range w.PVDrivers {
						if strings.Contains(strings.ToLower(out), strings.ToLower(pv.Name)+"\n") || strings.EqualFold(out, pv.Name) {
							t.Errorf("%s still names %s: %q", e, pv.Name, out)
						}
					}
				}
			}
			f1, err := d2.vol.File(hp)
			if err != nil {
				t.Fatal(err)
			}
			if f1.Size != f0.Size || f1.Allocated != f0.Allocated || !slices.Equal(f1.Extents, f0.Extents) {
				t.Errorf("hive file moved or grew: %+v -> %+v", f0, f1)
			}
			vol := d2.volFile(t)
			if out, err := exec.Command("ntfsfix", "-n", vol).CombinedOutput(); err != nil {
				t.Errorf("ntfsfix -n: %v\n%s", err, out)
			}
			info := string(testutil.Run(t, "ntfsinfo", "-F", "/"+hp, vol))
			if !strings.Contains(info, "Data Size:") {
				t.Errorf("ntfsinfo -F %s:\n%s", hp, info)
			}
			// Re-planning on the result finds nothing left to do.
			w2, err := convert.InspectWindows(d2.vol)
			if err != nil {
				t.Fatal(err)
			}
			again, err := convert.PlanWindows(w2, d2.vol, opts)
			if err != nil || len(again) != 0 {
				t.Errorf("second plan: %v, %v", again, err)
			}
		})
	}
}

func TestWindowsBlockers(t *testing.T) {
	for _, tc := range []struct {
		spec guestgen.WindowsSpec
		want string
	}{
		{guestgen.WindowsSpec{Name: "dirty", Version: "2003", Arch: "x86", PV: "gplpv", Dirty: true}, "NTFS volume is dirty"},
		{guestgen.WindowsSpec{Name: "hib", Version: "2008", Arch: "x64", PV: "citrix", Hibernated: true}, "hibernated"},
		{guestgen.WindowsSpec{Name: "log", Version: "2003", Arch: "x86", PV: "redhat", LogPending: true}, "transaction log has not been applied"},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			g := wintest.Build(t, tc.spec)
			d := openWin(t, g.Images[0])
			w, err := convert.InspectWindows(d.vol)
			if err != nil {
				t.Fatal(err)
			}
			b := strings.Join(w.Blockers(), "\n")
			if !strings.Contains(b, tc.want) {
				t.Errorf("blockers %q, want %q", b, tc.want)
			}
			before := slices.Clone(d.dev.B)
			if err := convert.ApplyWindows(w, d.vol, d.p.Device(), []convert.RegEdit{{Hive: "SYSTEM"}}, convert.WindowsOptions{}); err == nil {
				t.Error("ApplyWindows wrote to a blocked volume")
			}
			if !slices.Equal(before, d.dev.B) {
				t.Error("the disk changed")
			}
		})
	}
}

// viostorIDs are the CriticalDeviceDatabase keys of the virtio block
// device: the PCI IDs virtio-win's viostor.inf names (wnet.inf and
// wlh.inf of 2008 to 2015 the transitional DEV_1001 with three
// subsystems, viostor.inx since 2016 also the modern DEV_1042 with its
// SUBSYS and REV, and since 2018 both bare as compatible IDs), "\" as
// "#", lower case.
var viostorIDs = []string{
	"pci#ven_1af4&dev_1001&subsys_00021af4&rev_00", "pci#ven_1af4&dev_1001&subsys_00021af4",
	"pci#ven_1af4&dev_1001&subsys_00000000", "pci#ven_1af4&dev_1001&subsys_00020000",
	"pci#ven_1af4&dev_1001",
	"pci#ven_1af4&dev_1042&subsys_11001af4&rev_01", "pci#ven_1af4&dev_1042",
}

// checkViostorPlan checks the planned viostor boot entries: in both
// control sets, the CriticalDeviceDatabase entries for the virtio block
// device and the viostor service, created disabled.
func checkViostorPlan(t *testing.T, added map[string]map[string]string, viostor bool) {
	t.Helper()
	if !viostor {
		if len(added) != 0 {
			t.Errorf("keys added without virtio-win: %v", added)
		}
		return
	}
	for _, cs := range []string{"controlset001", "controlset002"} {
		for _, id := range viostorIDs {
			got := added[cs+`\control\criticaldevicedatabase\`+id]
			if got["service"] != "viostor" || got["classguid"] != "{4D36E97B-E325-11CE-BFC1-08002BE10318}" || len(got) != 2 {
				t.Errorf("%s %s: %v", cs, id, got)
			}
		}
		want := map[string]string{"type": "1", "start": "4", "errorcontrol": "1", "group": "SCSI miniport", "imagepath": `system32\drivers\viostor.sys`}
		if got := added[cs+`\services\viostor`]; !maps.Equal(got, want) {
			t.Errorf("%s viostor service %v, want %v", cs, got, want)
		}
	}
	if want := 2 * (len(viostorIDs) + 1); len(added) != want {
		t.Errorf("%d keys added, want %d", len(added), want)
	}
}
