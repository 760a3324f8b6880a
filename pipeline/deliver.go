package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/libvirtdst"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/virtiowin"
)

// remoteChunk is how much each copy worker reads and uploads at a time
// into a libvirt volume: every upload is a round trip.
const remoteChunk = 4 << 20

// deliver is write for a libvirt destination: the disks are streamed
// into volumes of the destination's pool (read once, written once, no
// local image), the guest boots there on throw-away overlays until its
// login prompt, and the domain is defined from the XML rewritten to name
// the volumes. A Windows guest's virtio-win first-boot disk becomes a
// volume too, and the virtio-win ISO a volume the pool's Windows guests
// share (uploaded once, never deleted with one guest). OutDir receives NAME.xml (as defined there),
// NAME-virtio.xml (naming the volumes, for the switch to virtio), the
// boot log and NAME.report.json. On any failure the volumes this run created and
// the domain it defined are deleted.
func (m *migration) deliver(ctx context.Context, k *config.KVMDomain, outDir, format string, old []string) (err error) {
	name := m.dom.Name
	stage, err := newStaging(outDir, name)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			stage.discard()
		}
	}()
	pool := m.opts.Pool
	if pool == "" {
		pool = "default"
	}
	m.log.Info("connecting", "guest", name, "to", m.opts.To)
	conn, err := libvirtdst.Connect(ctx, m.opts.To)
	if err != nil {
		return err
	}
	defer conn.Close()
	dest := &report.Destination{URI: m.opts.To, Pool: pool, Placement: m.opts.Placement}
	m.rep.Destination = dest

	// KVM when the host has it; --accel tcg asks for TCG.
	typ := "qemu"
	if m.opts.Accel != "tcg" {
		if typ, err = conn.DomainType(); err != nil {
			return err
		}
		if typ != "kvm" {
			if m.opts.Accel == "kvm" {
				return fmt.Errorf("%s offers no KVM (its capabilities list only TCG) and --accel kvm was given", m.opts.To)
			}
			m.rep.Warnings = append(m.rep.Warnings, fmt.Sprintf("%s offers no KVM: the domain is defined with type qemu (TCG emulation, much slower); redefine it with type kvm once KVM works there", m.opts.To))
		}
	}
	dest.DomainType = typ

	// A guest that booted through pygrub gets its kernel and initrd as
	// volumes too: libvirt boots them directly.
	var kernelVol, initrdVol, kernelFile, initrdFile string
	if k.BootFromDisk && k.Kernel == "" && m.conv.bootFiles != nil {
		bf, err := m.conv.bootFiles(stage.dir)
		if err != nil {
			return fmt.Errorf("reading the boot entry of the converted guest: %w", err)
		}
		kernelVol, kernelFile = name+"-vmlinuz", bf.Kernel
		k.Kernel, k.Cmdline = kernelFile, bf.Cmdline
		if bf.Initrd != "" {
			initrdVol, initrdFile = name+"-initrd.img", bf.Initrd
			k.Initrd = initrdFile
		}
		m.rep.Notes = append(m.rep.Notes, fmt.Sprintf("the guest booted through pygrub: its default grub entry %q's kernel and initrd are the volumes %s and %s, which the domain boots directly; after a kernel update inside the guest, upload the new kernel into them", bf.Title, kernelVol, initrdVol))
	}

	plan := libvirtdst.Plan{Guest: name, Pool: pool, Force: m.opts.Replace}
	for _, dk := range m.disks {
		plan.Volumes = append(plan.Volumes, libvirtdst.VolumeSpec{Name: dk.outName, Format: format, Capacity: dk.dev.Size()})
		plan.Need += dk.rep.EstimatedSize
	}
	// The virtio-win first-boot disk and ISO go into volumes too: the
	// destination cannot read files on this host.
	extra, err := m.virtioWinVolumes(stage)
	if err != nil {
		return err
	}
	var iso *sharedFile
	if vw := m.conv.virtioWin; vw != nil && vw.cd != "" {
		if iso, err = m.sharedISO(); err != nil {
			return err
		}
		vw.isoVol = iso.vol
		// Room for it unless the pool has it already.
		ready, err := conn.SharedReady(pool, iso.vol, iso.size)
		if err != nil {
			return err
		}
		if !ready {
			plan.Need += iso.size
		}
	}
	small := map[string]string{}
	for _, f := range append([][2]string{{kernelVol, kernelFile}, {initrdVol, initrdFile}}, extra...) {
		if f[0] == "" {
			continue
		}
		fi, err := os.Stat(f[1])
		if err != nil {
			return err
		}
		plan.Volumes = append(plan.Volumes, libvirtdst.VolumeSpec{Name: f[0], Format: "raw", Capacity: fi.Size()})
		plan.Need += fi.Size()
		small[f[0]] = f[1]
	}
	dl, err := conn.Begin(ctx, plan)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if aerr := dl.Abort(); aerr != nil {
				err = errors.Join(err, aerr)
			} else {
				m.log.Info("cleaned up the destination", "guest", name, "to", m.opts.To)
			}
		}
	}()
	dest.Recovered, dest.Replaced = dl.Recovered, dl.Replaced
	if len(dl.Recovered) > 0 {
		m.rep.Notes = append(m.rep.Notes, fmt.Sprintf("replaced volumes an interrupted earlier run left in pool %s: %v", pool, dl.Recovered))
	}
	for _, p := range plan.Volumes {
		dest.Volumes = append(dest.Volumes, p.Name)
	}

	if err := m.upload(ctx, dl, format, small, iso); err != nil {
		return err
	}

	gen, err := m.p.target.XML(k)
	if err != nil {
		return fmt.Errorf("writing libvirt XML: %w", err)
	}
	disks := map[string]string{}
	for _, dk := range m.disks {
		disks[dk.kvm.Target] = dk.outName
	}
	if vw := m.conv.virtioWin; vw != nil {
		disks[vw.diskTarget] = vw.disk
		if vw.cd != "" {
			disks[vw.cd] = vw.isoVol
		}
	}
	xml, err := dl.DomainXML(gen, libvirtdst.DomainOptions{Type: typ, Disks: disks, Kernel: kernelVol, Initrd: initrdVol})
	if err != nil {
		return err
	}
	m.rep.TargetXML = string(xml)
	if err := stage.writeFile(name+".xml", xml, 0o644); err != nil {
		return err
	}
	if v, renamed := m.conv.virtioDomain(k); v != nil {
		gv, err := m.p.target.XML(v)
		if err != nil {
			return fmt.Errorf("writing the virtio libvirt XML: %w", err)
		}
		vdisks := map[string]string{}
		for old, nw := range renamed {
			vdisks[nw] = disks[old]
		}
		vx, err := dl.DomainXML(gv, libvirtdst.DomainOptions{Type: typ, Disks: vdisks, Kernel: kernelVol, Initrd: initrdVol})
		if err != nil {
			return err
		}
		if err := stage.writeFile(virtioXMLName(name), vx, 0o644); err != nil {
			return err
		}
		virsh := "virsh -c " + m.opts.To
		vw := m.conv.virtioWin
		m.rep.Notes = append(m.rep.Notes, fmt.Sprintf("on %s: the virtio-win first-boot volume %s is in pool %s beside the guest's; %s names the guest's volumes on virtio: define it there (%s define %s), after which the first-boot volume can be deleted (%s vol-delete --pool %s %s)",
			m.opts.To, vw.disk, pool, virtioXMLName(name), virsh, filepath.Join(outDir, virtioXMLName(name)), virsh, pool, vw.disk))
		if vw.isoVol != "" {
			m.rep.Notes = append(m.rep.Notes, fmt.Sprintf("the virtio-win ISO is the volume %s in pool %s, shared by every Windows guest migrated into the pool with that ISO (named by its SHA-256): it is not this guest's and stays when the guest is deleted; delete it (%s vol-delete --pool %s %s) only once no guest uses it, that is when no domain's XML names it any more (%s dumpxml DOMAIN)",
				vw.isoVol, pool, virsh, pool, vw.isoVol, virsh))
		}
	}
	m.rep.Notes = append(m.rep.Notes, "the written images were not re-read and checked here: they are volumes on "+m.opts.To+"; the boot check there is their proof")
	if err := m.remoteBoot(ctx, dl, xml, stage); err != nil {
		return err
	}
	if err := dl.Define(xml, m.opts.Start); err != nil {
		return err
	}
	dest.Defined, dest.Started = true, m.opts.Start
	m.log.Info("defined the domain", "guest", name, "to", m.opts.To, "pool", pool, "type", typ, "started", m.opts.Start)

	if err := m.commit(stage, outDir, old); err != nil {
		return err
	}
	if err := dl.Commit(); err != nil {
		// Everything is in place; only the state volume is left.
		m.log.Warn("removing the state volume", "guest", name, "err", err)
	}
	m.log.Info("migrated", "guest", name, "to", m.opts.To)
	return nil
}

