package overlay_test

import (
	"bytes"
	"fmt"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/overlay"
)

// memDisk is a read-only in-memory device.
type memDisk struct{ *bytes.Reader }

func (memDisk) WriteAt([]byte, int64) (int, error) { return 0, diskimg.ErrReadOnly }

func Example() {
	src := memDisk{bytes.NewReader(bytes.Repeat([]byte("."), 10000))}
	ov := overlay.New(src)
	defer ov.Close()

	ov.WriteAt([]byte("edited"), 5000)

	buf := make([]byte, 10)
	ov.ReadAt(buf, 4998)
	fmt.Printf("%s\n", buf)
	fmt.Println(ov.Dirty())
	// Output:
	// ..edited..
	// [{4096 4096}]
}
