// Package lvm reads LVM2 physical volumes (the label, the metadata area
// and its text metadata) and presents each logical volume as a block
// device, without device-mapper and without the lvm2 tools.
//
//	vgs, err := lvm.Scan(xvda2, xvdb) // every device that may be a PV
//	for _, vg := range vgs {
//		for _, lv := range vg.LVs {
//			fmt.Println(vg.Name, lv.Name, lv.Size) // VolGroup00 LogVol00 ...
//			dev := lv.Device()
//		}
//	}
//
// Linear and striped LVs are mapped; mirror LVs read their first leg.
// Other segment types (snapshots, thin pools, RAID) are listed with their
// Type and their Device fails with diskimg.ErrNotSupported.
package lvm

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// Sentinel errors.
var (
	// ErrCorrupt means an LVM label, metadata area or metadata is invalid.
	ErrCorrupt = errors.New("corrupt LVM metadata")
	// ErrMissingPV is returned by reads of an LV that lies on a PV that
	// was not passed to Scan.
	ErrMissingPV = errors.New("physical volume missing")
)

// VG is a volume group.
type VG struct {
	Name  string
	UUID  string
	SeqNo int64
	// ExtentSize is in bytes.
	ExtentSize int64
	PVs        []*PV
	LVs        []*LV
}

// PV is a physical volume of a VG.
type PV struct {
	Name string // the metadata's name, "pv0"
	UUID string // with dashes, as lvm prints it
	// Device is nil for a PV that was not among the scanned devices.
	Device diskimg.Device
	// Index is the position of Device in Scan's arguments, or -1.
	Index int
	// PEStart is the byte offset of the first extent in Device.
	PEStart int64
	PECount int64
}

// LV is a logical volume.
type LV struct {
	Name string
	UUID string
	// Size is in bytes.
	Size int64
	// Type is "linear", "striped", "mirror", or the unsupported segment
	// type that makes up the LV ("snapshot", "thin", "raid1", …).
	Type string
	// Visible is false for LVs lvm hides (mirror legs and logs, snapshot
	// stores, pool metadata).
	Visible bool
	// Status is the LV's status flags ("READ", "WRITE", "VISIBLE").
	Status []string

	vg   *VG
	segs []segment
}

// segment maps extents [start, start+count) of an LV.
type segment struct {
	start, count int64 // in extents
	typ          string
	stripeSize   int64    // bytes, striped with more than one stripe
	stripes      []stripe // striped; mirror: the first leg
}

type stripe struct {
	pv     *PV
	pvName string // the PV's name, or an LV's when pv is nil
	pe     int64  // first physical extent
}

// Scan reads the LVM2 labels and metadata of devs and returns the volume
// groups found. Devices without an LVM2 label are skipped. When several
// PVs carry a VG's metadata the copy with the highest seqno wins.
func Scan(devs ...diskimg.Device) ([]*VG, error) {
	type found struct {
		label *pvLabel
		index int
	}
	pvs := map[string]found{} // by UUID without dashes
	texts := map[string]*vgText{}
	var order []string
	for i, dev := range devs {
		l, err := readLabel(dev)
		if errors.Is(err, errNoLabel) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("device %d: %w", i, err)
		}
		pvs[l.uuid] = found{l, i}
		// A PV may carry two metadata areas; one good copy is enough.
		var mdaErrs []error
		for _, a := range l.mdas {
			id, t, err := readVG(dev, a)
			if err != nil {
				mdaErrs = append(mdaErrs, err)
				continue
			}
			if t == nil {
				continue
			}
			if old, ok := texts[id]; !ok || t.seqno > old.seqno {
				if !ok {
					order = append(order, id)
				}
				texts[id] = t
			}
		}
		if len(mdaErrs) > 0 && len(mdaErrs) == len(l.mdas) {
			return nil, fmt.Errorf("device %d: %w", i, errors.Join(mdaErrs...))
		}
	}
	var vgs []*VG
	for _, id := range order {
		vg, err := buildVG(texts[id].vg, func(uuid string) (diskimg.Device, int) {
			f, ok := pvs[strings.ReplaceAll(uuid, "-", "")]
			if !ok {
				return nil, -1
			}
			return devs[f.index], f.index
		})
		if err != nil {
			return nil, fmt.Errorf("volume group %s: %w: %w", texts[id].vg.name, ErrCorrupt, err)
		}
		vgs = append(vgs, vg)
	}
	return vgs, nil
}

// vgText is one copy of a VG's metadata.
type vgText struct {
	seqno int64
	vg    *section
}

