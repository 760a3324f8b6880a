package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// -update rewrites the golden files; the flag is shared with the other
// golden tests of this package.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata/")
	}
}

func kvmGoldenUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// kvmGoldenCases: a Xen config under testdata/kvm, the mapping options,
// and the KVM libvirt XML expected in NAME.golden.
var kvmGoldenCases = []struct {
	name string
	opts KVMOptions
}{
	{"pv-pygrub", KVMOptions{Virtio: true, OS: "linux", Images: map[string]Image{
		"xvda": {Path: "/srv/kvm/rhel5pv/rhel5pv-vda.qcow2", Format: "qcow2"},
		"xvdb": {Path: "/srv/kvm/rhel5pv/rhel5pv-vdb.qcow2", Format: "qcow2"},
	}}},
	{"pv-kernel", KVMOptions{Virtio: true, OS: "linux", Images: map[string]Image{
		"xvda": {Path: "/srv/kvm/c4pv/c4pv-vda.raw", Format: "raw"},
		"xvdb": {Path: "/srv/kvm/c4pv/c4pv-vdb.raw", Format: "raw"},
	}}},
	{"hvm-windows-cdrom", KVMOptions{OS: "windows", Images: map[string]Image{
		"hda": {Path: "/srv/kvm/win2k3/win2k3-hda.qcow2", Format: "qcow2"},
	}}},
}

func TestKVMXMLGolden(t *testing.T) {
	for _, tc := range kvmGoldenCases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseFile(filepath.Join("testdata", "kvm", tc.name+".cfg"))
			if err != nil {
				t.Fatal(err)
			}
			k, err := ToKVM(d, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.LibvirtXML()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "kvm", tc.name+".golden")
			if kvmGoldenUpdate() {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("KVM XML differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
			back, err := ParseKVMXML(got)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, k) {
				t.Errorf("round trip through the XML changed the domain:\ngot  %+v\nwant %+v", back, k)
			}
		})
	}
}

