package assemble_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/xen2kvm/xen2kvm/assemble"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/overlay"
)

// memDisk is a read-only in-memory disk.
type memDisk struct{ *bytes.Reader }

func (memDisk) WriteAt([]byte, int64) (int, error) { return 0, diskimg.ErrReadOnly }

func ExampleOpen() {
	// A RHEL 5 default layout: /boot on xvda1, VolGroup00 on xvda2.
	f, _ := os.Open("testdata/rhel5-lvm.img.gz")
	defer f.Close()
	zr, _ := gzip.NewReader(f)
	b, _ := io.ReadAll(zr)
	xvda := overlay.New(memDisk{bytes.NewReader(b)}) // edits stay in the overlay
	defer xvda.Close()

	g, err := assemble.Open(context.Background(), []assemble.Disk{{Target: "xvda", Dev: xvda}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	for _, f := range g.Filesystems {
		line := fmt.Sprintf("%-26s %-5s %-6q %s", f.Devices[0], f.Type, f.Label, f.MountPoint)
		fmt.Println(strings.TrimRight(line, " "))
	}
	grub, _ := fs.ReadFile(g.Root, "boot/grub/grub.conf")
	fmt.Print(string(grub))
	fstab, _ := fs.ReadFile(g.Root, "etc/fstab")
	fmt.Println(strings.Count(string(fstab), "\n"), "fstab lines")
	// Output:
	// /dev/xvda1                 ext3  "/boot" /boot
	// /dev/VolGroup00/LogVol00   ext3  "/"    /
	// /dev/VolGroup00/LogVol01   swap  ""
	// /dev/VolGroup00/lv-home    ext3  "home" /home
	// root (hd0,0)
	// 4 fstab lines
}