// readVG reads the metadata area a and returns the VG's id and metadata,
// or a nil vgText when the area holds none.
func readVG(dev diskimg.Device, a area) (string, *vgText, error) {
	text, err := readMetadata(dev, a)
	if err != nil || text == nil {
		return "", nil, err
	}
	root, err := parseConfig(text)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	vgSec, err := vgSection(root)
	if err != nil {
		return "", nil, err
	}
	id, err := vgSec.str("id")
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	seq, err := vgSec.int("seqno")
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return id, &vgText{seq, vgSec}, nil
}

// HasLabel tells whether dev carries an LVM2 PV label.
func HasLabel(dev diskimg.Device) bool {
	_, err := readLabel(dev)
	return err == nil
}

// vgSection finds the VG's section: the one top-level section of the
// metadata.
func vgSection(root *section) (*section, error) {
	var vg *section
	for _, s := range root.sections {
		if s.child("physical_volumes") != nil || s.values["extent_size"].num != 0 {
			if vg != nil {
				return nil, fmt.Errorf("metadata holds two volume groups %s and %s: %w", vg.name, s.name, ErrCorrupt)
			}
			vg = s
		}
	}
	if vg == nil {
		return nil, fmt.Errorf("metadata holds no volume group: %w", ErrCorrupt)
	}
	return vg, nil
}

// Missing returns the PVs of the VG that were not among the scanned
// devices.
func (vg *VG) Missing() []*PV {
	var out []*PV
	for _, pv := range vg.PVs {
		if pv.Device == nil {
			out = append(out, pv)
		}
	}
	return out
}

// LV returns the LV called name, or nil.
func (vg *VG) LV(name string) *LV {
	for _, lv := range vg.LVs {
		if lv.Name == name {
			return lv
		}
	}
	return nil
}

func buildVG(s *section, lookup func(uuid string) (diskimg.Device, int)) (*VG, error) {
	vg := &VG{Name: s.name}
	var err error
	if vg.UUID, err = s.str("id"); err != nil {
		return nil, err
	}
	if vg.SeqNo, err = s.int("seqno"); err != nil {
		return nil, err
	}
	es, err := s.int("extent_size")
	if err != nil {
		return nil, err
	}
	if es <= 0 || es > 1<<32 {
		return nil, fmt.Errorf("extent_size %d", es)
	}
	vg.ExtentSize = es * sectorSize
	byName := map[string]*PV{}
	if pvs := s.child("physical_volumes"); pvs != nil {
		for _, ps := range pvs.sections {
			pv := &PV{Name: ps.name}
			if pv.UUID, err = ps.str("id"); err != nil {
				return nil, err
			}
			start, err := ps.int("pe_start")
			if err != nil {
				return nil, err
			}
			if pv.PECount, err = ps.int("pe_count"); err != nil {
				return nil, err
			}
			if start < 0 || start > 1<<50 || pv.PECount < 0 || pv.PECount > 1<<40 {
				return nil, fmt.Errorf("physical volume %s: pe_start %d, pe_count %d", pv.Name, start, pv.PECount)
			}
			pv.PEStart = start * sectorSize
			if pv.PECount > (1<<62-pv.PEStart)/vg.ExtentSize {
				return nil, fmt.Errorf("physical volume %s: %d extents of %d bytes", pv.Name, pv.PECount, vg.ExtentSize)
			}
			pv.Device, pv.Index = lookup(pv.UUID)
			byName[pv.Name] = pv
			vg.PVs = append(vg.PVs, pv)
		}
	}
	lvs := s.child("logical_volumes")
	if lvs == nil {
		return vg, nil
	}
	snapshotStores := map[string]bool{}
	for _, ls := range lvs.sections {
		lv := &LV{Name: ls.name, vg: vg, Status: ls.strings("status")}
		lv.UUID, _ = ls.str("id")
		lv.Visible = slices.Contains(lv.Status, "VISIBLE")
		for _, seg := range ls.sections {
			if !strings.HasPrefix(seg.name, "segment") {
				continue
			}
			sg, err := parseSegment(vg, seg, byName)
			if err != nil {
				return nil, fmt.Errorf("logical volume %s: %w", lv.Name, err)
			}
			if sg.typ == "snapshot" {
				if cow, err := seg.str("cow_store"); err == nil {
					snapshotStores[cow] = true
				}
			}
			lv.segs = append(lv.segs, sg)
		}
		slices.SortFunc(lv.segs, func(a, b segment) int { return int(a.start - b.start) })
		var next int64
		for _, sg := range lv.segs {
			if sg.start != next {
				return nil, fmt.Errorf("logical volume %s: segment at extent %d, want %d", lv.Name, sg.start, next)
			}
			next += sg.count
		}
		if next > 1<<62/vg.ExtentSize {
			return nil, fmt.Errorf("logical volume %s: %d extents", lv.Name, next)
		}
		lv.Size = next * vg.ExtentSize
		lv.Type = lvType(lv.segs)
		vg.LVs = append(vg.LVs, lv)
	}
	for _, lv := range vg.LVs {
		for _, sg := range lv.segs {
			for _, st := range sg.stripes {
				if st.pv == nil && vg.LV(st.pvName) == nil {
					return nil, fmt.Errorf("logical volume %s: unknown physical volume %q", lv.Name, st.pvName)
				}
			}
		}
	}
	// A snapshot's visible LV holds its copy-on-write store, not a
	// filesystem image.
	for _, lv := range vg.LVs {
		if snapshotStores[lv.Name] {
			lv.Type = "snapshot"
		}
	}
	return vg, nil
}

