package extfs_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/xen2kvm/xen2kvm/extfs"
)

// memDisk is a tiny in-memory diskimg.Device for the example.
type memDisk []byte

func (m memDisk) Size() int64 { return int64(len(m)) }
func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m)) {
		return 0, io.EOF
	}
	return copy(p, m[off:]), nil
}
func (m memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

func loadImage(name string) memDisk {
	gz, _ := os.ReadFile(name)
	zr, _ := gzip.NewReader(bytes.NewReader(gz))
	raw, _ := io.ReadAll(zr)
	return raw
}

func ExampleOpen() {
	disk := loadImage("testdata/ext4.img.gz")
	fsys, err := extfs.Open(disk)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fsys.Close()
	fmt.Println(fsys.Type(), fsys.UUID())

	target, _ := fsys.ReadLink("link")
	fmt.Println("link ->", target)

	if err := fsys.WriteFile("etc-fstab", []byte("LABEL=/ / ext4 defaults 1 1\n"), 0o644); err != nil {
		fmt.Println(err)
		return
	}
	data, _ := fsys.ReadFile("etc-fstab")
	fmt.Printf("%s", data)
	// Output:
	// ext4 3a0fe6b1-2c3d-4e5f-8a9b-0c1d2e3f4a5b
	// link -> dir/entry-with-a-long-name-001
	// LABEL=/ / ext4 defaults 1 1
}
