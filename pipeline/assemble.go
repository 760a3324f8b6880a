package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/lvm"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/guestfs"
)

// namedDisk is a disk under the name the guest knows it by (xvda on Xen,
// vda on KVM).
type namedDisk struct {
	name string
	dev  diskimg.Device
}

// assembleView finds the partitions, LVM volumes and ext2/3/4
// filesystems on disks, finds the root filesystem (the one with
// etc/fstab) and mounts the others where its fstab says, and records
// every device name, label and UUID the guest would see.
func assembleView(ctx context.Context, disks []namedDisk, readOnly bool) (*guestView, func() error, error) {
	v := &guestView{filesystems: map[string]fs.FS{}, devices: map[string]bool{}, labels: map[string]bool{}, uuids: map[string]bool{}}
	byDev := map[string]*extfs.FS{}
	var cl closers
	closeAll := func() error { return cl.Close() }
	var opts []extfs.Option
	if readOnly {
		opts = append(opts, extfs.ReadOnly())
	}
	try := func(name string, dev diskimg.Device) {
		v.devices["/dev/"+name] = true
		if l, u, ok := swapLabel(dev); ok {
			if l != "" {
				v.labels[l] = true
			}
			if u != "" {
				v.uuids[u] = true
			}
			return
		}
		f, err := extfs.Open(dev, opts...)
		if err != nil {
			return
		}
		cl = append(cl, f)
		byDev["/dev/"+name] = f
		v.filesystems[name] = f
		if l := f.Label(); l != "" {
			v.labels[l] = true
		}
		if u := f.UUID(); u != "" {
			v.uuids[strings.ToLower(u)] = true
		}
	}
	var pvs []diskimg.Device
	for _, d := range disks {
		tbl, err := part.Read(d.dev)
		switch {
		case errors.Is(err, part.ErrNoTable):
			if lvm.HasLabel(d.dev) {
				pvs = append(pvs, d.dev)
				v.devices["/dev/"+d.name] = true
			} else {
				try(d.name, d.dev)
			}
			continue
		case err != nil:
			closeAll()
			return nil, nil, fmt.Errorf("disk %s: %w", d.name, err)
		}
		v.devices["/dev/"+d.name] = true
		for _, p := range tbl.Partitions {
			name := fmt.Sprintf("%s%d", d.name, p.Number)
			v.devices["/dev/"+name] = true
			if p.Extended {
				continue
			}
			if lvm.HasLabel(p.Device()) {
				pvs = append(pvs, p.Device())
				continue
			}
			try(name, p.Device())
		}
	}
	if len(pvs) > 0 {
		vgs, err := lvm.Scan(pvs...)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("reading LVM: %w", err)
		}
		for _, vg := range vgs {
			for _, lv := range vg.LVs {
				if !lv.Visible {
					continue
				}
				name := vg.Name + "/" + lv.Name
				v.devices["/dev/mapper/"+strings.ReplaceAll(vg.Name, "-", "--")+"-"+strings.ReplaceAll(lv.Name, "-", "--")] = true
				try(name, lv.Device())
				if f, ok := byDev["/dev/"+name]; ok {
					byDev["/dev/mapper/"+strings.ReplaceAll(vg.Name, "-", "--")+"-"+strings.ReplaceAll(lv.Name, "-", "--")] = f
				}
			}
		}
	}

	// The root filesystem holds etc/fstab; prefer one that also has sbin.
	names := make([]string, 0, len(v.filesystems))
	for n := range v.filesystems {
		names = append(names, n)
	}
	sort.Strings(names)
	var root *extfs.FS
	for _, n := range names {
		f := byDev["/dev/"+n]
		if _, err := fs.Stat(f, "etc/fstab"); err == nil {
			if root == nil {
				root = f
			}
			if _, err := fs.Stat(f, "sbin"); err == nil {
				root = f
				break
			}
		}
	}
	if root == nil {
		closeAll()
		return nil, nil, errors.New("no root filesystem (no ext2/3/4 filesystem holds etc/fstab)")
	}
	mounts := guestfs.NewMounts(root)
	fstab, err := root.ReadFile("etc/fstab")
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("reading /etc/fstab: %w", err)
	}
	for _, line := range strings.Split(string(fstab), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") || f[1] == "/" || !strings.HasPrefix(f[1], "/") || !strings.HasPrefix(f[2], "ext") {
			continue
		}
		var fsys *extfs.FS
		switch {
		case strings.HasPrefix(f[0], "LABEL="):
			fsys = findFS(byDev, func(x *extfs.FS) bool { return x.Label() == strings.TrimPrefix(f[0], "LABEL=") })
		case strings.HasPrefix(f[0], "UUID="):
			fsys = findFS(byDev, func(x *extfs.FS) bool { return strings.EqualFold(x.UUID(), strings.TrimPrefix(f[0], "UUID=")) })
		default:
			fsys = byDev[f[0]]
		}
		if fsys == nil || fsys == root {
			continue // not resolvable: the fstab check reports it
		}
		if err := mounts.Mount(strings.TrimPrefix(path.Clean(f[1]), "/"), fsys); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	v.root = mounts
	return v, closeAll, nil
}

func findFS(byDev map[string]*extfs.FS, match func(*extfs.FS) bool) *extfs.FS {
	keys := make([]string, 0, len(byDev))
	for k := range byDev {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if match(byDev[k]) {
			return byDev[k]
		}
	}
	return nil
}

// swapLabel reads a Linux swap area's label and UUID (the header is in
// the first page; the signature ends it).
func swapLabel(dev diskimg.Device) (label, uuid string, ok bool) {
	const page = 4096
	if dev.Size() < page {
		return "", "", false
	}
	b := make([]byte, page)
	if _, err := dev.ReadAt(b, 0); err != nil {
		return "", "", false
	}
	if sig := string(b[page-10:]); sig != "SWAPSPACE2" && sig != "SWAP-SPACE" {
		return "", "", false
	}
	u := b[1024+12 : 1024+28]
	uuid = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	if strings.Trim(uuid, "0-") == "" {
		uuid = ""
	}
	label = strings.TrimRight(string(b[1024+28:1024+44]), "\x00")
	return label, uuid, true
}
