package part_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
)

// memDisk is a read-only in-memory disk.
type memDisk struct{ *bytes.Reader }

func (memDisk) WriteAt([]byte, int64) (int, error) { return 0, diskimg.ErrReadOnly }

func loadImage(path string) diskimg.Device {
	f, _ := os.Open(path)
	defer f.Close()
	zr, _ := gzip.NewReader(f)
	b, _ := io.ReadAll(zr)
	return memDisk{bytes.NewReader(b)}
}

func ExampleRead() {
	disk := loadImage("testdata/mbr-logical.img.gz") // made by sfdisk
	tab, err := part.Read(disk)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tab.Scheme, tab.ID)
	for _, p := range tab.Partitions {
		fmt.Printf("%d type=%s start=%d size=%d extended=%v\n", p.Number, p.Type, p.Start, p.Size, p.Extended)
	}
	// Output:
	// mbr 0x4f8cf84a
	// 1 type=83 start=2048 size=10240 extended=false
	// 2 type=8e start=12288 size=10240 extended=false
	// 3 type=5 start=22528 size=76800 extended=true
	// 5 type=83 start=23552 size=15360 extended=false
	// 6 type=82 start=39936 size=20480 extended=false
	// 7 type=8e start=61440 size=35840 extended=false
}
