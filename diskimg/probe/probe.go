// Package probe describes what a disk holds: its partition table, the LVM
// volume groups on it and the filesystem type of every partition and
// logical volume, found from on-disk signatures without mounting anything.
//
//	img, _ := diskimg.Open("guest.img")
//	layout, err := probe.Disk(img)
//	for _, p := range layout.Partitions {
//		fmt.Println(p.Number, p.Content.Type) // 1 ext3, 2 LVM2_member
//	}
package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/lvm"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
)

// Content is what a device holds, as blkid names it.
type Content struct {
	// Type is "ext2", "ext3", "ext4", "swap", "LVM2_member", "xfs",
	// "ntfs", "vfat", or "" when nothing is recognised.
	Type  string `json:"type,omitempty"`
	Label string `json:"label,omitempty"`
	UUID  string `json:"uuid,omitempty"`
}

// Partition is one partition and what it holds.
type Partition struct {
	Number   int    `json:"number"`
	Type     string `json:"type"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Bootable bool   `json:"bootable,omitempty"`
	Extended bool   `json:"extended,omitempty"`
	// Missing is how many bytes of the partition, as its table gives
	// it, lie past the end of the image (a copy cut short); 0 normally.
	Missing int64   `json:"missing_bytes,omitempty"`
	Content Content `json:"content"`
}

// LV is one logical volume and what it holds.
type LV struct {
	VG      string  `json:"vg"`
	Name    string  `json:"name"`
	Size    int64   `json:"size"`
	Type    string  `json:"type"`
	Content Content `json:"content"`
	// Error says why the LV could not be read, if it could not.
	Error string `json:"error,omitempty"`
}

// Layout is what Disk finds on a disk.
type Layout struct {
	// Scheme is "mbr", "gpt", or "" for a disk without a partition table.
	Scheme     string      `json:"scheme,omitempty"`
	Partitions []Partition `json:"partitions,omitempty"`
	// Content is the whole disk's content when it has no partition table
	// (a filesystem or PV made on the whole disk, as Xen guests often have).
	Content *Content `json:"content,omitempty"`
	LVs     []LV     `json:"lvs,omitempty"`
}

// Disk reads the partition table (if any), scans the partitions (or the
// whole disk) for LVM physical volumes and probes every partition and
// logical volume for a filesystem signature.
func Disk(disk diskimg.Device) (*Layout, error) {
	var l Layout
	var pvs []diskimg.Device
	tab, err := part.Read(disk)
	switch {
	case errors.Is(err, part.ErrNoTable):
		c := Probe(disk)
		l.Content = &c
		if c.Type == "LVM2_member" {
			pvs = append(pvs, disk)
		}
	case err != nil:
		return nil, fmt.Errorf("reading partition table: %w", err)
	default:
		l.Scheme = tab.Scheme
		for _, p := range tab.Partitions {
			pp := Partition{Number: p.Number, Type: p.Type, Start: p.Start, Size: p.Size, Bootable: p.Bootable, Extended: p.Extended, Missing: p.Cut}
			if !p.Extended {
				dev := p.Device()
				pp.Content = Probe(dev)
				if pp.Content.Type == "LVM2_member" {
					pvs = append(pvs, dev)
				}
			}
			l.Partitions = append(l.Partitions, pp)
		}
	}
	if len(pvs) == 0 {
		return &l, nil
	}
	vgs, err := lvm.Scan(pvs...)
	if err != nil {
		return nil, fmt.Errorf("reading LVM metadata: %w", err)
	}
	for _, vg := range vgs {
		for _, lv := range vg.LVs {
			if !lv.Visible {
				continue
			}
			out := LV{VG: vg.Name, Name: lv.Name, Size: lv.Size, Type: lv.Type}
			if c, err := probeErr(lv.Device()); err != nil {
				out.Error = err.Error()
			} else {
				out.Content = c
			}
			l.LVs = append(l.LVs, out)
		}
	}
	return &l, nil
}

// Probe names what dev holds from its signatures; read errors give an
// empty Content.
func Probe(dev diskimg.Device) Content {
	c, _ := probeErr(dev)
	return c
}

// Superblock signatures (offsets in bytes from the start of the device).
const (
	extSuper = 1024

	extCompatHasJournal = 0x0004
	extIncompatExtents  = 0x0040
	extIncompat64bit    = 0x0080
	extIncompatFlexBG   = 0x0200
	extROCompatHugeFile = 0x0008
	extROCompatGdtCsum  = 0x0010
	extROCompatDirNlink = 0x0020
	extROCompatExtraIsz = 0x0040
	extROCompatMetaCsum = 0x0400
)

func probeErr(dev diskimg.Device) (Content, error) {
	head := make([]byte, 8192)
	n, err := dev.ReadAt(head, 0)
	if n < 512 {
		if err == nil {
			err = fmt.Errorf("device of %d bytes", n)
		}
		return Content{}, err
	}
	head = head[:n]
	le := binary.LittleEndian
	switch {
	case len(head) >= extSuper+256 && le.Uint16(head[extSuper+56:]) == 0xef53:
		sb := head[extSuper:]
		compat, incompat, ro := le.Uint32(sb[92:]), le.Uint32(sb[96:]), le.Uint32(sb[100:])
		typ := "ext2"
		if compat&extCompatHasJournal != 0 {
			typ = "ext3"
		}
		if incompat&(extIncompatExtents|extIncompat64bit|extIncompatFlexBG) != 0 ||
			ro&(extROCompatHugeFile|extROCompatGdtCsum|extROCompatDirNlink|extROCompatExtraIsz|extROCompatMetaCsum) != 0 {
			typ = "ext4"
		}
		return Content{Type: typ, Label: cstring(sb[120:136]), UUID: uuid(sb[104:120])}, nil
	case len(head) >= 4096 && string(head[4096-10:4096]) == "SWAPSPACE2":
		return Content{Type: "swap", Label: cstring(head[1024+28 : 1024+44]), UUID: uuid(head[1024+12 : 1024+28])}, nil
	case lvm.HasLabel(dev):
		return Content{Type: "LVM2_member"}, nil
	case bytes.HasPrefix(head, []byte("XFSB")):
		return Content{Type: "xfs", Label: cstring(head[108:120])}, nil
	case string(head[3:11]) == "NTFS    ":
		return Content{Type: "ntfs"}, nil
	case head[510] == 0x55 && head[511] == 0xaa && (string(head[54:59]) == "FAT12" || string(head[54:59]) == "FAT16" || string(head[82:87]) == "FAT32"):
		return Content{Type: "vfat"}, nil
	}
	return Content{}, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func uuid(b []byte) string {
	if bytes.Equal(b, make([]byte, 16)) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
