package qcow2_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
)

func Example() {
	dir, _ := os.MkdirTemp("", "qcow2")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.qcow2")

	// Write a 1 GiB image holding one cluster of data.
	w, err := qcow2.Create(path, 1<<30)
	if err != nil {
		fmt.Println(err)
		return
	}
	data := bytes.Repeat([]byte("xen2kvm "), qcow2.DefaultClusterSize/8)
	if _, err := w.WriteAt(data, 1<<20); err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Close(); err != nil {
		fmt.Println(err)
		return
	}

	// Read it back.
	f, _ := os.Open(path)
	defer f.Close()
	st, _ := f.Stat()
	img, err := qcow2.Open(f, st.Size(), path)
	if err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]byte, 16)
	img.ReadAt(buf, 1<<20)
	fmt.Printf("v%d, %d bytes, %q, file %d KiB\n", img.Version(), img.Size(), buf, st.Size()>>10)
	// Output: v3, 1073741824 bytes, "xen2kvm xen2kvm ", file 384 KiB
}
