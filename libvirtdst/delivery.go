package libvirtdst

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/xen2kvm/xen2kvm/config"
)

// VolumeSpec is one volume a delivery writes.
type VolumeSpec struct {
	Name     string
	Format   string // "qcow2" or "raw"
	Capacity int64  // virtual size in bytes
}

// Plan is what one delivery writes into one pool.
type Plan struct {
	Guest   string // the domain name
	Pool    string
	Volumes []VolumeSpec
	// Need is the space the volumes will take (the guest's allocated
	// data); Begin refuses a pool with less available.
	Need int64
	// Force replaces a domain and volumes of the same names.
	Force bool
}

// ExistsError is a domain or volume that is already on the destination.
type ExistsError struct {
	URI  string
	Kind string // "domain" or "volume"
	Name string
	Pool string // for a volume
}

func (e *ExistsError) Error() string {
	if e.Kind == "volume" {
		return fmt.Sprintf("volume %s in pool %s %v (%s)", e.Name, e.Pool, ErrExists, e.URI)
	}
	return fmt.Sprintf("%s %s %v (%s)", e.Kind, e.Name, ErrExists, e.URI)
}

func (e *ExistsError) Unwrap() error { return ErrExists }

// Hint says how to replace it.
func (e *ExistsError) Hint() string {
	return "add --force to replace it (the old " + e.Kind + " is deleted)"
}

// state is what the state volume NAME.xen2kvm-state records.
type state struct {
	Tool    string   `json:"tool"`
	Guest   string   `json:"guest"`
	Volumes []string `json:"volumes"`
	// Domain: the run was defining the domain (it may exist).
	Domain  bool      `json:"domain,omitempty"`
	Started time.Time `json:"started"`
	// Seq orders the writes of one delivery: the latest slot wins.
	Seq int `json:"seq,omitempty"`
}

// The state volume holds two slots of stateSlot bytes, each a state in
// JSON padded with spaces. A write rewrites the volume in place, never
// deleting it (a run killed between deleting and creating it again would
// leave its volumes named nowhere): the new state goes into the slot
// that does not hold the latest one, the other slot is written back
// byte for byte as it was, so a run killed in the middle of the write
// leaves one whole slot, the state before the write or after it. A
// state volume of zeros, or whose only state is cut short (a run killed
// between creating it and the end of its first write, before any volume
// of its own), names nothing.
const stateSlot = 16 << 10

// stateSlots is what a state volume's bytes say: its latest state, which
// slot holds it, and the slots' bytes as they are (nil for a volume too
// small to hold two slots: written by an earlier version, in one piece).
type stateSlots struct {
	latest state
	at     int
	raw    [2][]byte
}

// parseState reads a state volume's bytes b; ok is false when they are
// not xen2kvm's state of guest.
func parseState(b []byte, guest string) (st stateSlots, ok bool) {
	parts := [][]byte{b}
	if len(b) >= 2*stateSlot {
		st.raw = [2][]byte{b[:stateSlot], b[stateSlot : 2*stateSlot]}
		parts = st.raw[:]
	}
	name, _ := json.Marshal(guest)
	torn := append([]byte(`{"tool":"xen2kvm","guest":`), name...)
	found, none := false, true
	for i, part := range parts {
		part = bytes.TrimRight(part, "\x00 \n")
		if len(part) == 0 {
			continue
		}
		var s state
		if json.Unmarshal(part, &s) != nil || s.Tool != "xen2kvm" || s.Guest != guest {
			if !bytes.HasPrefix(part, torn) {
				none = false // someone else's bytes
			}
			continue
		}
		if !found || s.Seq > st.latest.Seq {
			st.latest, st.at, found = s, i, true
		}
	}
	return st, found || none
}

// StateVolume is the name of the state volume of a guest's delivery.
func StateVolume(guest string) string { return guest + ".xen2kvm-state" }

// Delivery is one guest being delivered into a pool: Begin starts it,
// Commit or Abort ends it.
type Delivery struct {
	c    *Conn
	pool PoolInfo
	plan Plan

	vols    map[string]libvirt.StorageVol
	files   map[string]*VolumeFile
	created []string
	names   []string // in the state volume
	// shared are the shared volumes the domain may name (see Shared):
	// not the delivery's own.
	shared map[string]VolumeSpec
	// state is the state volume as read or last written, stateVol the
	// volume (nil before it exists).
	state    stateSlots
	stateVol *libvirt.StorageVol

	oldDomain bool // a domain of the name existed (Force)
	defined   bool
	started   bool

	// Recovered lists volumes an interrupted earlier run left (named in
	// its state volume) that this delivery replaced.
	Recovered []string
	// Replaced lists existing volumes replaced because of Force.
	Replaced []string
}