func parseSegment(vg *VG, s *section, pvs map[string]*PV) (segment, error) {
	var sg segment
	var err error
	if sg.start, err = s.int("start_extent"); err != nil {
		return sg, err
	}
	if sg.count, err = s.int("extent_count"); err != nil {
		return sg, err
	}
	if sg.start < 0 || sg.count <= 0 || sg.start > 1<<40 || sg.count > 1<<40 || sg.count > (1<<62)/vg.ExtentSize {
		return sg, fmt.Errorf("%s: extents %d+%d", s.name, sg.start, sg.count)
	}
	if sg.typ, err = s.str("type"); err != nil {
		return sg, err
	}
	switch sg.typ {
	case "striped":
		n, err := s.int("stripe_count")
		if err != nil {
			return sg, err
		}
		list := s.values["stripes"].list
		if n < 1 || int64(len(list)) != 2*n || sg.count%n != 0 {
			return sg, fmt.Errorf("%s: %d stripes listed for stripe_count %d over %d extents", s.name, len(list)/2, n, sg.count)
		}
		if n > 1 {
			ss, err := s.int("stripe_size")
			if err != nil {
				return sg, err
			}
			// Each stripe's area is a whole number of stripes.
			if ss <= 0 || ss > 1<<30 || (sg.count/n*vg.ExtentSize)%(ss*sectorSize) != 0 {
				return sg, fmt.Errorf("%s: stripe_size %d for %d extents of %d bytes per stripe", s.name, ss, sg.count/n, vg.ExtentSize)
			}
			sg.stripeSize = ss * sectorSize
		}
		for i := 0; i < len(list); i += 2 {
			st, err := parseArea(s.name, list[i], list[i+1], sg.count/n, pvs)
			if err != nil {
				return sg, err
			}
			sg.stripes = append(sg.stripes, st)
		}
	case "mirror":
		// Reads go to the first leg: an LV (mirror images) or a PV area
		// (pvmove).
		legs := s.values["mirrors"].list
		if len(legs) < 2 {
			return sg, fmt.Errorf("%s: mirror without legs", s.name)
		}
		st, err := parseArea(s.name, legs[0], legs[1], sg.count, pvs)
		if err != nil {
			return sg, err
		}
		sg.stripes = []stripe{st}
	}
	return sg, nil
}

// parseArea parses a (name, first extent) pair of a stripes or mirrors
// list holding count extents. A name that is not a PV is an LV's, which
// buildVG checks once all LVs are known.
func parseArea(seg string, name, pe value, count int64, pvs map[string]*PV) (stripe, error) {
	if !name.isStr || pe.isStr || pe.isArr || pe.num < 0 || pe.num > 1<<40 {
		return stripe{}, fmt.Errorf("%s: bad area entry", seg)
	}
	pv := pvs[name.str]
	if pv == nil {
		return stripe{pvName: name.str, pe: pe.num}, nil
	}
	if pe.num+count > pv.PECount {
		return stripe{}, fmt.Errorf("%s: extents %d+%d beyond the %d of %s", seg, pe.num, count, pv.PECount, pv.Name)
	}
	return stripe{pv: pv, pvName: name.str, pe: pe.num}, nil
}

func lvType(segs []segment) string {
	typ := "linear"
	for _, sg := range segs {
		switch {
		case sg.typ == "striped" && len(sg.stripes) == 1:
		case sg.typ == "striped":
			typ = "striped"
		default:
			return sg.typ
		}
	}
	return typ
}

