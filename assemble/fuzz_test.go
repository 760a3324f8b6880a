package assemble

import (
	"strings"
	"testing"
)

func FuzzParseFstab(f *testing.F) {
	f.Add(fstab)
	f.Add(lvmFstab)
	f.Add("/dev/x /mnt/a\\040b\\ ext3 defaults\n\\\\ \\0 \\777\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, e := range parseFstab(text) {
			if e.spec == "" || e.dir == "" || e.typ == "" || strings.ContainsAny(e.typ, " \t\n") {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}

// FuzzIdentify feeds the signature probe the first sectors of a device.
func FuzzIdentify(f *testing.F) {
	img := readGz(f, "testdata/rhel5-lvm.img.gz")
	f.Add(img[2048*512 : 2048*512+8192]) // ext3 /boot
	swap := make([]byte, 4096)
	copy(swap[4096-10:], "SWAPSPACE2")
	f.Add(swap)
	xfs := make([]byte, 512)
	copy(xfs, "XFSB")
	f.Add(xfs)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dev := &memDev{b}
		typ, _, _, err := identify(dev)
		if err != nil {
			t.Fatal(err) // an in-memory device never fails to read
		}
		if typ == "ext" {
			if et := extType(dev); et != "ext2" && et != "ext3" && et != "ext4" {
				t.Fatalf("extType = %q", et)
			}
		}
	})
}