// Begin checks the destination, records the delivery in the pool's state
// volume and creates the plan's volumes, empty.
func (c *Conn) Begin(ctx context.Context, plan Plan) (d *Delivery, err error) {
	if plan.Pool == "" {
		plan.Pool = "default"
	}
	if err := config.CheckName(plan.Guest); err != nil {
		return nil, err
	}
	for _, v := range plan.Volumes {
		if !cleanName(v.Name) {
			return nil, fmt.Errorf("volume name %q: not a file name", v.Name)
		}
	}
	pool, err := c.Pool(plan.Pool)
	if err != nil {
		return nil, err
	}
	d = &Delivery{c: c, pool: pool, plan: plan, vols: map[string]libvirt.StorageVol{}, files: map[string]*VolumeFile{}}
	_, exists, running, err := c.domainState(plan.Guest)
	if err != nil {
		return nil, err
	}
	// Volumes (and a domain) of an interrupted run are ours to replace.
	var prev state
	sv, svExists, err := c.lookupVolume(plan.Pool, StateVolume(plan.Guest))
	if err != nil {
		return nil, err
	}
	if svExists {
		b, err := c.readVolume(sv)
		if err != nil {
			return nil, err
		}
		st, ok := parseState(b, plan.Guest)
		if !ok {
			return nil, fmt.Errorf("volume %s in pool %s on %s is not xen2kvm's state of guest %s; delete it with virsh vol-delete if it is no one's", StateVolume(plan.Guest), plan.Pool, c.uri, plan.Guest)
		}
		prev, d.state = st.latest, st
		d.stateVol = &sv
	}
	var errs []error
	if exists {
		switch {
		case running:
			if plan.Force || prev.Domain {
				errs = append(errs, fmt.Errorf("domain %s on %s: %w (shut it down before replacing it)", plan.Guest, c.uri, ErrRunning))
			} else {
				errs = append(errs, &ExistsError{URI: c.uri, Kind: "domain", Name: plan.Guest})
			}
		case !plan.Force && !prev.Domain:
			errs = append(errs, &ExistsError{URI: c.uri, Kind: "domain", Name: plan.Guest})
		}
		d.oldDomain = true
	}
	var replace []string
	var freed uint64 // what the volumes to replace give back
	for _, v := range plan.Volumes {
		vol, ok, err := c.lookupVolume(plan.Pool, v.Name)
		if err != nil {
			return nil, err
		}
		if ok && (plan.Force || slices.Contains(prev.Volumes, v.Name)) {
			if _, _, alloc, err := c.l.StorageVolGetInfo(vol); err == nil {
				freed += alloc
			}
		}
		switch {
		case !ok:
		case slices.Contains(prev.Volumes, v.Name):
			d.Recovered = append(d.Recovered, v.Name)
			replace = append(replace, v.Name)
		case plan.Force:
			d.Replaced = append(d.Replaced, v.Name)
			replace = append(replace, v.Name)
		default:
			errs = append(errs, &ExistsError{URI: c.uri, Kind: "volume", Name: v.Name, Pool: plan.Pool})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if svExists {
		// A run killed during its boot check also left the transient
		// copy running and its overlays.
		if err := c.removeBootLeftovers(plan.Pool, plan.Guest); err != nil {
			return nil, err
		}
	}
	if avail := pool.Available + freed; plan.Need > 0 && uint64(plan.Need) > avail {
		return nil, fmt.Errorf("pool %s on %s: %w: the guest needs %d MiB, %d MiB are available", plan.Pool, c.uri, ErrPoolFull, plan.Need>>20, avail>>20)
	}

	// Record the volumes before creating them: a run killed from here on
	// leaves a state volume that names them.
	names := slices.Clone(prev.Volumes)
	for _, v := range plan.Volumes {
		if !slices.Contains(names, v.Name) {
			names = append(names, v.Name)
		}
	}
	d.names = names
	if err := d.writeState(false); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			d.Abort()
			d = nil
		}
	}()
	// Volumes of the earlier run that this plan does not write again.
	for _, n := range prev.Volumes {
		if !slices.ContainsFunc(plan.Volumes, func(v VolumeSpec) bool { return v.Name == n }) {
			if err := c.deleteVolume(plan.Pool, n); err != nil {
				return d, err
			}
		}
	}
	for _, n := range replace {
		if err := c.deleteVolume(plan.Pool, n); err != nil {
			return d, err
		}
	}
	for _, v := range plan.Volumes {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		if v.Format != "raw" && v.Format != "qcow2" {
			return d, fmt.Errorf("volume %s: format %q (want raw or qcow2)", v.Name, v.Format)
		}
		vol, err := c.createVolume(plan.Pool, v.Name, v.Format, uint64(v.Capacity), "", "")
		if err != nil {
			return d, err
		}
		d.created = append(d.created, v.Name)
		d.vols[v.Name] = vol
		f := &VolumeFile{c: c, vol: vol, size: v.Capacity, fileBacked: pool.fileBacked(),
			name: fmt.Sprintf("volume %s in pool %s on %s", v.Name, plan.Pool, c.uri)}
		// What the new volume holds that the image may not overwrite:
		// the qcow2 header qemu-img wrote, or anything at all on a
		// block device.
		switch {
		case v.Format == "qcow2":
			_, _, phys, err := c.l.StorageVolGetInfoFlags(vol, uint32(libvirt.StorageVolGetPhysical))
			if err != nil {
				return d, fmt.Errorf("reading volume %s on %s: %w", v.Name, c.uri, err)
			}
			f.zeroBelow = min(int64(phys), 4<<20)
			if pool.fileBacked() {
				f.size = int64(phys)
			}
		case !pool.fileBacked():
			f.zeroBelow = v.Capacity
		}
		d.files[v.Name] = f
	}
	return d, nil
}