// Device returns the LV as a block device. Reads and writes go to the
// PVs. Parts of the LV on a missing PV fail with ErrMissingPV; LVs of an
// unsupported type fail with diskimg.ErrNotSupported.
func (lv *LV) Device() diskimg.Device {
	return &lvDevice{lv: lv, depth: 0}
}

type lvDevice struct {
	lv    *LV
	depth int // mirror legs nest; bounded against loops
}

func (d *lvDevice) Size() int64 { return d.lv.Size }

func (d *lvDevice) ReadAt(p []byte, off int64) (int, error) {
	return d.io(p, off, false)
}

func (d *lvDevice) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > d.lv.Size || int64(len(p)) > d.lv.Size-off {
		return 0, fmt.Errorf("writing %d bytes at %d of the %d-byte LV %s: past its end", len(p), off, d.lv.Size, d.lv.Name)
	}
	return d.io(p, off, true)
}

func (d *lvDevice) io(p []byte, off int64, write bool) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("LV %s: negative offset %d", d.lv.Name, off)
	}
	if off >= d.lv.Size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	short := int64(len(p)) > d.lv.Size-off
	if short {
		p = p[:d.lv.Size-off]
	}
	if d.lv.Type == "snapshot" {
		return 0, fmt.Errorf("LV %s is a snapshot store: %w", d.lv.Name, diskimg.ErrNotSupported)
	}
	es := d.lv.vg.ExtentSize
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i, _ := slices.BinarySearchFunc(d.lv.segs, pos/es, func(sg segment, ext int64) int {
			switch {
			case ext < sg.start:
				return 1
			case ext >= sg.start+sg.count:
				return -1
			}
			return 0
		})
		sg := d.lv.segs[i]
		segOff := pos - sg.start*es
		segLen := sg.count * es
		dev, devOff, run, err := d.mapSegment(&sg, segOff, segLen)
		if err != nil {
			return n, err
		}
		if run <= 0 {
			return n, fmt.Errorf("LV %s at %d: empty mapping: %w", d.lv.Name, pos, ErrCorrupt)
		}
		chunk := min(int64(len(p)-n), run)
		var m int
		if write {
			m, err = dev.WriteAt(p[n:n+int(chunk)], devOff)
		} else {
			m, err = blk.ReadAtFull(dev, p[n:n+int(chunk)], devOff)
		}
		n += m
		if err != nil {
			return n, fmt.Errorf("LV %s at %d: %w", d.lv.Name, pos, err)
		}
	}
	if short {
		return n, io.EOF
	}
	return n, nil
}

// mapSegment maps byte segOff of segment sg to a device, an offset in it,
// and how many bytes from there stay contiguous.
func (d *lvDevice) mapSegment(sg *segment, segOff, segLen int64) (diskimg.Device, int64, int64, error) {
	es := d.lv.vg.ExtentSize
	switch {
	case sg.typ == "striped" || sg.typ == "mirror":
		n := int64(len(sg.stripes))
		var st stripe
		var inStripe, run int64
		if n == 1 {
			st, inStripe, run = sg.stripes[0], segOff, segLen-segOff
		} else {
			chunk := segOff / sg.stripeSize
			st = sg.stripes[chunk%n]
			inStripe = (chunk/n)*sg.stripeSize + segOff%sg.stripeSize
			run = sg.stripeSize - segOff%sg.stripeSize
			// The stripe area of each PV holds count/n extents.
			run = min(run, segLen/n-inStripe)
		}
		if st.pv == nil {
			// An area on another LV: a mirror image, or pvmove0 during a pvmove.
			leg := d.lv.vg.LV(st.pvName)
			if leg == nil || d.depth >= 4 {
				return nil, 0, 0, fmt.Errorf("LV %s: area on LV %q: %w", d.lv.Name, st.pvName, ErrCorrupt)
			}
			return &lvDevice{lv: leg, depth: d.depth + 1}, st.pe*es + inStripe, run, nil
		}
		if st.pv.Device == nil {
			return nil, 0, 0, fmt.Errorf("LV %s needs PV %s (%s): %w", d.lv.Name, st.pv.Name, st.pv.UUID, ErrMissingPV)
		}
		return st.pv.Device, st.pv.PEStart + st.pe*es + inStripe, run, nil
	}
	return nil, 0, 0, fmt.Errorf("LV %s: segment type %q: %w", d.lv.Name, sg.typ, diskimg.ErrNotSupported)
}
