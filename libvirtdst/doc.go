// Package libvirtdst delivers migrated guests into libvirt on a KVM host,
// local or remote: one storage volume per disk, streamed straight from the
// copy engine (no local staging image), the domain defined from the
// generated XML, and a boot proof made on the destination itself.
//
// It speaks libvirt's RPC protocol through github.com/digitalocean/go-libvirt
// (pure Go), so it needs no libvirt client library on this host:
//
//	c, err := libvirtdst.Connect(ctx, "qemu+ssh://root@kvm01/system")
//	...
//	d, err := c.Begin(ctx, libvirtdst.Plan{Guest: "web01", Pool: "default",
//		Volumes: []libvirtdst.VolumeSpec{{Name: "web01-vda.qcow2", Format: "qcow2", Capacity: size}}})
//	err = diskimg.ConvertTo(ctx, src, d.File("web01-vda.qcow2"), "qcow2")
//	err = d.Define(domainXML, libvirtdst.DefineOptions{})
//	err = d.Commit() // or d.Abort() on any failure
//
// A delivery is all or nothing: Begin refuses a domain or volume that
// exists unless told to replace it, and records the volumes it is about
// to write in a small state volume (NAME.xen2kvm-state) in the pool; Abort
// deletes the volumes it created and the domain it defined; Commit drops
// the state volume. A run killed outright leaves the state volume behind,
// and the next Begin for the guest recognises the volumes it lists as
// its own and replaces them. A shared volume (Delivery.Shared: one
// virtio-win ISO for every Windows guest of the pool) is no delivery's:
// it is uploaded once, reused by name, and never deleted by one.
//
// Holes are never sent: each run of data is uploaded with its own ranged
// volume upload (offset and length), so zeros do not cross the wire at
// all. That needs the new volume to read as zeros, which a fresh file in
// a file-backed pool (dir, fs, netfs) does; in other pools the gaps are
// written as zeros. (libvirt's sparse upload stream needs hole packets
// that go-libvirt cannot send.)
package libvirtdst
