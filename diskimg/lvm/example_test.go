package lvm_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/lvm"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
)

// memDisk is a read-only in-memory disk.
type memDisk struct{ *bytes.Reader }

func (memDisk) WriteAt([]byte, int64) (int, error) { return 0, diskimg.ErrReadOnly }

func ExampleScan() {
	f, _ := os.Open("testdata/lvm.img.gz") // made by the lvm2 tools
	defer f.Close()
	zr, _ := gzip.NewReader(f)
	b, _ := io.ReadAll(zr)
	tab, err := part.Read(memDisk{bytes.NewReader(b)})
	if err != nil {
		fmt.Println(err)
		return
	}
	var devs []diskimg.Device
	for _, p := range tab.Partitions {
		devs = append(devs, p.Device())
	}
	vgs, err := lvm.Scan(devs...)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, vg := range vgs {
		for _, lv := range vg.LVs {
			first := make([]byte, 23)
			lv.Device().ReadAt(first, 0)
			fmt.Printf("%s/%s %s %d bytes: %q\n", vg.Name, lv.Name, lv.Type, lv.Size, first)
		}
	}
	// Output:
	// VolGroup00/LogVol00 linear 5242880 bytes: "LogVol00 sector 000000\n"
	// VolGroup00/LogVol01 striped 2097152 bytes: "LogVol01 sector 000000\n"
}
