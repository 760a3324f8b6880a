package libvirtdst

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// DomainOptions say how DomainXML rewrites the generated domain.
type DomainOptions struct {
	// Type is the domain type, "kvm" or "qemu" (see Conn.DomainType).
	Type string
	// Disks maps a disk's target device (vda) to its volume's name.
	Disks map[string]string
	// Kernel and Initrd name the volumes holding a direct-boot kernel and
	// initrd ("" keeps what the XML says).
	Kernel, Initrd string
}

// DomainXML rewrites the generated libvirt XML of a guest for the
// destination: each disk becomes the volume that holds it, in the
// delivery's pool, and the domain gets the type the host can run. It
// does not change o.Disks.
func (d *Delivery) DomainXML(generated []byte, o DomainOptions) ([]byte, error) {
	o.Disks = maps.Clone(o.Disks) // crossed off as they are found
	var x libvirtxml.Domain
	if err := x.Unmarshal(string(generated)); err != nil {
		return nil, fmt.Errorf("reading the domain XML: %w", err)
	}
	if o.Type != "" {
		x.Type = o.Type
	}
	if x.Devices != nil {
		for i := range x.Devices.Disks {
			disk := &x.Devices.Disks[i]
			if disk.Target == nil {
				continue
			}
			name, ok := o.Disks[disk.Target.Dev]
			if !ok {
				continue
			}
			spec, ok := d.spec(name)
			if !ok {
				return nil, fmt.Errorf("disk %s: volume %s is not in the delivery's plan", disk.Target.Dev, name)
			}
			disk.Source = &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: d.plan.Pool, Volume: name}}
			if disk.Driver == nil {
				disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu"}
			}
			disk.Driver.Type = spec.Format
			delete(o.Disks, disk.Target.Dev)
		}
	}
	for dev := range o.Disks {
		return nil, fmt.Errorf("the domain XML has no disk %s", dev)
	}
	for _, k := range []struct {
		vol string
		dst *string
	}{{o.Kernel, &x.OS.Kernel}, {o.Initrd, &x.OS.Initrd}} {
		if k.vol == "" {
			continue
		}
		if x.OS == nil {
			return nil, errors.New("the domain XML has no <os>")
		}
		p, err := d.Path(k.vol)
		if err != nil {
			return nil, err
		}
		*k.dst = p
	}
	s, err := x.Marshal()
	if err != nil {
		return nil, err
	}
	return []byte(s + "\n"), nil
}

func (d *Delivery) spec(name string) (VolumeSpec, bool) {
	for _, v := range d.plan.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	v, ok := d.shared[name]
	return v, ok
}

// overlaySuffix ends the names of the boot check's overlay volumes.
const overlaySuffix = ".xen2kvm-boot.qcow2"

// bootName is the name of the boot check's transient copy of guest.
func bootName(guest string) string { return guest + "-xen2kvm-boot" }

// BootOptions configure Boot.
type BootOptions struct {
	// Expect is what the console must show; nil means a login prompt.
	Expect *regexp.Regexp
	// Timeout bounds the boot; 0 means 5 minutes.
	Timeout time.Duration
	// Console, when set, receives everything the console printed.
	Console io.Writer
}

// BootResult is a boot proof made on the destination.
type BootResult struct {
	Seconds float64
	Match   string
	Type    string // domain type it ran with
}

// BootError is a failed boot proof.
type BootError struct {
	URI  string
	Err  error
	Tail string // the console's last lines
}

func (e *BootError) Error() string {
	msg := fmt.Sprintf("the guest did not boot on %s: %v", e.URI, e.Err)
	if e.Tail != "" {
		msg += "\nlast console lines:\n" + e.Tail
	}
	return msg
}

func (e *BootError) Unwrap() []error { return []error{ErrBoot, e.Err} }

var loginPrompt = regexp.MustCompile(`login:`)

