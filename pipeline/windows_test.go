package pipeline_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
	"github.com/xen2kvm/xen2kvm/ntfs"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
)

// rawVolume returns a raw image's first partition as bytes, with the
// image, converting a qcow2 image with qemu-img first.
func rawVolume(t *testing.T, img string) (disk []byte, vol []byte, p *part.Partition) {
	t.Helper()
	if strings.HasSuffix(img, ".qcow2") {
		raw := filepath.Join(t.TempDir(), "out.raw")
		testutil.Run(t, "qemu-img", "convert", "-O", "raw", img, raw)
		img = raw
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := part.Read(&testutil.MemDev{B: b})
	if err != nil {
		t.Fatal(err)
	}
	p = tab.Partitions[0]
	return b, b[p.Start : p.Start+p.Size], p
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMigrateWindows migrates Windows Server 2003 and 2008 guests with the
// PV drivers of each vendor and checks the output with real tools: the
// SYSTEM hive (extracted by ntfscat) differs from the source's by exactly
// the planned values (hivexregedit --export), only the hive's clusters
// changed on the disk, ntfsfix -n and ntfsinfo find the volume
// consistent, and the libvirt XML (virt-xml-validate) and launch script
// carry the Windows hardware.
func TestMigrateWindows(t *testing.T) {
	testutil.NeedTool(t, "qemu-img")
	testutil.NeedTool(t, "virt-xml-validate")
	for _, tc := range []struct {
		spec   guestgen.WindowsSpec
		format string
		xml    []string
		argv   []string
	}{
		{guestgen.WindowsSpec{Name: "w2k3", Version: "2003", Arch: "x86", PV: "gplpv", Tablet: true}, "raw",
			[]string{`<model type="cirrus">`, `<clock offset="localtime">`, `<timer name="rtc" tickpolicy="catchup">`, `<input type="tablet" bus="usb">`, `<target dev="hda" bus="ide">`, `<model type="rtl8139">`},
			[]string{"-vga cirrus", "-rtc base=localtime,driftfix=slew", "usb-tablet", "rtl8139"}},
		{guestgen.WindowsSpec{Name: "w2k8", Version: "2008", Arch: "x64", PV: "citrix", UTC: true, NIC: "e1000"}, "qcow2",
			[]string{`<model type="vga">`, `<clock offset="utc">`, `<timer name="rtc" tickpolicy="catchup">`, `<target dev="hda" bus="ide">`, `<model type="e1000">`},
			[]string{"-vga std", "-rtc base=utc,driftfix=slew", "e1000"}},
		{guestgen.WindowsSpec{Name: "w2k3rh", Version: "2003", Arch: "x64", PV: "redhat"}, "raw",
			[]string{`<model type="cirrus">`, `<clock offset="localtime">`},
			[]string{"-vga cirrus"}},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			g := wintest.Build(t, tc.spec)
			sourcesUnchanged(t, g)
			out := t.TempDir()
			opts := pipeline.Options{OutDir: out, Format: tc.format, DiskMap: []pipeline.PathMap{{Old: g.XenImageDir, New: filepath.Dir(g.Images[0])}}}

			// The dry run plans the registry edits and writes nothing.
			dry := opts
			dry.DryRun = true
			res, err := pipeline.Migrate(context.Background(), g.Config, dry)
			if err != nil {
				t.Fatal(err)
			}
			rep := res.Report
			if rep.OS == nil || rep.OS.Distro != "windows" || len(rep.OS.Details) == 0 {
				t.Fatalf("dry run OS: %+v", rep.OS)
			}
			planned := map[string][2]string{} // key\value -> old, new
			for _, e := range rep.Edits {
				for _, l := range strings.Split(strings.TrimSpace(e.Diff), "\n") {
					kv, change, ok := strings.Cut(l, ": ")
					old, nw, ok2 := strings.Cut(change, " -> ")
					if !ok || !ok2 || !strings.HasPrefix(kv, `HKLM\SYSTEM\`) {
						t.Fatalf("edit line %q", l)
					}
					planned[strings.ToLower(strings.TrimPrefix(kv, `HKLM\SYSTEM\`))] = [2]string{old, nw}
				}
			}
			if len(planned) == 0 {
				t.Fatal("no registry edits planned")
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("the dry run wrote %d files", len(ents))
			}

			res, err = pipeline.Migrate(context.Background(), g.Config, opts)
			if err != nil {
				t.Fatal(err)
			}
			rep = res.Report
			if rep.Boot == nil || rep.Boot.Ran || !strings.Contains(rep.Boot.Skipped, "cannot prove") {
				t.Errorf("boot check: %+v", rep.Boot)
			}
			if len(rep.Validation) < 3 {
				t.Errorf("validation: %+v", rep.Validation)
			}
			for _, c := range rep.Validation {
				if !c.OK {
					t.Errorf("validation %s: %s", c.Name, c.Detail)
				}
			}

			xmlPath := filepath.Join(out, tc.spec.Name+".xml")
			x, err := os.ReadFile(xmlPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.xml {
				if !strings.Contains(string(x), w) {
					t.Errorf("XML lacks %s", w)
				}
			}
			if o, err := exec.Command("virt-xml-validate", xmlPath, "domain").CombinedOutput(); err != nil {
				t.Errorf("virt-xml-validate: %v\n%s", err, o)
			}
			if _, err := os.Stat(filepath.Join(out, tc.spec.Name+"-virtio.xml")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a virtio XML without --virtio-win: %v", err)
			}
			sh, err := os.ReadFile(filepath.Join(out, tc.spec.Name+".sh"))
			if err != nil {
				t.Fatal(err)
			}
			argv := strings.Join(strings.Fields(strings.ReplaceAll(string(sh), "\\\n", " ")), " ")
			for _, w := range tc.argv {
				if !strings.Contains(argv, w) {
					t.Errorf("launch script lacks %q:\n%s", w, sh)
				}
			}

			// The hives: exactly the planned values changed.
			srcDisk, srcVol, _ := rawVolume(t, g.Images[0])
			outDisk, outVol, p := rawVolume(t, filepath.Join(out, tc.spec.Name+"-hda."+tc.format))
			src, err := ntfs.Open(&testutil.MemDev{B: srcVol})
			if err != nil {
				t.Fatal(err)
			}
			hp, err := src.RealPath("WINDOWS/system32/config/SYSTEM")
			if err != nil {
				t.Fatal(err)
			}
			srcFile := writeTemp(t, "src-vol", srcVol)
			outFile := writeTemp(t, "out-vol", outVol)
			before := testutil.RegExport(t, writeTemp(t, "SYSTEM.before", testutil.Run(t, "ntfscat", srcFile, hp)))
			after := testutil.RegExport(t, writeTemp(t, "SYSTEM.after", testutil.Run(t, "ntfscat", outFile, hp)))
			if len(before) != len(after) {
				t.Errorf("%d keys and values before, %d after", len(before), len(after))
			}
			for k, old := range before {
				nw := after[k]
				pl, isPlanned := planned[k]
				switch {
				case !isPlanned && nw != old:
					t.Errorf("unplanned change %s: %s -> %s", k, old, nw)
				case isPlanned && nw == old:
					t.Errorf("planned change %s (%s -> %s) not made", k, pl[0], pl[1])
				case isPlanned && strings.HasPrefix(old, "dword:") && (old != "dword:0000000"+pl[0] || nw != "dword:0000000"+pl[1]):
					t.Errorf("%s: %s -> %s, planned %s -> %s", k, old, nw, pl[0], pl[1])
				}
			}
			for k := range planned {
				if _, ok := before[k]; !ok {
					t.Errorf("planned %s is not in the source hive", k)
				}
			}
			// hivexget agrees on one PV driver.
			hv := writeTemp(t, "SYSTEM", testutil.Run(t, "ntfscat", outFile, hp))
			for k, pl := range planned {
				if strings.HasSuffix(k, `\start`) && pl[1] == "4" {
					key := strings.TrimSuffix(k, `\start`)
					if got := strings.TrimSpace(string(testutil.Run(t, "hivexget", hv, `\`+key, "Start"))); got != "4" {
						t.Errorf("hivexget %s Start = %s", key, got)
					}
					break
				}
			}

			// Only the hive's clusters changed on the disk; the volume is
			// consistent and the hive kept its size and allocation.
			f, err := src.File(hp)
			if err != nil {
				t.Fatal(err)
			}
			if len(srcDisk) != len(outDisk) {
				t.Fatalf("output disk is %d bytes, source %d", len(outDisk), len(srcDisk))
			}
			for i := range srcDisk {
				if srcDisk[i] == outDisk[i] {
					continue
				}
				off, in := int64(i)-p.Start, false
				for _, e := range f.Extents {
					in = in || (off >= e.VolumeOffset && off < e.VolumeOffset+e.Length)
				}
				if !in {
					t.Fatalf("disk byte %d changed outside the SYSTEM hive's clusters", i)
				}
			}
			if o, err := exec.Command("ntfsfix", "-n", outFile).CombinedOutput(); err != nil {
				t.Errorf("ntfsfix -n: %v\n%s", err, o)
			}
			infoBefore := string(testutil.Run(t, "ntfsinfo", "-t", "-F", "/"+hp, srcFile))
			infoAfter := string(testutil.Run(t, "ntfsinfo", "-t", "-F", "/"+hp, outFile))
			if infoBefore != infoAfter || !strings.Contains(infoAfter, "Allocated Size") {
				t.Errorf("ntfsinfo of the hive changed:\n%s\n----\n%s", infoBefore, infoAfter)
			}
		})
	}
}

func TestMigrateWindowsRefused(t *testing.T) {
	for _, spec := range []guestgen.WindowsSpec{
		{Name: "dirty", Version: "2003", Arch: "x86", PV: "gplpv", Dirty: true},
		{Name: "hib", Version: "2008", Arch: "x64", PV: "citrix", Hibernated: true},
		{Name: "logpending", Version: "2003", Arch: "x86", PV: "redhat", LogPending: true},
	} {
		t.Run(spec.Name, func(t *testing.T) {
			g := wintest.Build(t, spec)
			sourcesUnchanged(t, g)
			out := t.TempDir()
			res, err := pipeline.Migrate(context.Background(), g.Config, pipeline.Options{OutDir: out,
				DiskMap: []pipeline.PathMap{{Old: g.XenImageDir, New: filepath.Dir(g.Images[0])}}})
			if !errors.Is(err, pipeline.ErrBlocked) {
				t.Fatalf("err = %v, want ErrBlocked", err)
			}
			if res == nil || len(res.Report.Blockers) == 0 {
				t.Fatalf("no blockers reported")
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("a refused migration wrote %v", names)
			}
		})
	}
}

// TestMigrateWindowsVirtioWin stages virtio-win from an ISO (2008; given
// as the virtio-win RPM's folder holding it), a folder (2003) and the RPM's
// drivers tree (2008 R2, amd64/Win2008R2): the XML carries the CD-ROM and
// the first-boot disk, the
// disk reads back with mtools and fsck.fat, and the SOFTWARE hive gained
// exactly the RunOnce value (hivexregedit --export, hivexget).
func TestMigrateWindowsVirtioWin(t *testing.T) {
	for _, tc := range []struct {
		spec guestgen.WindowsSpec
		// iso: the virtio-win RPM's folder holding the ISO; rpm: the RPM's
		// folder without it (its drivers/ARCH/WinOS tree); neither: the
		// ISO's tree as a folder.
		iso, rpm bool
		method   string // the install method note
	}{
		{guestgen.WindowsSpec{Name: "w2k8v", Version: "2008", Arch: "x64", PV: "citrix"}, true, false,
			"pnputil -i -a adds viostor/2k8/amd64/viostor.inf and NetKVM/2k8/amd64/netkvm.inf"},
		{guestgen.WindowsSpec{Name: "w2k3v", Version: "2003", Arch: "x86", PV: "gplpv"}, false, false,
			"Windows 2003 has no pnputil and virtio-win has no installer for it"},
		{guestgen.WindowsSpec{Name: "w2k8r2v", Version: "2008R2", Arch: "x64", PV: "gplpv"}, false, true,
			"pnputil -i -a adds amd64/Win2008R2/viostor.inf and amd64/Win2008R2/netkvm.inf"},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			testutil.NeedTool(t, "mtype")
			testutil.NeedTool(t, "fsck.fat")
			g := wintest.Build(t, tc.spec)
			sourcesUnchanged(t, g)
			vw, arg := wintest.VirtioWinTree(t), ""
			if tc.iso {
				// The virtio-win RPM's folder (/usr/share/virtio-win), whose
				// ISO is taken over its drivers/ tree.
				arg = wintest.VirtioWinRPM(t)
				iso := filepath.Join(arg, "virtio-win.iso")
				testutil.Run(t, testutil.NeedTool(t, "genisoimage"), "-quiet", "-J", "-R", "-o", iso, vw)
				vw = iso
			} else if tc.rpm {
				arg = wintest.VirtioWinRPM(t)
				vw = filepath.Join(arg, "drivers")
			} else {
				arg = vw
			}
			out := t.TempDir()
			opts := pipeline.Options{OutDir: out, Format: "raw", VirtioWin: arg,
				DiskMap: []pipeline.PathMap{{Old: g.XenImageDir, New: filepath.Dir(g.Images[0])}}}
			// The dry run shows the install method and the viostor entries
			// and writes nothing.
			dry := opts
			dry.DryRun = true
			dres, err := pipeline.Migrate(context.Background(), g.Config, dry)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(dres.Report.Notes, "\n"), "virtio-win install method: ") ||
				!slices.ContainsFunc(dres.Report.Edits, func(e report.Edit) bool { return e.Rule == "win-viostor-boot" }) {
				t.Errorf("dry run: notes %v, edits %v", dres.Report.Notes, dres.Report.Edits)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("the dry run wrote %d files", len(ents))
			}
			res, err := pipeline.Migrate(context.Background(), g.Config, opts)
			if err != nil {
				t.Fatal(err)
			}
			notes := strings.Join(res.Report.Notes, "\n")
			if !strings.Contains(notes, "switching to virtio: when") || !strings.Contains(notes, "RunOnce") {
				t.Errorf("notes:\n%s", notes)
			}
			if tc.iso && !strings.Contains(notes, "virtio-win ("+arg+"): using "+vw+": the virtio-win ISO is attached as a CD-ROM") {
				t.Errorf("notes do not say the RPM folder's ISO is used:\n%s", notes)
			}
			method := "virtio-win install method: " + tc.method
			if !strings.Contains(notes, method) || !tc.rpm && !strings.Contains(notes, "not used: virtio-win-gt-x64.msi") {
				t.Errorf("notes lack %q:\n%s", method, notes)
			}
			name := tc.spec.Name
			x, err := os.ReadFile(filepath.Join(out, name+".xml"))
			if err != nil {
				t.Fatal(err)
			}
			fat := filepath.Join(out, name+"-hdb.raw")
			for _, want := range []string{`<source file="` + fat + `">`, `<target dev="hdb" bus="ide">`} {
				if !strings.Contains(string(x), want) {
					t.Errorf("XML lacks %s:\n%s", want, x)
				}
			}
			if tc.iso != strings.Contains(string(x), `<source file="`+vw+`">`) {
				t.Errorf("ISO attached: want %v:\n%s", tc.iso, x)
			}
			// NAME-virtio.xml: the same guest on virtio, without the
			// first-boot disk and the ISO; the notes say when to define it.
			vx, err := os.ReadFile(filepath.Join(out, name+"-virtio.xml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{`<source file="` + filepath.Join(out, name+"-hda.raw") + `">`, `<target dev="vda" bus="virtio">`, `<model type="virtio">`, "<uuid>"} {
				if !strings.Contains(string(vx), want) {
					t.Errorf("virtio XML lacks %s:\n%s", want, vx)
				}
			}
			for _, bad := range []string{fat, vw, `<target dev="hda"`, `<target dev="hdb"`, `<model type="rtl8139">`} {
				if strings.Contains(string(vx), bad) {
					t.Errorf("virtio XML has %s:\n%s", bad, vx)
				}
			}
			if o, err := exec.Command("virt-xml-validate", filepath.Join(out, name+"-virtio.xml"), "domain").CombinedOutput(); err != nil {
				t.Errorf("virt-xml-validate virtio XML: %v\n%s", err, o)
			}
			if !slices.Contains(res.Report.Files, name+"-virtio.xml") {
				t.Errorf("report files %v lack the virtio XML", res.Report.Files)
			}
			for _, want := range []string{"virsh define " + name + "-virtio.xml", "next interactive logon of an administrator", "sets no autologon", `"viostor is boot-start: the system disk can be switched to virtio"`} {
				if !strings.Contains(notes, want) {
					t.Errorf("notes lack %q:\n%s", want, notes)
				}
			}
			if o, err := exec.Command("virt-xml-validate", filepath.Join(out, name+".xml"), "domain").CombinedOutput(); err != nil {
				t.Errorf("virt-xml-validate: %v\n%s", err, o)
			}
			sh, _ := os.ReadFile(filepath.Join(out, name+".sh"))
			if !strings.Contains(string(sh), name+"-hdb.raw") {
				t.Errorf("launch script does not attach the first-boot disk:\n%s", sh)
			}
			cmd := exec.Command("mtype", "-i", fat+"@@1048576", "::XEN2KVM/FIRSTBOOT.CMD")
			cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
			script, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("mtype: %v\n%s", err, script)
			}
			want := "pnputil -i -a"
			if tc.spec.Version == "2003" {
				want = "DevicePath"
			}
			if !strings.Contains(string(script), want) {
				t.Errorf("FIRSTBOOT.CMD lacks %q:\n%s", want, script)
			}
			fatImg, _ := os.ReadFile(fat)
			part := writeTemp(t, "fat", fatImg[1<<20:])
			if o, err := exec.Command("fsck.fat", "-n", part).CombinedOutput(); err != nil {
				t.Errorf("fsck.fat -n: %v\n%s", err, o)
			}

			// SOFTWARE: exactly one value more, the RunOnce command.
			_, srcVol, _ := rawVolume(t, g.Images[0])
			_, outVol, _ := rawVolume(t, filepath.Join(out, name+"-hda.raw"))
			src, err := ntfs.Open(&testutil.MemDev{B: srcVol})
			if err != nil {
				t.Fatal(err)
			}
			hp, err := src.RealPath("WINDOWS/system32/config/SOFTWARE")
			if err != nil {
				t.Fatal(err)
			}
			before := testutil.RegExport(t, writeTemp(t, "SOFTWARE.before", testutil.Run(t, "ntfscat", writeTemp(t, "src", srcVol), hp)))
			hv := writeTemp(t, "SOFTWARE", testutil.Run(t, "ntfscat", writeTemp(t, "out", outVol), hp))
			after := testutil.RegExport(t, hv)
			key := `microsoft\windows\currentversion\runonce\xen2kvm-virtio-win`
			if _, ok := after[key]; !ok {
				t.Fatalf("no RunOnce value in the output's SOFTWARE hive")
			}
			delete(after, key)
			if len(after) != len(before) {
				t.Errorf("%d values after (besides RunOnce), %d before", len(after), len(before))
			}
			for k, v := range before {
				if after[k] != v {
					t.Errorf("SOFTWARE %s changed: %s -> %s", k, v, after[k])
				}
			}
			got := strings.TrimSpace(string(testutil.Run(t, "hivexget", hv, `\Microsoft\Windows\CurrentVersion\RunOnce`, "xen2kvm-virtio-win")))
			if !strings.HasPrefix(got, `cmd.exe /c for %d in (C D E`) || !strings.HasSuffix(got, `call %d:\XEN2KVM\FIRSTBOOT.CMD`) {
				t.Errorf("RunOnce = %q", got)
			}

			// SYSTEM: the viostor boot entries the report plans are in the
			// output's hive (hivexget), which kept its size and clusters.
			sysPath, err := src.RealPath("WINDOWS/system32/config/SYSTEM")
			if err != nil {
				t.Fatal(err)
			}
			outFile := writeTemp(t, "outvol", outVol)
			sysOut := writeTemp(t, "SYSTEM", testutil.Run(t, "ntfscat", outFile, sysPath))
			sysBefore := testutil.RegExport(t, writeTemp(t, "SYSTEM.before", testutil.Run(t, "ntfscat", writeTemp(t, "srcvol", srcVol), sysPath)))
			sysAfter := testutil.RegExport(t, sysOut)
			var viostor int
			for _, e := range res.Report.Edits {
				if e.Rule != "win-viostor-boot" {
					continue
				}
				for _, l := range strings.Split(strings.TrimSpace(e.Diff), "\n") {
					kv, change, _ := strings.Cut(strings.TrimPrefix(l, `HKLM\SYSTEM\`), ": ")
					_, nw, _ := strings.Cut(change, " -> ")
					key, val := kv[:strings.LastIndexByte(kv, '\\')], kv[strings.LastIndexByte(kv, '\\')+1:]
					if _, ok := sysBefore[strings.ToLower(kv)]; ok {
						t.Errorf("planned addition %s exists in the source", kv)
					}
					if got := strings.TrimSpace(string(testutil.Run(t, "hivexget", sysOut, `\`+key, val))); got != nw {
						t.Errorf("hivexget %s %s = %q, planned %q", key, val, got, nw)
					}
					viostor++
				}
			}
			if viostor != 2*(7*2+5) { // 7 CriticalDeviceDatabase keys of 2 values, the service's 5 values
				t.Errorf("%d viostor values planned, want 38", viostor)
			}
			if len(sysAfter) != len(sysBefore)+viostor+2*8 { // the values and their 8 keys a control set
				t.Errorf("SYSTEM: %d keys and values after, %d before, %d values and 16 keys added", len(sysAfter), len(sysBefore), viostor)
			}
			infoBefore := string(testutil.Run(t, "ntfsinfo", "-t", "-F", "/"+sysPath, writeTemp(t, "srcvol2", srcVol)))
			if infoAfter := string(testutil.Run(t, "ntfsinfo", "-t", "-F", "/"+sysPath, outFile)); infoAfter != infoBefore {
				t.Errorf("ntfsinfo of the SYSTEM hive changed:\n%s\n----\n%s", infoBefore, infoAfter)
			}
			if o, err := exec.Command("ntfsfix", "-n", outFile).CombinedOutput(); err != nil {
				t.Errorf("ntfsfix -n: %v\n%s", err, o)
			}
		})
	}
}

// TestUnreadableNTFSTakenForWindows: guestgen's opaque HVM guest has an
// NTFS boot sector and nothing behind it; the dry run warns that it cannot
// read it and still gives the guest Windows' hardware.
func TestUnreadableNTFSTakenForWindows(t *testing.T) {
	g, err := guestgen.Build(context.Background(), t.TempDir(), guestgen.Windows2003HVM)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Migrate(context.Background(), g.Config, pipeline.Options{RunOptions: pipeline.RunOptions{DryRun: true},
		DiskMap: []pipeline.PathMap{{Old: g.XenImageDir, New: filepath.Dir(g.Images[0])}}})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Report
	if !strings.Contains(strings.Join(r.Warnings, "\n"), "NTFS volume xen2kvm cannot read") {
		t.Errorf("warnings %q", r.Warnings)
	}
	for _, want := range []string{`<model type="cirrus">`, `<timer name="rtc" tickpolicy="catchup">`} {
		if !strings.Contains(r.TargetXML, want) {
			t.Errorf("XML lacks %s", want)
		}
	}
	if len(r.Edits) != 0 {
		t.Errorf("edits planned on an unreadable volume: %+v", r.Edits)
	}
}