// upload copies every disk into its volume and the small files (volume
// name to local file) into theirs, and makes sure the pool has the
// shared file (nil: none), in one of the destination host's upload slots
// when the migration shares them with others (a batch).
func (m *migration) upload(ctx context.Context, dl *libvirtdst.Delivery, format string, small map[string]string, shared *sharedFile) error {
	if s := m.opts.uploads; s != nil {
		release, err := s.acquire(ctx, m.opts.To, func(host string) {
			m.log.Info("waiting for an upload slot: other guests of the batch are uploading to the host", "guest", m.dom.Name, "host", host, "slots", s.n)
		})
		if err != nil {
			return err
		}
		defer release()
	}
	// The shared file first: a failure after it shows that the guest's
	// rollback leaves it.
	if shared != nil {
		m.log.Info("checking the shared volume", "guest", m.dom.Name, "volume", shared.vol, "file", shared.path)
		uploaded, err := dl.Shared(ctx, shared.vol, shared.size, func() (io.ReadCloser, error) { return os.Open(shared.path) })
		if err != nil {
			return fmt.Errorf("delivering %s as the shared volume %s: %w", shared.path, shared.vol, err)
		}
		d := m.rep.Destination
		d.Shared = append(d.Shared, report.SharedVolume{Name: shared.vol, Uploaded: uploaded})
		m.log.Info("shared volume ready", "guest", m.dom.Name, "volume", shared.vol, "uploaded", uploaded)
	}
	if err := m.uploadDisks(ctx, dl, format); err != nil {
		return err
	}
	for vol, file := range small {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		fi, _ := f.Stat()
		err = dl.Upload(vol, f, fi.Size())
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// virtioWinVolumes writes the virtio-win first-boot disk into the staging
// folder, not to be kept in OutDir, and returns it as a volume name and
// local file pair.
func (m *migration) virtioWinVolumes(stage *staging) ([][2]string, error) {
	vw := m.conv.virtioWin
	if vw == nil || vw.disk == "" {
		return nil, nil
	}
	p := stage.path(vw.disk)
	if err := virtiowin.WriteDisk(p, vw.src, vw.drivers); err != nil {
		return nil, fmt.Errorf("writing the virtio-win first-boot disk: %w", err)
	}
	return [][2]string{{vw.disk, p}}, nil
}

// sharedFile is a local file delivered as a shared volume.
type sharedFile struct {
	path, vol string
	size      int64
}

// sharedISO is the virtio-win ISO as its shared volume.
func (m *migration) sharedISO() (*sharedFile, error) {
	p := m.conv.virtioWin.src.Path
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	sum, err := sha256File(p)
	if err != nil {
		return nil, fmt.Errorf("hashing the virtio-win ISO: %w", err)
	}
	return &sharedFile{path: p, vol: isoVolume(sum), size: fi.Size()}, nil
}

// uploadDisks copies every disk into its volume, all at once.
func (m *migration) uploadDisks(ctx context.Context, dl *libvirtdst.Delivery, format string) error {
	return m.copyAll(ctx, format, diskCopy{
		logArgs: []any{"dest", m.opts.To},
		copy: func(ctx context.Context, dk *disk, workers int, progress func(done, total int64)) error {
			err := diskimg.ConvertTo(ctx, limit(dk.dev, m.opts.Limit), dl.File(dk.outName), format,
				diskimg.WithWorkers(workers), diskimg.WithProgress(progress), diskimg.WithChunkSize(remoteChunk))
			if err != nil {
				return fmt.Errorf("copying disk %s to volume %s: %w", dk.xen.Target, dk.outName, err)
			}
			return nil
		},
	})
}

// remoteBoot runs the boot check on the destination.
func (m *migration) remoteBoot(ctx context.Context, dl *libvirtdst.Delivery, xml []byte, stage *staging) error {
	switch {
	case m.opts.Boot == BootNever:
		m.rep.Boot = &report.Boot{Skipped: "disabled (--no-boot-check)"}
		return nil
	case !m.conv.Inspected:
		m.rep.Boot = &report.Boot{Skipped: "not a Linux guest xen2kvm converted: there is no login prompt to wait for"}
		return nil
	}
	timeout := m.opts.BootTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	logName := m.dom.Name + ".boot.log"
	logf, err := os.Create(stage.path(logName))
	if err != nil {
		return err
	}
	stage.add(logName)
	m.log.Info("boot check on the destination", "guest", m.dom.Name, "to", m.opts.To, "timeout", timeout)
	res, err := dl.Boot(ctx, xml, libvirtdst.BootOptions{Timeout: timeout, Console: logf})
	logf.Close()
	b := &report.Boot{Ran: true}
	m.rep.Boot = b
	if err != nil {
		b.Detail = err.Error()
		failed := filepath.Join(stage.outDir, m.dom.Name+".boot-failed.log")
		if os.Rename(stage.path(logName), failed) != nil {
			failed = ""
		}
		return &bootError{err: err, stagedLog: stage.path(logName), log: failed}
	}
	b.OK, b.Seconds, b.Accel = true, res.Seconds, map[string]string{"kvm": "kvm", "qemu": "tcg"}[res.Type]
	b.Detail = "booted on " + m.opts.To + " to " + fmt.Sprintf("%q", res.Match)
	m.log.Info("boot check passed on the destination", "guest", m.dom.Name, "seconds", b.Seconds)
	return nil
}
