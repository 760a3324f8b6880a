package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestWindowsHardware checks the virtual hardware of Windows guests by
// version and RTC setting, in the domain model, the QEMU argv and the
// libvirt XML (validated by virt-xml-validate and read back).
func TestWindowsHardware(t *testing.T) {
	d, err := ParseFile(filepath.Join("testdata", "kvm", "hvm-windows-cdrom.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		o         KVMOptions
		video     string
		vga       string
		localtime bool
		rtc       string
	}{
		{"2003 local time", KVMOptions{OS: "windows", OSVersion: "5.2"}, "cirrus", "cirrus", true, "base=localtime,driftfix=slew"},
		{"2008 local time", KVMOptions{OS: "windows", OSVersion: "6.0"}, "vga", "std", true, "base=localtime,driftfix=slew"},
		{"2008 UTC", KVMOptions{OS: "windows", OSVersion: "6.0", RTCUTC: true}, "vga", "std", false, "base=utc,driftfix=slew"},
		{"Windows, version unknown", KVMOptions{OS: "windows"}, "cirrus", "cirrus", d.Localtime, "base=localtime,driftfix=slew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ToKVM(d, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if k.Video != tc.video || k.Localtime != tc.localtime || !k.USBTablet {
				t.Errorf("video %q localtime %v tablet %v", k.Video, k.Localtime, k.USBTablet)
			}
			for _, disk := range k.Disks {
				if disk.Bus != "ide" {
					t.Errorf("disk %s on %s", disk.Target, disk.Bus)
				}
			}
			if len(k.NICs) != 1 || k.NICs[0].Model != "rtl8139" {
				t.Errorf("NICs %+v", k.NICs)
			}
			argv := QEMUArgs(k, QEMUOptions{})
			if i := slices.Index(argv, "-vga"); i < 0 || argv[i+1] != tc.vga {
				t.Errorf("argv -vga: %q", argv)
			}
			if i := slices.Index(argv, "-rtc"); i < 0 || argv[i+1] != tc.rtc {
				t.Errorf("argv -rtc: %q", argv)
			}
			if !strings.Contains(strings.Join(argv, " "), "usb-tablet") {
				t.Errorf("no USB tablet in %q", argv)
			}
			x, err := k.LibvirtXML()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{`<timer name="rtc" tickpolicy="catchup">`, `<model type="` + tc.video + `">`, `<input type="tablet" bus="usb">`} {
				if !strings.Contains(string(x), want) {
					t.Errorf("XML lacks %s:\n%s", want, x)
				}
			}
			back, err := ParseKVMXML(x)
			if err != nil {
				t.Fatal(err)
			}
			if back.Video != k.Video || back.OS != "windows" || back.Localtime != k.Localtime {
				t.Errorf("read back: video %q os %q localtime %v", back.Video, back.OS, back.Localtime)
			}
			validate := testutil.NeedTool(t, "virt-xml-validate")
			testutil.NeedTool(t, "xmllint")
			p := filepath.Join(t.TempDir(), "d.xml")
			if err := os.WriteFile(p, x, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(validate, p, "domain").CombinedOutput(); err != nil {
				t.Errorf("virt-xml-validate: %v\n%s", err, out)
			}
		})
	}
}