// removeBootLeftovers destroys the boot check's transient copy of guest
// and deletes its overlay volumes, when an interrupted run left them.
func (c *Conn) removeBootLeftovers(pool, guest string) error {
	if dom, err := c.l.DomainLookupByName(bootName(guest)); err == nil {
		c.l.DomainDestroy(dom)
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return fmt.Errorf("storage pool %q on %s: %w", pool, c.uri, c.lost(err))
	}
	vols, _, err := c.l.StoragePoolListAllVolumes(p, 1, 0)
	if err != nil {
		return fmt.Errorf("listing pool %s on %s: %w", pool, c.uri, c.lost(err))
	}
	for _, v := range vols {
		if strings.HasPrefix(v.Name, guest+"-") && strings.HasSuffix(v.Name, overlaySuffix) {
			if err := c.deleteVolume(pool, v.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeState (re)writes the state volume naming the volumes, and
// whether the domain is being defined.
func (d *Delivery) writeState(domain bool) error {
	st := state{Tool: "xen2kvm", Guest: d.plan.Guest, Volumes: d.names, Domain: domain, Started: time.Now().UTC(), Seq: d.state.latest.Seq + 1}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if len(b) >= stateSlot {
		return fmt.Errorf("the state of guest %s is %d bytes, more than the %d its volume holds", d.plan.Guest, len(b), stateSlot)
	}
	slot := bytes.Repeat([]byte{' '}, stateSlot)
	copy(slot, b)
	slot[stateSlot-1] = '\n'
	name := StateVolume(d.plan.Guest)
	if d.stateVol == nil || d.state.raw[0] == nil {
		// None yet, or one from an earlier version too small for two
		// slots: (re)created, the new state in slot 0.
		if err := d.c.deleteVolume(d.plan.Pool, name); err != nil {
			return err
		}
		v, err := d.c.createVolume(d.plan.Pool, name, "raw", 2*stateSlot, "", "")
		if err != nil {
			return err
		}
		d.stateVol = &v
		d.state = stateSlots{raw: [2][]byte{make([]byte, stateSlot), make([]byte, stateSlot)}, at: 1}
	}
	at := 1 - d.state.at
	raw := d.state.raw
	raw[at] = slot
	if err := d.c.uploadStream(*d.stateVol, bytes.NewReader(slices.Concat(raw[0], raw[1])), 2*stateSlot, false); err != nil {
		return err
	}
	d.state = stateSlots{latest: st, at: at, raw: raw}
	return nil
}

// Pool is the pool the delivery writes into.
func (d *Delivery) Pool() PoolInfo { return d.pool }

// File is the volume name as a file to write the image into (nil when
// the plan has no such volume).
func (d *Delivery) File(name string) *VolumeFile { return d.files[name] }

// Upload writes r, size bytes, into the volume name from its start (for
// small files such as a kernel).
func (d *Delivery) Upload(name string, r io.Reader, size int64) error {
	v, ok := d.vols[name]
	if !ok {
		return fmt.Errorf("volume %s is not in the delivery's plan", name)
	}
	return d.c.uploadStream(v, r, size, d.pool.fileBacked())
}

// Path is the path of the volume on the destination host.
func (d *Delivery) Path(name string) (string, error) {
	v, ok := d.vols[name]
	if !ok {
		return "", fmt.Errorf("volume %s is not in the delivery's plan", name)
	}
	return d.c.volumePath(v)
}

// Define defines the domain from its XML (see DomainXML), replacing the
// old one of the same name when the plan said Force, and starts it when
// start is set.
func (d *Delivery) Define(xml []byte, start bool) error {
	// From here a killed run may leave a domain: the state says so, and
	// the next run replaces it.
	if err := d.writeState(true); err != nil {
		return err
	}
	if d.oldDomain {
		dom, exists, running, err := d.c.domainState(d.plan.Guest)
		if err != nil {
			return err
		}
		if running {
			return fmt.Errorf("domain %s on %s: %w (shut it down before replacing it)", d.plan.Guest, d.c.uri, ErrRunning)
		}
		if exists {
			flags := libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata | libvirt.DomainUndefineCheckpointsMetadata
			if err := d.c.l.DomainUndefineFlags(dom, flags); err != nil {
				return fmt.Errorf("undefining the old domain %s on %s: %w", d.plan.Guest, d.c.uri, err)
			}
		}
	}
	dom, err := d.c.l.DomainDefineXMLFlags(string(xml), libvirt.DomainDefineValidate)
	if err != nil {
		return fmt.Errorf("defining domain %s on %s: %w", d.plan.Guest, d.c.uri, err)
	}
	d.defined = true
	if !start {
		return nil
	}
	if err := d.c.l.DomainCreate(dom); err != nil {
		return fmt.Errorf("starting domain %s on %s: %w", d.plan.Guest, d.c.uri, err)
	}
	d.started = true
	return nil
}

// Commit ends a delivery that succeeded: the state volume goes.
func (d *Delivery) Commit() error {
	return d.c.deleteVolume(d.plan.Pool, StateVolume(d.plan.Guest))
}

// Abort undoes the delivery: the domain it defined (stopped first if it
// started it) and the volumes it created are deleted, then the state
// volume. When the daemon cannot be reached, what is left is reported
// and the state volume stays, so that a re-run recognises the volumes.
func (d *Delivery) Abort() error {
	var errs []error
	const wait = 30 * time.Second
	if d.defined {
		errs = append(errs, deadline(wait, func() error {
			dom, err := d.c.l.DomainLookupByName(d.plan.Guest)
			if err != nil {
				return fmt.Errorf("undefining domain %s on %s: %w", d.plan.Guest, d.c.uri, err)
			}
			if d.started {
				d.c.l.DomainDestroy(dom)
			}
			if err := d.c.l.DomainUndefineFlags(dom, libvirt.DomainUndefineManagedSave|libvirt.DomainUndefineSnapshotsMetadata); err != nil {
				return fmt.Errorf("undefining domain %s on %s: %w", d.plan.Guest, d.c.uri, err)
			}
			return nil
		}))
	}
	for _, n := range d.created {
		errs = append(errs, deadline(wait, func() error { return d.c.deleteVolume(d.plan.Pool, n) }))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleaning up on %s (a re-run for %s replaces what is left): %w", d.c.uri, d.plan.Guest, err)
	}
	return deadline(wait, func() error { return d.c.deleteVolume(d.plan.Pool, StateVolume(d.plan.Guest)) })
}

// cleanName says whether name is safe as a volume name.
func cleanName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/\x00") && name != "." && name != ".."
}
