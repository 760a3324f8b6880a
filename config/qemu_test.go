package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The -update flag rewrites the golden files. Other test files of this
// package may register the same flag; it is shared, not redefined.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata/")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func intp(i int) *int { return &i }

// qemuCases are the domains of the QEMU argv golden tests, one golden file
// each under testdata/qemu.
var qemuCases = []struct {
	name string
	dom  KVMDomain
	opts QEMUOptions
}{
	{
		// A RHEL 5 PV guest booted by pygrub: the built-in pygrub found
		// its kernel, initrd and command line in the disk's grub.conf.
		name: "pv-linux-direct-kernel",
		dom: KVMDomain{
			Name: "rhel5pv", UUID: "3f8e1c52-8a6e-4b41-9a31-7d2f0c1e5b20",
			MemoryMiB: 1024, MaxMemoryMiB: 1024, VCPUs: 2, MaxVCPUs: 2,
			Machine: "pc", OS: "linux", ACPI: true, APIC: true, PAE: true,
			BootFromDisk: true,
			Disks:        []KVMDisk{{Path: "/srv/kvm/rhel5pv/rhel5pv-vda.qcow2", Format: "qcow2", Target: "vda", Bus: "virtio", Device: "disk"}},
			NICs:         []KVMNIC{{MAC: "00:16:3e:12:34:56", Model: "virtio", Bridge: "xenbr0"}},
			Serial:       true,
		},
		opts: QEMUOptions{
			Accel:     "kvm",
			SerialLog: "/run/xen2kvm/rhel5pv/serial.log",
			QMPSocket: "/run/xen2kvm/rhel5pv/qmp.sock",
			Kernel:    "/tmp/pygrub/vmlinuz-2.6.18-419.el5",
			Initrd:    "/tmp/pygrub/initrd-2.6.18-419.el5.img",
			Append:    "ro root=/dev/VolGroup00/LogVol00 console=ttyS0,115200",
			NoReboot:  true,
		},
	},
	{
		// A Windows 2003 HVM guest: IDE disk, e1000 and rtl8139 NICs on a
		// bridge, VNC with a password, the clock in local time.
		name: "hvm-windows-ide-vnc",
		dom: KVMDomain{
			Name: "win2k3", MemoryMiB: 2048, MaxMemoryMiB: 2048, VCPUs: 1, MaxVCPUs: 2,
			Machine: "pc", OS: "windows", ACPI: true, APIC: true, PAE: true,
			Localtime: true, USBTablet: true, BootOrder: "cd",
			Disks: []KVMDisk{{Path: "/srv/kvm/win2k3/win2k3-hda.raw", Format: "raw", Target: "hda", Bus: "ide", Device: "disk"}},
			NICs: []KVMNIC{
				{MAC: "00:16:3e:aa:bb:01", Model: "e1000", Bridge: "xenbr0"},
				{MAC: "00:16:3e:aa:bb:02", Model: "rtl8139", Bridge: "xenbr1"},
			},
			Graphics: &Graphics{Type: "vnc", Listen: "0.0.0.0", Password: "s3cret", Display: intp(3), Keymap: "de"},
		},
		opts: QEMUOptions{
			Accel:           "tcg",
			Net:             "bridge",
			QMPSocket:       "/run/xen2kvm/win2k3/qmp.sock",
			VNCPasswordFile: "/run/xen2kvm/win2k3/vnc.pass",
		},
	},
	{
		// An HVM Linux guest with two disks and an ISO in the CD-ROM
		// drive, booting from the CD first; the boot check runs it on a
		// snapshot.
		name: "hvm-cdrom-two-disks",
		dom: KVMDomain{
			Name: "centos4, test", MemoryMiB: 512, MaxMemoryMiB: 768, VCPUs: 1, MaxVCPUs: 1,
			Machine: "pc", OS: "linux", ACPI: true, APIC: true,
			BootOrder: "dc", RTCOffset: 3600,
			Disks: []KVMDisk{
				{Path: "/srv/kvm/centos4/centos4-hda.qcow2", Target: "hda", Bus: "ide", Device: "disk"},
				{Path: "/srv/kvm/centos4/data,2.raw", Target: "hdb", Bus: "ide", Device: "disk"},
				{Path: "/srv/iso/CentOS-4.8-i386-bin1of4.iso", Format: "raw", Target: "hdc", Bus: "ide", Device: "cdrom", ReadOnly: true},
			},
			NICs:   []KVMNIC{{MAC: "00:16:3e:00:00:07", Model: "rtl8139"}},
			Serial: true,
		},
		opts: QEMUOptions{
			Accel:     "tcg",
			SerialLog: "/tmp/centos4/serial.log",
			Display:   "none",
			Snapshot:  true,
			Now:       time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC),
		},
	},
	{
		// Xen PV disks without a virtio driver in the guest, an empty
		// CD-ROM on SATA, tap networking and SCSI: the rarer buses.
		name: "sata-scsi-tap",
		dom: KVMDomain{
			Name: "mixed", MemoryMiB: 256, VCPUs: 1, OS: "linux",
			Disks: []KVMDisk{
				{Path: "/img/sys.img", Format: "raw", Target: "sda", Bus: "scsi", Device: "disk"},
				{Path: "/img/ro.img", Format: "raw", Target: "sdb", Bus: "scsi", Device: "disk", ReadOnly: true},
				{Target: "sdc", Bus: "sata", Device: "cdrom"},
			},
			NICs:     []KVMNIC{{MAC: "00:16:3e:00:00:08", Model: "virtio"}, {MAC: "00:16:3e:00:00:09", Model: "ne2k_pci"}},
			Graphics: &Graphics{Type: "sdl"},
			OnReboot: "destroy",
		},
		opts: QEMUOptions{Net: "tap", TapNames: []string{"vnet7"}},
	},
}

