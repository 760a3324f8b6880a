package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/report"
)

// fileSource is a raw image opened read-only.
type fileSource struct {
	f    *os.File
	size int64
}

func openFileSource(path, _ string) (source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileSource{f, fi.Size()}, nil
}

func (s *fileSource) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }
func (s *fileSource) WriteAt([]byte, int64) (int, error)      { return 0, diskimg.ErrReadOnly }
func (s *fileSource) Size() int64                             { return s.size }
func (s *fileSource) Format() string                          { return "raw" }
func (s *fileSource) Close() error                            { return s.f.Close() }

// memOverlay is a byte-granular copy-on-write overlay for the tests.
type memOverlay struct {
	base diskimg.Device
	mu   sync.Mutex
	data map[int64]byte
}

func (o *memOverlay) Size() int64 { return o.base.Size() }
func (o *memOverlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.base.ReadAt(p, off)
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range p[:n] {
		if b, ok := o.data[off+int64(i)]; ok {
			p[i] = b
		}
	}
	return n, err
}
func (o *memOverlay) WriteAt(p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, b := range p {
		o.data[off+int64(i)] = b
	}
	return len(p), nil
}

// fakes is a configurable set of fake parts.
type fakes struct {
	domains  map[string]*config.Domain // by config path
	blockers []string
	copyErr  map[string]error // by output base name
	// copyGate, when set, is waited on by every copy after it started.
	copyGate    func(dst string)
	badValidate bool
	qemu        bool
	bootErr     error
	booted      []string // image paths of booted domains
	pygrub      bool     // the guest boots through pygrub
	mu          sync.Mutex
}

// marker is what the fake conversion writes at the start of the first disk.
const marker = "KVM!"

// parts returns f as every part of a migration.
func (f *fakes) parts() parts {
	return parts{source: f, converter: f, target: f, copier: f, checker: f}
}

func (f *fakes) ParseConfig(path string) (*config.Domain, error) {
	d, ok := f.domains[path]
	if !ok {
		return nil, fmt.Errorf("%s: no such config", path)
	}
	c := *d
	c.Source.File = path
	return &c, nil
}

func (f *fakes) Open(path, format string) (source, error) { return openFileSource(path, format) }

func (f *fakes) Overlay(base diskimg.Device) (diskimg.Device, error) {
	return &memOverlay{base: base, data: map[int64]byte{}}, nil
}

func (f *fakes) Plan(ctx context.Context, d *config.Domain, disks []diskimg.Device, o planOptions) (*conversion, error) {
	c := &conversion{
		OS: &report.OS{Distro: "centos", Version: "5", Kernel: "2.6.18", Virtio: true}, OSName: "linux", Virtio: true, Inspected: true,
		Edits:    []report.Edit{{Path: "etc/fstab", Rule: "remap", Diff: "-/dev/xvda1 / ext3\n+/dev/vda1 / ext3\n"}},
		Blockers: f.blockers,
	}
	if f.pygrub {
		c.bootFiles = func(dir string) (*bootFiles, error) {
			os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel"), 0o644)
			os.WriteFile(filepath.Join(dir, "initrd.img"), []byte("initrd"), 0o644)
			return &bootFiles{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), Cmdline: "ro root=/dev/vda2 console=ttyS0", Title: "CentOS"}, nil
		}
	}
	if !contains(o.Skip, "marker") {
		c.apply = func() error { _, err := disks[0].WriteAt([]byte(marker), 0); return err }
	}
	return c, nil
}

func (f *fakes) Target(d *config.Domain, c *conversion) (*config.KVMDomain, error) {
	k := &config.KVMDomain{Name: d.Name, MemoryMiB: d.MemoryMiB, VCPUs: d.VCPUs, Machine: "pc", OS: c.OSName, BootFromDisk: f.pygrub}
	for i := range d.Disks {
		xd := d.Disks[i]
		k.Disks = append(k.Disks, config.KVMDisk{Path: xd.Source, Target: "vd" + xd.Target[len(xd.Target)-1:], Bus: "virtio", Device: xd.Device, Source: &xd})
	}
	for _, n := range d.NICs {
		k.NICs = append(k.NICs, config.KVMNIC{MAC: n.MAC, Model: "virtio"})
	}
	return k, nil
}

func (f *fakes) XML(k *config.KVMDomain) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<domain type='kvm'><name>%s</name><kernel>%s</kernel>", k.Name, k.Kernel)
	for _, d := range k.Disks {
		fmt.Fprintf(&b, "<disk file='%s'/>", d.Path)
	}
	b.WriteString("</domain>\n")
	return b.Bytes(), nil
}

func (f *fakes) Copy(ctx context.Context, src diskimg.Device, dst, format string, workers int, progress func(done, total int64)) error {
	if f.copyGate != nil {
		f.copyGate(dst)
	}
	if err := f.copyErr[filepath.Base(dst)]; err != nil {
		return err
	}
	buf := make([]byte, src.Size())
	if _, err := src.ReadAt(buf, 0); err != nil {
		return err
	}
	progress(src.Size()/2, src.Size())
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.WriteFile(dst, buf, 0o644)
}

func (f *fakes) Script(k *config.KVMDomain, dir string) ([]byte, error) {
	r := relocate(k, dir)
	argv := []string{"qemu-system-x86_64", "-name", r.Name}
	if r.Kernel != "" {
		argv = append(argv, "-kernel", r.Kernel, "-initrd", r.Initrd, "-append", r.Cmdline)
	}
	for _, d := range r.Disks {
		argv = append(argv, "-drive", "file="+d.Path+",if=virtio,format="+d.Format)
	}
	return launchScript(k.Name, argv), nil
}

func (f *fakes) Validate(ctx context.Context, k *config.KVMDomain, c *conversion) []report.Check {
	data := make([]byte, len(marker))
	fh, err := os.Open(k.Disks[0].Path)
	if err == nil {
		_, err = fh.ReadAt(data, 0)
		fh.Close()
	}
	ok := err == nil && string(data) == marker && !f.badValidate
	return []report.Check{{Name: "conversion marker on the first disk", OK: ok, Detail: fmt.Sprintf("read %q, %v", data, err)}}
}

func (f *fakes) QEMUAvailable() bool { return f.qemu }

func (f *fakes) Boot(ctx context.Context, k *config.KVMDomain, dir string, o bootOptions) (*report.Boot, error) {
	f.mu.Lock()
	if k.Kernel != "" {
		f.booted = append(f.booted, "kernel "+k.Kernel)
	}
	for _, d := range k.Disks {
		f.booted = append(f.booted, d.Path)
	}
	f.mu.Unlock()
	os.WriteFile(o.LogPath, []byte("CentOS release 5\nlogin: "), 0o644)
	if f.bootErr != nil {
		return &report.Boot{Ran: true, Detail: "serial tail: kernel panic"}, f.bootErr
	}
	return &report.Boot{Ran: true, OK: true, Accel: "tcg", Seconds: 1.5}, nil
}

var errFake = errors.New("fake failure")