// Boot proves the guest boots on the destination: a transient copy of
// the domain (xml as DomainXML made it), named NAME-xen2kvm-boot, runs on
// throw-away qcow2 overlays above the delivered volumes, without network
// devices (the Xen guest may still be on the network with the same MAC),
// until its serial console shows the expected text (across reboots of
// the guest, such as an SELinux relabel's). The copy is then
// destroyed and its overlays deleted; the delivered volumes are not
// written.
func (d *Delivery) Boot(ctx context.Context, xml []byte, o BootOptions) (*BootResult, error) {
	if o.Expect == nil {
		o.Expect = loginPrompt
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(string(xml)); err != nil {
		return nil, fmt.Errorf("reading the domain XML: %w", err)
	}
	x.Name = bootName(d.plan.Guest)
	x.UUID = ""
	// A first boot may reboot the guest (an SELinux relabel does): QEMU
	// then resets it in place and the console stream goes on. A crash
	// ends the proof.
	x.OnReboot, x.OnCrash = "restart", "destroy"
	var overlays []string
	defer func() {
		for _, n := range overlays {
			deadline(30*time.Second, func() error { return d.c.deleteVolume(d.plan.Pool, n) })
		}
	}()
	if x.Devices != nil {
		x.Devices.Interfaces = nil
		for i := range x.Devices.Disks {
			disk := &x.Devices.Disks[i]
			if disk.Source == nil || disk.Source.Volume == nil {
				continue
			}
			name := disk.Source.Volume.Volume
			spec, ok := d.spec(name)
			if _, shared := d.shared[name]; !ok || shared {
				// A shared volume is a read-only CD-ROM: the copy
				// reads it as it is.
				continue
			}
			base, err := d.Path(name)
			if err != nil {
				return nil, err
			}
			ov := d.plan.Guest + "-" + disk.Target.Dev + overlaySuffix
			if err := d.c.deleteVolume(d.plan.Pool, ov); err != nil {
				return nil, err
			}
			if _, err := d.c.createVolume(d.plan.Pool, ov, "qcow2", uint64(spec.Capacity), base, spec.Format); err != nil {
				return nil, fmt.Errorf("creating the boot overlay: %w", err)
			}
			overlays = append(overlays, ov)
			disk.Source.Volume.Volume = ov
			disk.Driver.Type = "qcow2"
		}
	}
	doc, err := x.Marshal()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	dom, err := d.c.l.DomainCreateXML(doc, libvirt.DomainStartPaused)
	if err != nil {
		return nil, &BootError{URI: d.c.uri, Err: fmt.Errorf("starting a transient copy of %s: %w", d.plan.Guest, err)}
	}
	destroyed := false
	destroy := func() {
		if !destroyed {
			destroyed = true
			deadline(30*time.Second, func() error { return d.c.l.DomainDestroy(dom) })
		}
	}
	defer destroy()

	con := &consoleWatch{re: o.Expect, found: make(chan string, 1), copy: o.Console}
	done := make(chan error, 1)
	go func() {
		done <- d.c.l.DomainOpenConsole(dom, nil, con, uint32(libvirt.DomainConsoleForce|libvirt.DomainConsoleSafe))
	}()
	// Give the console stream a moment to open before the guest prints.
	select {
	case err := <-done:
		return nil, &BootError{URI: d.c.uri, Err: fmt.Errorf("opening the serial console: %w", err)}
	case <-time.After(time.Second):
	}
	if err := d.c.l.DomainResume(dom); err != nil {
		return nil, &BootError{URI: d.c.uri, Err: fmt.Errorf("resuming the transient copy: %w", err)}
	}
	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	var bootErr error
	var match string
	select {
	case match = <-con.found:
	case err := <-done:
		if err == nil {
			err = errors.New("the console closed (the guest stopped)")
		}
		bootErr = fmt.Errorf("no %s on the console: %w", what(o.Expect), err)
	case <-timer.C:
		bootErr = fmt.Errorf("no %s on the console within %s", what(o.Expect), o.Timeout)
	case <-ctx.Done():
		bootErr = ctx.Err()
	}
	destroy()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	if bootErr != nil {
		return nil, &BootError{URI: d.c.uri, Err: bootErr, Tail: con.tail()}
	}
	return &BootResult{Seconds: time.Since(start).Seconds(), Match: match, Type: x.Type}, nil
}

// what names what the console should show.
func what(re *regexp.Regexp) string {
	if re == loginPrompt {
		return "login prompt"
	}
	return fmt.Sprintf("match for %q", re)
}

// consoleWatch collects console output and reports the first match.
type consoleWatch struct {
	re    *regexp.Regexp
	found chan string
	copy  io.Writer

	mu   sync.Mutex
	buf  []byte
	seen bool
}

func (w *consoleWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.copy != nil {
		w.copy.Write(p)
	}
	w.buf = append(w.buf, p...)
	if !w.seen {
		if m := w.re.Find(w.buf); m != nil {
			w.seen = true
			w.found <- string(m)
		}
	}
	if len(w.buf) > 1<<20 {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-64<<10:]...)
	}
	return len(p), nil
}

// tail is the console's last lines.
func (w *consoleWatch) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := bytes.Split(bytes.TrimRight(w.buf, "\r\n"), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.ReplaceAll(bytes.Join(lines, []byte("\n")), []byte("\r"), nil))
}