func TestQEMUArgsGolden(t *testing.T) {
	for _, tc := range qemuCases {
		t.Run(tc.name, func(t *testing.T) {
			got := formatArgs(QEMUArgs(&tc.dom, tc.opts))
			golden := filepath.Join("testdata", "qemu", tc.name+".golden")
			if updateGolden() {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("QEMUArgs differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// formatArgs writes an argv one option per line, the way a person reads
// a QEMU command line.
func formatArgs(argv []string) string {
	var b strings.Builder
	for i, s := range argv {
		if i > 0 {
			if strings.HasPrefix(s, "-") {
				b.WriteString(" \\\n")
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString(ShellJoin([]string{s}))
	}
	b.WriteByte('\n')
	return b.String()
}

func TestQEMUArgsProperties(t *testing.T) {
	has := func(argv []string, opt, val string) bool {
		for i := 0; i+1 < len(argv); i++ {
			if argv[i] == opt && argv[i+1] == val {
				return true
			}
		}
		return false
	}
	contains := func(argv []string, sub string) bool {
		for _, s := range argv {
			if strings.Contains(s, sub) {
				return true
			}
		}
		return false
	}
	pv := qemuCases[0]
	win := qemuCases[1]

	t.Run("password never in argv", func(t *testing.T) {
		for _, o := range []QEMUOptions{win.opts, {}} {
			if argv := QEMUArgs(&win.dom, o); contains(argv, win.dom.Graphics.Password) {
				t.Errorf("VNC password appears in %q", argv)
			}
		}
		if argv := QEMUArgs(&win.dom, QEMUOptions{}); !contains(argv, "password=on") {
			t.Errorf("no password file: want password=on in %q", argv)
		}
	})
	t.Run("domain kernel used without override", func(t *testing.T) {
		d := pv.dom
		d.Kernel, d.Initrd, d.Cmdline = "/boot/vmlinuz", "/boot/initrd.img", "root=/dev/vda1"
		argv := QEMUArgs(&d, QEMUOptions{})
		if !has(argv, "-kernel", "/boot/vmlinuz") || !has(argv, "-initrd", "/boot/initrd.img") || !has(argv, "-append", "root=/dev/vda1") {
			t.Errorf("direct kernel boot missing from %q", argv)
		}
		if contains(argv, "bootindex") {
			t.Errorf("direct kernel boot with bootindex: %q", argv)
		}
	})
	t.Run("no accel, no serial, no graphics", func(t *testing.T) {
		d := KVMDomain{Name: "bare", ACPI: true}
		argv := QEMUArgs(&d, QEMUOptions{})
		if contains(argv, "-accel") || contains(argv, "isa-serial") || contains(argv, "-vnc") {
			t.Errorf("unexpected options in %q", argv)
		}
		if !has(argv, "-display", "none") || !has(argv, "-m", "512M") || !has(argv, "-smp", "1") || !has(argv, "-machine", "pc") {
			t.Errorf("defaults missing from %q", argv)
		}
	})
	t.Run("serial on stdio", func(t *testing.T) {
		argv := QEMUArgs(&pv.dom, QEMUOptions{})
		if !has(argv, "-chardev", "stdio,id=serial0") {
			t.Errorf("want serial on stdio in %q", argv)
		}
	})
	t.Run("net none", func(t *testing.T) {
		if argv := QEMUArgs(&win.dom, QEMUOptions{Net: "none"}); contains(argv, "-netdev") || contains(argv, "e1000") {
			t.Errorf("NICs with Net none: %q", argv)
		}
	})
	t.Run("user net options and extra args", func(t *testing.T) {
		o := QEMUOptions{UserNet: []string{"net=192.168.1.0/24,hostfwd=tcp:127.0.0.1:2222-192.168.1.5:22"},
			Extra: []string{"-object", "filter-dump,id=d0,netdev=net0,file=/tmp/n.pcap"}}
		argv := QEMUArgs(&pv.dom, o)
		if !has(argv, "-netdev", "user,id=net0,net=192.168.1.0/24,hostfwd=tcp:127.0.0.1:2222-192.168.1.5:22") {
			t.Errorf("user net options missing from %q", argv)
		}
		if argv[len(argv)-2] != "-object" || argv[len(argv)-1] != o.Extra[1] {
			t.Errorf("extra args not at the end of %q", argv)
		}
	})
	t.Run("acpi off", func(t *testing.T) {
		d := pv.dom
		d.ACPI = false
		if argv := QEMUArgs(&d, QEMUOptions{}); !has(argv, "-machine", "pc,acpi=off") {
			t.Errorf("want acpi=off in %q", argv)
		}
	})
}

func TestTargetIndex(t *testing.T) {
	for target, want := range map[string]int{"hda": 0, "hdb": 1, "hdc": 2, "hdd": 3, "vda": 0, "vdz": 25, "vdaa": 26, "xvdb": 1, "sdc": 2, "": 0, "fd0": 0} {
		if got := targetIndex(target); got != want {
			t.Errorf("targetIndex(%q) = %d, want %d", target, got, want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := ShellJoin([]string{"qemu-system-x86_64", "-name", "guest=a b", "-append", "ro root=LABEL=/ it's", ""})
	want := `qemu-system-x86_64 -name 'guest=a b' -append 'ro root=LABEL=/ it'\''s' ''`
	if got != want {
		t.Errorf("ShellJoin = %s, want %s", got, want)
	}
}
