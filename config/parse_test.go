package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestXMLiterals(t *testing.T) {
	src := `# a comment
name = "web01"   # trailing comment
memory = "1024"
maxmem = 2048L
vcpus = 0x2
uuid = '9a3b1c4d-0000-4000-8000-00000000abcd'
extra = """console=hvc0
 quiet"""
root = r'/dev/xvda1\n'
bootloader = '/usr/bin/' "pygrub"
on_crash = 'pre\x73erve'
disk = [
    'phy:/dev/vg/web01,xvda,w',   # the root disk
    'file:/srv/iso/x.iso,hdc:cdrom,r',
]
vif = ( 'mac=00:16:3E:00:00:01, bridge=xenbr0', )
acpi = True; apic = False
localtime = 1
rtc_timeoffset = -3600
pae = 1.0
`
	d, err := Parse([]byte(src), "web01", WithFormat(FormatXM))
	if err != nil {
		t.Fatal(err)
	}
	want := &Domain{
		Name: "web01", UUID: "9a3b1c4d-0000-4000-8000-00000000abcd", Type: PV,
		MemoryMiB: 1024, MaxMemoryMiB: 2048, VCPUs: 2, MaxVCPUs: 2,
		Extra: "console=hvc0\n quiet", Root: `/dev/xvda1\n`, Bootloader: "/usr/bin/pygrub",
		ACPI: ptr(true), APIC: ptr(false), PAE: ptr(true), Localtime: true, RTCTimeOffset: -3600,
		OnCrash: "preserve",
		Disks: []Disk{
			{Backend: "phy", Format: "raw", Source: "/dev/vg/web01", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"},
			{Backend: "file", Format: "raw", Source: "/srv/iso/x.iso", Target: "hdc", Device: "cdrom", Mode: "r", Bus: "ide"},
		},
		NICs:   []NIC{{MAC: "00:16:3e:00:00:01", Bridge: "xenbr0"}},
		Source: Source{File: "web01", Format: FormatXM, NameLine: 2},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got  %+v\nwant %+v", d, want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestXMDefaults(t *testing.T) {
	d, err := Parse([]byte("name='a'\nmemory=256\n"), "a")
	if err != nil {
		t.Fatal(err)
	}
	if d.VCPUs != 1 || d.MaxVCPUs != 1 || d.MaxMemoryMiB != 256 || d.Type != PV {
		t.Errorf("defaults: vcpus %d/%d maxmem %d type %s", d.VCPUs, d.MaxVCPUs, d.MaxMemoryMiB, d.Type)
	}
	if len(d.Disks) != 0 || d.Disks == nil || d.NICs == nil {
		t.Errorf("empty device lists should be empty, not nil: %#v %#v", d.Disks, d.NICs)
	}
}

func TestXMDuplicateAndUnknown(t *testing.T) {
	src := "name = 'a'\nmemory = 256\nmemory = 512\nfrobnicate = [1, 'x']\ncpu_weight = 256\n"
	d, err := Parse([]byte(src), "/etc/xen/a")
	if err != nil {
		t.Fatal(err)
	}
	if d.MemoryMiB != 512 {
		t.Errorf("memory = %d, want the last value 512", d.MemoryMiB)
	}
	wantUnknown := []Setting{{Key: "frobnicate", Value: `[1, "x"]`, Line: 4}, {Key: "cpu_weight", Value: "256", Line: 5}}
	if !reflect.DeepEqual(d.Unknown, wantUnknown) {
		t.Errorf("Unknown = %+v, want %+v", d.Unknown, wantUnknown)
	}
	joined := strings.Join(d.Warnings, "\n")
	for _, w := range []string{"/etc/xen/a:3: memory is set again (first at line 2)", "/etc/xen/a:4: unknown setting frobnicate", "/etc/xen/a:5: unknown setting cpu_weight"} {
		if !strings.Contains(joined, w) {
			t.Errorf("warnings %q lack %q", joined, w)
		}
	}
}

// Xen's own xmexample2 computes values in Python; that must be an error
// naming file:line:col and the construct, never a guess.
func TestXMRejectsPython(t *testing.T) {
	tests := []struct {
		name, src string
		line, col int
		msg       string
	}{
		{"variable", "name = 'a'\nmemory = mem\n", 2, 10, `variable reference "mem"`},
		{"percent", "vmid = 1\nname = \"VM%d\" % vmid\n", 2, 15, "% string formatting"},
		{"if", "name='a'\nif vmid < 1:\n  pass\n", 2, 1, "an if statement"},
		{"import", "import os\n", 1, 1, "an import statement"},
		{"call", "vmid = int(vmid)\n", 1, 8, "function call int(...)"},
		{"plus", "memory = 256 + 256\n", 1, 14, `operator "+"`},
		{"augmented", "memory += 1\n", 1, 8, `augmented assignment "+="`},
		{"conditional", "memory = 256 if x else 512\n", 1, 14, "an if statement"},
		{"comprehension", "disk = [d for d in x]\n", 1, 9, "variable reference"},
		{"unclosed list", "disk = [ 'a',\n 'b'\n", 1, 8, `"[" opened here is not closed`},
		{"unclosed string", "name = 'abc\n", 1, 8, "not closed on its line"},
		{"dict", "x = {'a': 1}\n", 1, 5, "dictionaries"},
		{"missing value", "name =\n", 1, 7, "expected a value"},
		{"bad memory", "memory = 'lots'\n", 1, 10, `memory: expected a number, found "lots"`},
		{"bad bool", "acpi = 'perhaps'\n", 1, 8, "acpi: expected 0/1"},
		{"negative memory", "memory = -512\n", 1, 10, "memory = -512: out of range"},
		{"absurd vcpus", "vcpus = 100000\n", 1, 9, "vcpus = 100000: out of range"},
		{"disk without target", "disk = ['phy:/dev/sda']\n", 1, 9, "no target device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "/etc/xen/guest", WithFormat(FormatXM))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SyntaxError", err)
			}
			if se.File != "/etc/xen/guest" || se.Line != tc.line || se.Col != tc.col || !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("got %s:%d:%d %q, want /etc/xen/guest:%d:%d containing %q", se.File, se.Line, se.Col, se.Msg, tc.line, tc.col, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "/etc/xen/guest:") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestDiskSpecs(t *testing.T) {
	tests := []struct {
		spec string
		f    Format
		want Disk
	}{
		{"phy:/dev/vg/a,xvda,w", FormatXM, Disk{Backend: "phy", Format: "raw", Source: "/dev/vg/a", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"}},
		{"file:/img/a.img,ioemu:hda,w", FormatXM, Disk{Backend: "file", Format: "raw", Source: "/img/a.img", Target: "hda", Device: "disk", Mode: "w", Bus: "ide"}},
		{"tap:aio:/img/a.img,xvda:disk,w!", FormatXM, Disk{Backend: "tap:aio", Format: "raw", Source: "/img/a.img", Target: "xvda", Device: "disk", Mode: "w!", Bus: "xen"}},
		{"tap:qcow:/img/a.qcow,xvdb,r", FormatXM, Disk{Backend: "tap:qcow", Format: "qcow", Source: "/img/a.qcow", Target: "xvdb", Device: "disk", Mode: "r", Bus: "xen"}},
		{"tap:vhd:/img/a.vhd,hdb,w", FormatXM, Disk{Backend: "tap:vhd", Format: "vhd", Source: "/img/a.vhd", Target: "hdb", Device: "disk", Mode: "w", Bus: "ide"}},
		{"tap2:tapdisk:aio:/img/a.img,xvda,w", FormatXM, Disk{Backend: "tap2:aio", Format: "raw", Source: "/img/a.img", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"}},
		{",hdc:cdrom,r", FormatXM, Disk{Target: "hdc", Device: "cdrom", Mode: "r", Bus: "ide"}},
		{"phy:/dev/vg/root,sda1,w", FormatXM, Disk{Backend: "phy", Format: "raw", Source: "/dev/vg/root", Target: "sda1", Device: "disk", Mode: "w", Bus: "scsi"}},
		{"drbd:r0,xvda,w", FormatXM, Disk{Backend: "drbd", Source: "r0", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"}},
		{"format=raw,vdev=hda,access=rw,backendtype=phy,target=/dev/HostVG/XenGuest2", FormatXL, Disk{Backend: "phy", Format: "raw", Source: "/dev/HostVG/XenGuest2", Target: "hda", Device: "disk", Mode: "w", Bus: "ide"}},
		{"format=raw,vdev=hdc,access=ro,devtype=cdrom,target=/root/a,b.iso", FormatXL, Disk{Backend: "qdisk", Format: "raw", Source: "/root/a,b.iso", Target: "hdc", Device: "cdrom", Mode: "r", Bus: "ide"}},
		{"/var/lib/xen/a.qcow2,qcow2,xvda,rw", FormatXL, Disk{Backend: "qdisk", Format: "qcow2", Source: "/var/lib/xen/a.qcow2", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"}},
		{"/dev/HostVG/XenGuest2,,hda,,backendtype=phy", FormatXL, Disk{Backend: "phy", Format: "raw", Source: "/dev/HostVG/XenGuest2", Target: "hda", Device: "disk", Mode: "w", Bus: "ide"}},
		{"format=raw,vdev=hdd,access=ro,devtype=cdrom", FormatXL, Disk{Format: "raw", Target: "hdd", Device: "cdrom", Mode: "r", Bus: "ide"}},
		{"file:/images/a=b.img,xvda,w", FormatXM, Disk{Backend: "file", Format: "raw", Source: "/images/a=b.img", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"}},
		{"phy:/dev/sdb,xvdb,w", FormatXL, Disk{Backend: "phy", Format: "raw", Source: "/dev/sdb", Target: "xvdb", Device: "disk", Mode: "w", Bus: "xen"}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, warns, err := parseDiskSpec(tc.spec, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) > 0 {
				t.Errorf("warnings: %q", warns)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestVifAndVfb(t *testing.T) {
	src := `name = "p"
vif = [ "mac=00:16:3e:66:94:9c, bridge=br0,script=vif-bridge,model=e1000,vifname=net0,type=ioemu,ip=10.0.0.1 10.0.0.2,rate=10MB/s", "" ]
vfb = [ "type=vnc,vncunused=0,vncdisplay=3,vnclisten=0.0.0.0,vncpasswd=secret,keymap=de" ]
pci = [ "0000:01:00.0,msitranslate=1" ]
serial = [ "pty", "none", "tcp:127.0.0.1:7777" ]
`
	d, err := Parse([]byte(src), "p")
	if err != nil {
		t.Fatal(err)
	}
	wantNICs := []NIC{{MAC: "00:16:3e:66:94:9c", Bridge: "br0", Script: "vif-bridge", Model: "e1000", VifName: "net0", Type: "ioemu", IP: "10.0.0.1 10.0.0.2", Rate: "10MB/s"}, {}}
	if !reflect.DeepEqual(d.NICs, wantNICs) {
		t.Errorf("NICs = %+v, want %+v", d.NICs, wantNICs)
	}
	wantG := []Graphics{{Type: "vnc", Listen: "0.0.0.0", Password: "secret", Display: ptr(3), Port: ptr(5903), Keymap: "de"}}
	if !reflect.DeepEqual(d.Graphics, wantG) {
		t.Errorf("Graphics = %+v, want %+v", d.Graphics, wantG)
	}
	if !reflect.DeepEqual(d.PCI, []string{"0000:01:00.0"}) {
		t.Errorf("PCI = %q", d.PCI)
	}
	wantSerial := []Char{{Type: "pty", Raw: "pty"}, {Type: "tcp", Path: "127.0.0.1:7777", Raw: "tcp:127.0.0.1:7777"}}
	if !reflect.DeepEqual(d.Serial, wantSerial) {
		t.Errorf("Serial = %+v, want %+v", d.Serial, wantSerial)
	}
}

func TestHVMGraphicsDefaults(t *testing.T) {
	src := "builder='hvm'\nkernel='/usr/lib/xen/boot/hvmloader'\nvnc=1\nvnclisten='127.0.0.1'\nvncpasswd='pw'\nsdl=0\nusbdevice='tablet'\nboot='dc'\n"
	d, err := Parse([]byte(src), "w")
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != HVM || d.Loader != "/usr/lib/xen/boot/hvmloader" || d.Kernel != "" || d.Boot != "dc" {
		t.Errorf("type %s loader %q kernel %q boot %q", d.Type, d.Loader, d.Kernel, d.Boot)
	}
	want := []Graphics{{Type: "vnc", Listen: "127.0.0.1", Password: "pw", AutoPort: true}}
	if !reflect.DeepEqual(d.Graphics, want) {
		t.Errorf("Graphics = %+v, want %+v", d.Graphics, want)
	}
	if !reflect.DeepEqual(d.USBDevices, []string{"tablet"}) {
		t.Errorf("USBDevices = %q", d.USBDevices)
	}
}

func TestXLAppendAndCmdline(t *testing.T) {
	src := "type = 'pv'\nname='x'\nkernel='/boot/vmlinuz'\ncmdline='root=/dev/xvda1 ro'\nextra='ignored'\ndisk = ['/a.img,raw,xvda,rw']\ndisk += ['/b.img,raw,xvdb,rw']\n"
	d, err := Parse([]byte(src), "x.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if d.Source.Format != FormatXL {
		t.Errorf("format = %s, want xl", d.Source.Format)
	}
	if d.Cmdline() != "root=/dev/xvda1 ro" {
		t.Errorf("Cmdline() = %q", d.Cmdline())
	}
	if len(d.Disks) != 2 || d.Disks[1].Source != "/b.img" {
		t.Errorf("disks after += : %+v", d.Disks)
	}
}

func TestDetectFormat(t *testing.T) {
	tests := []struct {
		src  string
		want Format
	}{
		{"# comment\nname = 'a'\n", FormatXM},
		{"name = 'a'\ndisk = ['phy:/dev/a,xvda,w']\n", FormatXM},
		{"name = 'a'\ndisk = ['vdev=xvda,target=/a']\n", FormatXL},
		{"name = 'a'\ntype = 'hvm'\n", FormatXL},
		{"  (domain (name a))", FormatSXP},
		{"\n(vm (name a))", FormatSXP},
		{"<domain type='xen'><name>a</name></domain>", FormatLibvirt},
		{"<?xml version='1.0'?>\n<domain/>", FormatLibvirt},
	}
	for _, tc := range tests {
		got, err := DetectFormat([]byte(tc.src))
		if err != nil || got != tc.want {
			t.Errorf("DetectFormat(%q) = %s, %v; want %s", tc.src, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "   \n", "\x00\x01binary", "[section]\nkey=value"} {
		if _, err := DetectFormat([]byte(bad)); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("DetectFormat(%q) err = %v, want ErrUnknownFormat", bad, err)
		}
	}
}

func TestSXP(t *testing.T) {
	src := `(domain
    (domid 5)
    (uuid 4f77abd230193be83bab6fbf2118f880)
    (vcpus 4)
    (vcpu_avail 3)
    (memory 175)
    (maxmem 385)
    (bootloader /usr/bin/pygrub)
    (name 'rhel\
5')
    (cpu_time 137.18)
    (cpu_weight 256)
    (image (linux (args 'ro root=/dev/VolGroup00/LogVol00')))
    (device (vif (backend 0) (script vif-bridge) (bridge xenbr0) (mac 00:16:3e:1d:06:15)))
    (device (tap (backend 0) (dev xvda:disk) (uname tap:aio:/xen/rhel5.img) (mode w)))
    (device (pci (dev (domain 0x0000) (bus 0x01) (slot 0x13) (func 0x0))))
    (state -b----)
)`
	d, err := Parse([]byte(src), "rhel5.sxp")
	if err != nil {
		t.Fatal(err)
	}
	want := &Domain{
		Name: "rhel5", UUID: "4f77abd2-3019-3be8-3bab-6fbf2118f880", Type: PV,
		MemoryMiB: 175, MaxMemoryMiB: 385, VCPUs: 2, MaxVCPUs: 4,
		Extra: "ro root=/dev/VolGroup00/LogVol00", Bootloader: "/usr/bin/pygrub",
		Disks:   []Disk{{Backend: "tap:aio", Format: "raw", Source: "/xen/rhel5.img", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"}},
		NICs:    []NIC{{MAC: "00:16:3e:1d:06:15", Bridge: "xenbr0", Script: "vif-bridge"}},
		PCI:     []string{"0000:01:13.0"},
		Unknown: []Setting{{Key: "cpu_weight", Value: "256", Line: 12}},
		Warnings: []string{
			"rhel5.sxp:12: unknown setting cpu_weight = 256 kept but not used",
		},
		Source: Source{File: "rhel5.sxp", Format: FormatSXP, NameLine: 9},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got  %+v\nwant %+v", d, want)
	}
}

func TestSXPUnbalanced(t *testing.T) {
	tests := []struct {
		src, warn string
	}{
		{"(domain (name a)(memory 128)", "1 list(s) not closed"},
		{"(domain (name a)(memory 128)))", "1 extra )"},
		{"(vm (name a)(memory 128)) (junk)", "text after the end"},
	}
	for _, tc := range tests {
		d, err := Parse([]byte(tc.src), "f.sxp")
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if d.Name != "a" || d.MemoryMiB != 128 {
			t.Errorf("%q: name %q memory %d", tc.src, d.Name, d.MemoryMiB)
		}
		if !strings.Contains(strings.Join(d.Warnings, "\n"), tc.warn) {
			t.Errorf("%q: warnings %q lack %q", tc.src, d.Warnings, tc.warn)
		}
	}
	for _, bad := range []string{"(domain (name 'a)", "(foo (name a))", "(domain (memory lots))", "(domain (vcpus -1))"} {
		_, err := Parse([]byte(bad), "f.sxp")
		var se *SyntaxError
		if !errors.As(err, &se) || se.File != "f.sxp" {
			t.Errorf("Parse(%q) err = %v, want a *SyntaxError for f.sxp", bad, err)
		}
	}
}

func TestLibvirtXML(t *testing.T) {
	src := `<domain type='xen'>
  <name>lv</name>
  <uuid>596a5d21-71f4-8fb2-e068-e2386a5c413e</uuid>
  <memory unit='GiB'>1</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu current='1'>2</vcpu>
  <bootloader>/usr/bin/pygrub</bootloader>
  <os><type>linux</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='tap' type='aio'/>
      <source file='/var/lib/xen/images/lv.img'/>
      <target dev='xvda' bus='xen'/>
    </disk>
    <interface type='bridge'>
      <mac address='00:16:3E:00:00:02'/>
      <source bridge='xenbr0'/>
      <script path='vif-bridge'/>
    </interface>
  </devices>
</domain>`
	d, err := Parse([]byte(src), "lv.xml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Domain{
		Name: "lv", UUID: "596a5d21-71f4-8fb2-e068-e2386a5c413e", Type: PV,
		MemoryMiB: 512, MaxMemoryMiB: 1024, VCPUs: 1, MaxVCPUs: 2, Bootloader: "/usr/bin/pygrub",
		Disks:  []Disk{{Backend: "tap:aio", Format: "raw", Source: "/var/lib/xen/images/lv.img", Target: "xvda", Device: "disk", Mode: "w", Bus: "xen"}},
		NICs:   []NIC{{MAC: "00:16:3e:00:00:02", Bridge: "xenbr0", Script: "vif-bridge"}},
		Source: Source{File: "lv.xml", Format: FormatLibvirt, NameLine: 2},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got  %+v\nwant %+v", d, want)
	}
	if _, err := Parse([]byte("<domain type='kvm'><name>k</name></domain>"), "k.xml"); err == nil {
		t.Error("a kvm domain was accepted as a Xen config")
	}
	if _, err := Parse([]byte("<domain type='xen'><name>k</name>"), "k.xml"); err == nil {
		t.Error("truncated XML was accepted")
	}
}

func TestParseFormatNames(t *testing.T) {
	for in, want := range map[string]Format{"xm": FormatXM, "XL": FormatXL, "sxp": FormatSXP, "sexpr": FormatSXP, "libvirt": FormatLibvirt, "xml": FormatLibvirt} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %s, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("ini"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("ParseFormat(ini) err = %v", err)
	}
	if _, err := ParseFile("testdata/does-not-exist"); err == nil || !strings.Contains(err.Error(), "does-not-exist") {
		t.Errorf("ParseFile of a missing file: %v", err)
	}
}

func TestHostileInputs(t *testing.T) {
	big := strings.Repeat(`"aaaaaaaaaa" `, 70000) // adjacent strings concatenate
	tests := []struct {
		name string
		src  string
		f    Format
		ok   bool
	}{
		{"adjacent strings", "extra = " + big + "\n", FormatXM, true},
		{"deep list", "disk = " + strings.Repeat("[", 100000) + "\n", FormatXM, false},
		{"deep sxp", strings.Repeat("(", 100000), FormatSXP, false},
		{"too big", "name = 'a'\n" + strings.Repeat("#", MaxConfigSize), FormatXM, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "h", WithFormat(tc.f))
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// What 'xm create --dryrun /etc/xen/NAME' prints: the way to read an xm
// config that computes its values in Python.
func TestSXPFromXMDryRun(t *testing.T) {
	src := `Using config file "/etc/xen/vm3".
(vm
    (name VM3)
    (memory 64)
    (vcpus 1)
    (image
        (linux
            (kernel /boot/vmlinuz-2.6-xenU)
            (root '/dev/sda1 ro')
            (args 'vmid=3')
        )
    )
    (device (vbd (uname phy:sda10) (dev sda1) (mode w)))
    (device (vif))
)
`
	d, err := Parse([]byte("\ufeff"+src), "vm3.dryrun")
	if err != nil {
		t.Fatal(err)
	}
	if d.Source.Format != FormatSXP || d.Name != "VM3" || d.Kernel != "/boot/vmlinuz-2.6-xenU" || d.Cmdline() != "root=/dev/sda1 ro vmid=3" {
		t.Errorf("got %+v", d)
	}
	if len(d.Disks) != 1 || d.Disks[0].Source != "/dev/sda10" || d.Disks[0].Target != "sda1" || len(d.NICs) != 1 {
		t.Errorf("devices: %+v %+v", d.Disks, d.NICs)
	}
	if !strings.Contains(strings.Join(d.Warnings, "\n"), "text before the S-expression ignored") {
		t.Errorf("warnings: %q", d.Warnings)
	}
}

func TestXLViridianList(t *testing.T) {
	d, err := Parse([]byte("type = 'hvm'\nviridian = [ 'base', 'freq' ]\n"), "v.cfg")
	if err != nil || d.Viridian == nil || !*d.Viridian {
		t.Fatalf("viridian list: %+v, %v", d, err)
	}
}

func TestWarningsHidePasswords(t *testing.T) {
	src := "name = 'a'\nvfb = [ 'type=vnc,vncpasswd=topsecret,bogus=1' ]\nspicepasswd = 'topsecret'\n"
	d, err := Parse([]byte(src), "a")
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(d.Warnings, "\n")
	if strings.Contains(w, "topsecret") || !strings.Contains(w, "spicepasswd = (hidden)") || !strings.Contains(w, "bogus") {
		t.Errorf("warnings: %s", w)
	}
	if d.Unknown[0].Value != "topsecret" || d.Graphics[0].Password != "topsecret" {
		t.Errorf("the values themselves must be kept: %+v %+v", d.Unknown, d.Graphics)
	}
	d, err = Parse([]byte("(domain (name a) (memory 64) (vncpasswd topsecret))"), "a.sxp")
	if err != nil || strings.Contains(strings.Join(d.Warnings, "\n"), "topsecret") {
		t.Errorf("sxp warnings %q, %v", d.Warnings, err)
	}
}