// The golden files say what the mapping decided; these check the
// decisions the issue names directly, so a careless -update cannot
// bless a wrong mapping.
func TestToKVMDecisions(t *testing.T) {
	parse := func(name string) *Domain {
		t.Helper()
		d, err := ParseFile(filepath.Join("testdata", "kvm", name+".cfg"))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	t.Run("pv pygrub", func(t *testing.T) {
		k, err := ToKVM(parse("pv-pygrub"), kvmGoldenCases[0].opts)
		if err != nil {
			t.Fatal(err)
		}
		if !k.BootFromDisk || k.Kernel != "" || k.Machine != "pc" || !k.Serial {
			t.Errorf("BootFromDisk %v Kernel %q Machine %q Serial %v", k.BootFromDisk, k.Kernel, k.Machine, k.Serial)
		}
		want := []struct{ target, bus, path, from string }{
			{"vda", "virtio", "/srv/kvm/rhel5pv/rhel5pv-vda.qcow2", "xvda"},
			{"vdb", "virtio", "/srv/kvm/rhel5pv/rhel5pv-vdb.qcow2", "xvdb"},
		}
		if len(k.Disks) != len(want) {
			t.Fatalf("%d disks, want %d", len(k.Disks), len(want))
		}
		for i, w := range want {
			got := k.Disks[i]
			if got.Target != w.target || got.Bus != w.bus || got.Path != w.path || got.Source == nil || got.Source.Target != w.from {
				t.Errorf("disk %d = %+v, want %+v", i, got, w)
			}
		}
		if k.NICs[0].Model != "virtio" || k.NICs[0].MAC != "00:16:36:2f:4a:1c" {
			t.Errorf("NIC = %+v", k.NICs[0])
		}
		if k.Graphics == nil || k.Graphics.Password != "s3cret" || !k.Graphics.AutoPort {
			t.Errorf("Graphics = %+v", k.Graphics)
		}
		if k.MemoryMiB != 768 || k.MaxMemoryMiB != 1024 || k.VCPUs != 2 {
			t.Errorf("memory %d/%d vcpus %d", k.MemoryMiB, k.MaxMemoryMiB, k.VCPUs)
		}
	})

	t.Run("pv external kernel", func(t *testing.T) {
		k, err := ToKVM(parse("pv-kernel"), kvmGoldenCases[1].opts)
		if err != nil {
			t.Fatal(err)
		}
		if k.BootFromDisk || k.Kernel != "/boot/vmlinuz-2.6.9-89.ELxenU" || k.Initrd != "/boot/initrd-2.6.9-89.ELxenU.img" {
			t.Errorf("BootFromDisk %v kernel %q initrd %q", k.BootFromDisk, k.Kernel, k.Initrd)
		}
		if k.Cmdline != "root=/dev/vda1 ro console=ttyS0 3" {
			t.Errorf("Cmdline = %q, want the root device renamed and the console on ttyS0", k.Cmdline)
		}
	})

	t.Run("hvm windows", func(t *testing.T) {
		k, err := ToKVM(parse("hvm-windows-cdrom"), kvmGoldenCases[2].opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.Disks) != 2 {
			t.Fatalf("disks: %+v", k.Disks)
		}
		if d := k.Disks[0]; d.Target != "hda" || d.Bus != "ide" || d.Path != "/srv/kvm/win2k3/win2k3-hda.qcow2" || d.Format != "qcow2" {
			t.Errorf("system disk = %+v", d)
		}
		if d := k.Disks[1]; d.Target != "hdc" || d.Bus != "ide" || d.Device != "cdrom" || !d.ReadOnly || d.Path != "/srv/iso/win2k3-sp2.iso" || d.Format != "raw" {
			t.Errorf("CD-ROM = %+v", d)
		}
		if k.NICs[0].Model != "rtl8139" || k.NICs[0].MAC != "00:16:3e:5a:11:02" {
			t.Errorf("NIC = %+v", k.NICs[0])
		}
		if !k.Localtime || k.BootOrder != "dc" || !k.ACPI || !k.APIC || !k.PAE || !k.USBTablet || k.SoundHW != "es1370" {
			t.Errorf("localtime %v boot %q acpi %v apic %v pae %v tablet %v sound %q", k.Localtime, k.BootOrder, k.ACPI, k.APIC, k.PAE, k.USBTablet, k.SoundHW)
		}
		if g := k.Graphics; g == nil || g.Password != "w1nd0ws" || g.Port == nil || *g.Port != 5903 || g.Listen != "0.0.0.0" {
			t.Errorf("Graphics = %+v", g)
		}
	})
}

func TestToKVMDevices(t *testing.T) {
	disk := func(target, device string) Disk {
		src := "/img/" + target
		if device == "cdrom" {
			src = ""
		}
		return Disk{Backend: "file", Source: src, Target: target, Device: device, Mode: "w"}
	}
	tests := []struct {
		name    string
		disks   []Disk
		virtio  bool
		targets string
		buses   string
		err     error
	}{
		{"virtio in xen order", []Disk{disk("xvdb", "disk"), disk("xvda", "disk")}, true, "vda,vdb", "virtio,virtio", nil},
		{"virtio keeps cdrom on ide", []Disk{disk("xvda", "disk"), disk("hdc", "cdrom")}, true, "vda,hdc", "virtio,ide", nil},
		{"virtio moves xvd cdrom to ide", []Disk{disk("xvda", "disk"), disk("xvdc", "cdrom")}, true, "vda,hda", "virtio,ide", nil},
		{"ide keeps hdX", []Disk{disk("hdb", "disk"), disk("hda", "disk"), disk("hdc", "cdrom")}, false, "hdb,hda,hdc", "ide,ide,ide", nil},
		{"ide fills free slots", []Disk{disk("hdc", "cdrom"), disk("xvda", "disk"), disk("sdb", "disk")}, false, "hdc,hda,hdb", "ide,ide,ide", nil},
		{"too many ide", []Disk{disk("hda", "disk"), disk("hdb", "disk"), disk("hdc", "disk"), disk("hdd", "disk"), disk("hde", "disk")}, false, "", "", ErrTooManyIDE},
		{"many virtio", func() []Disk {
			var ds []Disk
			for i := 0; i < 28; i++ {
				ds = append(ds, disk(diskName("xvd", i), "disk"))
			}
			return ds
		}(), true, "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &Domain{Name: "g", Type: HVM, MemoryMiB: 128, VCPUs: 1, Disks: tc.disks}
			k, err := ToKVM(d, KVMOptions{Virtio: tc.virtio})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			var targets, buses []string
			for _, kd := range k.Disks {
				targets = append(targets, kd.Target)
				buses = append(buses, kd.Bus)
			}
			if tc.targets == "" {
				if len(k.Disks) != 28 || k.Disks[25].Target != "vdz" || k.Disks[26].Target != "vdaa" || k.Disks[27].Target != "vdab" {
					t.Errorf("targets %v", targets)
				}
				return
			}
			if strings.Join(targets, ",") != tc.targets || strings.Join(buses, ",") != tc.buses {
				t.Errorf("targets %v buses %v, want %s / %s", targets, buses, tc.targets, tc.buses)
			}
		})
	}
}

