// Package qcow2 reads and writes QEMU's qcow2 disk image format (versions 2
// and 3), as described in QEMU's docs/interop/qcow2.txt.
//
// Reading follows the active L1/L2 mapping, decompresses zlib (raw deflate)
// clusters and falls through to a backing image; encrypted images and
// features xen2kvm does not need (external data files, subclusters, zstd)
// are refused with a clear error.
//
//	img, err := qcow2.Open(f, fileSize, f.Name())
//	if err != nil { ... }
//	n, err := img.ReadAt(buf, off)
//
// Writing produces a version 3 image in one pass, for the copy engine:
//
//	w, err := qcow2.Create("disk.qcow2", size, qcow2.WithCompression(true))
//	if err != nil { ... }
//	_, err = w.WriteAt(clusters, off) // cluster-aligned; zero clusters are skipped
//	err = w.Close()                   // writes L1, refcounts and header, fsyncs
package qcow2