func TestToKVMBootAndNICs(t *testing.T) {
	if _, err := ToKVM(&Domain{Name: "nb", Type: PV, MemoryMiB: 128}, KVMOptions{}); !errors.Is(err, ErrNoBoot) {
		t.Errorf("PV without kernel or bootloader: err = %v, want ErrNoBoot", err)
	}
	k, err := ToKVM(&Domain{Name: "pvg", Type: PV, MemoryMiB: 128, Kernel: "/usr/lib/xen/boot/pv-grub-x86_64.gz", Extra: "(hd0,0)/grub/menu.lst"}, KVMOptions{})
	if err != nil || !k.BootFromDisk || k.Kernel != "" {
		t.Errorf("pv-grub: %+v, %v; want BootFromDisk", k, err)
	}
	d := &Domain{Name: "n", Type: HVM, MemoryMiB: 128, NICs: []NIC{{MAC: "00:16:3e:00:00:01"}, {Model: "e1000"}, {Model: "ne2k_pci"}}, OnCrash: "coredump-restart", OnReboot: "coredump-restart"}
	k, err = ToKVM(d, KVMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var models []string
	for _, n := range k.NICs {
		models = append(models, n.Model)
	}
	if k.NICs[0].MAC != "00:16:3e:00:00:01" {
		t.Errorf("MAC not kept: %q", k.NICs[0].MAC)
	}
	// A vif without a MAC gets a stable one of QEMU's, different per NIC.
	if m := k.NICs[1].MAC; !strings.HasPrefix(m, "52:54:00:") || m == k.NICs[2].MAC {
		t.Errorf("generated MACs %q %q", m, k.NICs[2].MAC)
	}
	again, err := ToKVM(d, KVMOptions{})
	if err != nil || again.NICs[1].MAC != k.NICs[1].MAC {
		t.Errorf("generated MAC not stable: %q then %q", k.NICs[1].MAC, again.NICs[1].MAC)
	}
	// The guest's own MACs (its ifcfg HWADDRs) go to NICs the config
	// gives none, by NIC index; the config's MAC wins.
	withGuest, err := ToKVM(d, KVMOptions{MACs: map[int]string{0: "00:16:3e:00:00:aa", 2: "00:16:3E:00:00:03"}})
	if err != nil {
		t.Fatal(err)
	}
	var macs []string
	for _, n := range withGuest.NICs {
		macs = append(macs, n.MAC)
	}
	if want := []string{"00:16:3e:00:00:01", k.NICs[1].MAC, "00:16:3e:00:00:03"}; !slices.Equal(macs, want) {
		t.Errorf("with the guest's MACs: %q, want %q", macs, want)
	}
	xml, err := withGuest.LibvirtXML()
	if err != nil || !strings.Contains(string(xml), `<mac address="00:16:3e:00:00:03">`) {
		t.Errorf("the guest's MAC is not in the libvirt XML (%v):\n%s", err, xml)
	}
	if argv := strings.Join(QEMUArgs(withGuest, QEMUOptions{}), " "); !strings.Contains(argv, "mac=00:16:3e:00:00:03") {
		t.Errorf("the guest's MAC is not in the QEMU command line: %s", argv)
	}
	bad := &Domain{Name: "m", Type: HVM, MemoryMiB: 128, NICs: []NIC{{MAC: "00:16:3e:zz"}}}
	if _, err := ToKVM(bad, KVMOptions{}); err == nil || !strings.Contains(err.Error(), "00:16:3e:zz") {
		t.Errorf("bad MAC: err = %v", err)
	}
	if strings.Join(models, ",") != "rtl8139,e1000,ne2k_pci" {
		t.Errorf("NIC models %v", models)
	}
	if k.OnCrash != "coredump-restart" || k.OnReboot != "restart" {
		t.Errorf("lifecycle: reboot %q crash %q", k.OnReboot, k.OnCrash)
	}
	if k.BootOrder != "c" || !k.ACPI {
		t.Errorf("HVM defaults: boot %q acpi %v", k.BootOrder, k.ACPI)
	}
}

func TestMapPath(t *testing.T) {
	maps := []PathMap{
		{Old: "/var/lib/xen/images", New: "/srv/import"},
		{Old: "/var/lib/xen/images/big", New: "/mnt/big/"},
		{Old: "/dev/VolGroup00", New: "/srv/lv"},
	}
	tests := map[string]string{
		"/var/lib/xen/images/a.img":      "/srv/import/a.img",
		"/var/lib/xen/images/sub/b.img":  "/srv/import/sub/b.img",
		"/var/lib/xen/images2/a.img":     "/var/lib/xen/images2/a.img",
		"/var/lib/xen/images/big/c.img":  "/mnt/big/c.img",
		"/var/lib/xen/images/bigger.img": "/srv/import/bigger.img",
		"/var/lib/xen/images":            "/srv/import",
		"/dev/VolGroup00/web01":          "/srv/lv/web01",
		"/dev/VolGroup01/web01":          "/dev/VolGroup01/web01",
		"relative/var/lib/xen/images/a":  "relative/var/lib/xen/images/a",
		"":                               "",
	}
	for in, want := range tests {
		if got := MapPath(in, maps); got != want {
			t.Errorf("MapPath(%q) = %q, want %q", in, got, want)
		}
	}
	if got := MapPath("/a/b", []PathMap{{Old: "/", New: "/mnt"}}); got != "/mnt/a/b" {
		t.Errorf("root map: %q", got)
	}
	if got := MapPath("/a/b", nil); got != "/a/b" {
		t.Errorf("no maps: %q", got)
	}
}

func TestParsePathMap(t *testing.T) {
	m, err := ParsePathMap("/var/lib/xen/images/=/srv/import")
	if err != nil || m != (PathMap{Old: "/var/lib/xen/images", New: "/srv/import"}) {
		t.Errorf("got %+v, %v", m, err)
	}
	for _, bad := range []string{"", "/a", "=/b", "/a=", "rel=/b"} {
		if _, err := ParsePathMap(bad); err == nil {
			t.Errorf("ParsePathMap(%q) accepted", bad)
		}
	}
}

func TestParseKVMXMLErrors(t *testing.T) {
	for _, bad := range []string{"", "<domain type='xen'><name>x</name></domain>", "<domain type='kvm'><name>x</name><clock offset='variable' adjustment='soon'/></domain>"} {
		if _, err := ParseKVMXML([]byte(bad)); err == nil {
			t.Errorf("ParseKVMXML(%q) accepted", bad)
		}
	}
	// Other applications' metadata is left alone.
	x := `<domain type='kvm'><name>x</name><memory unit='MiB'>64</memory>
<metadata><other:thing xmlns:other="urn:other"><boot-from-disk>true</boot-from-disk></other:thing>
<migration xmlns="` + MetadataNamespace + `"><os>linux</os><boot-from-disk>true</boot-from-disk></migration></metadata></domain>`
	k, err := ParseKVMXML([]byte(x))
	if err != nil || !k.BootFromDisk || k.OS != "linux" || k.MemoryMiB != 64 {
		t.Errorf("got %+v, %v", k, err)
	}
}

// kvmForCorpus maps a corpus guest the way a migration would: PV guests
// onto virtio, HVM guests kept on their devices, every disk with a
// source converted to a qcow2 image.
func kvmForCorpus(d *Domain) (*KVMDomain, error) {
	o := KVMOptions{Virtio: d.Type == PV, Images: map[string]Image{}}
	for _, disk := range d.Disks {
		if disk.Source != "" && disk.Device == "disk" {
			o.Images[disk.Target] = Image{Path: "/srv/kvm/" + d.Name + "/" + disk.Target + ".qcow2", Format: "qcow2"}
		}
	}
	return ToKVM(d, o)
}

// TestKVMXMLValidatesForCorpus writes the KVM XML of every corpus guest
// and checks it against libvirt's schema with virt-xml-validate, and that
// it reads back unchanged.
func TestKVMXMLValidatesForCorpus(t *testing.T) {
	cases := corpusCases(t)
	validate := testutil.NeedTool(t, "virt-xml-validate")
	testutil.NeedTool(t, "xmllint") // virt-xml-validate runs it
	dir := t.TempDir()
	type job struct{ name, file string }
	var jobs []job
	for _, c := range cases {
		d, err := ParseFile(filepath.Join(corpusDir, c.Folder, c.Native))
		if err != nil {
			t.Errorf("%s: %v", c.name(), err)
			continue
		}
		k, err := kvmForCorpus(d)
		if err != nil {
			t.Errorf("%s: ToKVM: %v", c.name(), err)
			continue
		}
		x, err := k.LibvirtXML()
		if err != nil {
			t.Errorf("%s: %v", c.name(), err)
			continue
		}
		back, err := ParseKVMXML(x)
		if err != nil {
			t.Errorf("%s: reading the XML back: %v", c.name(), err)
		} else if !reflect.DeepEqual(back, k) {
			t.Errorf("%s: round trip changed the domain:\ngot  %+v\nwant %+v", c.name(), back, k)
		}
		file := filepath.Join(dir, strings.NewReplacer("/", "_").Replace(c.name())+".xml")
		if err := os.WriteFile(file, x, 0o644); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{c.name(), file})
	}
	// Two at a time: the machine is shared.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	var mu sync.Mutex
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := exec.Command(validate, j.file, "domain").CombinedOutput()
			if err != nil {
				data, _ := os.ReadFile(j.file)
				mu.Lock()
				t.Errorf("%s: virt-xml-validate %s domain: %v\n%s\n%s", j.name, j.file, err, out, data)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("validated the KVM XML of %d corpus guests", len(jobs))
}

// One NIC model: the XML, the QEMU argv and the guest's driver (convert's
// modprobe rule reads NICModel too) name the same card.
func TestNICModelOneSource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		typ    Kind
		model  string
		virtio bool
		want   string
	}{
		{"pv-virtio", PV, "", true, "virtio"},
		{"pv-no-virtio", PV, "", false, "e1000"},
		{"pv-netfront", PV, "netfront", false, "e1000"},
		{"hvm-default", HVM, "", false, "rtl8139"},
		{"hvm-e1000", HVM, "e1000", false, "e1000"},
		{"hvm-virtio", HVM, "rtl8139", true, "virtio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Domain{Name: "g", Type: tc.typ, MemoryMiB: 256, Bootloader: "/usr/bin/pygrub", NICs: []NIC{{MAC: "00:16:3e:00:00:01", Model: tc.model}}}
			if got := NICModel(d, 0, tc.virtio); got != tc.want {
				t.Fatalf("NICModel = %q, want %q", got, tc.want)
			}
			k, err := ToKVM(d, KVMOptions{Virtio: tc.virtio, OS: "linux"})
			if err != nil {
				t.Fatal(err)
			}
			x, err := k.LibvirtXML()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(x), "<model type=\""+tc.want+"\"") {
				t.Errorf("libvirt XML does not name model %s:\n%s", tc.want, x)
			}
			dev := tc.want
			if dev == "virtio" {
				dev = "virtio-net-pci"
			}
			if argv := strings.Join(QEMUArgs(k, QEMUOptions{}), " "); !strings.Contains(argv, dev) {
				t.Errorf("QEMU argv does not name %s: %s", dev, argv)
			}
		})
	}
}
