package libvirtdst_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testlibvirtd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/libvirtdst"
)

// sparseImage writes a raw image of size MiB with random data in a few
// places and holes between them, and returns its path.
func sparseImage(t *testing.T, sizeMiB int, dataMiB []int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src.raw")
	f := testutil.SparseFile(t, p, int64(sizeMiB)<<20)
	defer f.Close()
	r := rand.New(rand.NewSource(1))
	buf := make([]byte, 1<<20)
	for _, m := range dataMiB {
		r.Read(buf)
		// Leave a zero run inside the data too.
		clear(buf[300<<10 : 500<<10])
		if _, err := f.WriteAt(buf, int64(m)<<20); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func connect(t *testing.T, d *testlibvirtd.Daemon) *libvirtdst.Conn {
	t.Helper()
	c, err := libvirtdst.Connect(context.Background(), d.URI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func deliver(t *testing.T, c *libvirtdst.Conn, src diskimg.Device, plan libvirtdst.Plan) (*libvirtdst.Delivery, error) {
	t.Helper()
	d, err := c.Begin(context.Background(), plan)
	if err != nil {
		return nil, err
	}
	v := plan.Volumes[0]
	if err := diskimg.ConvertTo(context.Background(), src, d.File(v.Name), v.Format, diskimg.WithChunkSize(4<<20)); err != nil {
		if aerr := d.Abort(); aerr != nil {
			t.Logf("abort: %v", aerr)
		}
		return nil, err
	}
	return d, nil
}

// TestDeliverVolumes uploads a sparse image into a qcow2 and a raw volume:
// virsh sees them, qemu-img finds them equal to the source (and the qcow2
// one consistent), and the raw one stays sparse: the holes were not sent.
func TestDeliverVolumes(t *testing.T) {
	qimg := testutil.NeedTool(t, "qemu-img")
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	c := connect(t, d)
	src := sparseImage(t, 64, []int{0, 1, 7, 40, 63})
	img, err := diskimg.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, format := range []string{"qcow2", "raw"} {
		t.Run(format, func(t *testing.T) {
			name := "g-vda." + format
			dl, err := deliver(t, c, img, libvirtdst.Plan{Guest: "g" + format, Volumes: []libvirtdst.VolumeSpec{{Name: name, Format: format, Capacity: img.Size()}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := dl.Commit(); err != nil {
				t.Fatal(err)
			}
			vols := d.Volumes(t, "default")
			if !contains(vols, name) || contains(vols, libvirtdst.StateVolume("g"+format)) {
				t.Errorf("vol-list: %v, want %s and no state volume", vols, name)
			}
			info := d.Virsh(t, "vol-info", "--pool", "default", name, "--bytes")
			if !strings.Contains(info, "67108864 bytes") {
				t.Errorf("vol-info: capacity not 64 MiB:\n%s", info)
			}
			path := filepath.Join(poolDir, name)
			if out, err := exec.Command(qimg, "compare", "-f", "raw", "-F", format, src, path).CombinedOutput(); err != nil {
				t.Errorf("qemu-img compare: %v\n%s", err, out)
			}
			if format == "qcow2" {
				if out, err := exec.Command(qimg, "check", path).CombinedOutput(); err != nil {
					t.Errorf("qemu-img check: %v\n%s", err, out)
				}
			} else {
				var st statBlocks
				if used := st.used(t, path); used > 8<<20 {
					t.Errorf("the raw volume takes %d bytes for 5 MiB of data: holes were written", used)
				}
			}
		})
	}
}

type statBlocks struct{}

func (statBlocks) used(t *testing.T, path string) int64 {
	out, err := exec.Command("stat", "-c", "%b %B", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var blocks, size int64
	if _, err := fmtSscan(string(out), &blocks, &size); err != nil {
		t.Fatal(err)
	}
	return blocks * size
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestExistingRefused: a volume of the same name is refused unless Force,
// and nothing is created or deleted by the refusal.
func TestExistingRefused(t *testing.T) {
	d := testlibvirtd.Start(t)
	d.DirPool(t, "default")
	d.Virsh(t, "vol-create-as", "default", "h-vda.raw", "1M", "--format", "raw")
	c := connect(t, d)
	plan := libvirtdst.Plan{Guest: "h", Volumes: []libvirtdst.VolumeSpec{{Name: "h-vda.raw", Format: "raw", Capacity: 2 << 20}}}
	_, err := c.Begin(context.Background(), plan)
	var ee *libvirtdst.ExistsError
	if !errors.As(err, &ee) || !errors.Is(err, libvirtdst.ErrExists) || ee.Name != "h-vda.raw" {
		t.Fatalf("Begin over an existing volume: %v, want an ExistsError", err)
	}
	if vols := d.Volumes(t, "default"); len(vols) != 1 {
		t.Errorf("after the refusal the pool has %v", vols)
	}
	plan.Force = true
	dl, err := c.Begin(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl.Replaced) != 1 {
		t.Errorf("Replaced = %v", dl.Replaced)
	}
	if err := dl.Abort(); err != nil {
		t.Fatal(err)
	}
	if vols := d.Volumes(t, "default"); len(vols) != 0 {
		t.Errorf("after Abort the pool has %v, want nothing", vols)
	}
}

// TestPoolFull: an upload that runs out of space fails with the pool's
// error and leaves no volume behind.
func TestPoolFull(t *testing.T) {
	d := testlibvirtd.Start(t)
	d.TmpfsPool(t, "small", 4)
	c := connect(t, d)
	src := sparseImage(t, 32, []int{0, 4, 8, 12, 16, 20, 24, 28})
	img, err := diskimg.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	_, err = deliver(t, c, img, libvirtdst.Plan{Guest: "full", Pool: "small", Volumes: []libvirtdst.VolumeSpec{{Name: "full-vda.raw", Format: "raw", Capacity: img.Size()}}})
	if err == nil || !strings.Contains(err.Error(), "full-vda.raw") {
		t.Fatalf("upload into a full pool: %v, want an error naming the volume", err)
	}
	t.Logf("error: %v", err)
	if vols := d.Volumes(t, "small"); len(vols) != 0 {
		t.Errorf("the full pool still has %v", vols)
	}
	// And the space check refuses before writing anything.
	_, err = c.Begin(context.Background(), libvirtdst.Plan{Guest: "full", Pool: "small", Need: 32 << 20,
		Volumes: []libvirtdst.VolumeSpec{{Name: "full-vda.raw", Format: "raw", Capacity: img.Size()}}})
	if !errors.Is(err, libvirtdst.ErrPoolFull) {
		t.Errorf("Begin with Need over the pool's space: %v, want ErrPoolFull", err)
	}
}

// gate is a device that stops reading at half its size until released.
type gate struct {
	diskimg.Device
	half    int64
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gate) ReadAt(p []byte, off int64) (int, error) {
	if off >= g.half {
		g.once.Do(func() { close(g.reached) })
		<-g.release
	}
	return g.Device.ReadAt(p, off)
}

// TestDaemonKilled: the daemon dies in the middle of an upload. The
// delivery fails with a clear error; no domain is defined; what is left
// in the pool is named in the state volume, and the next delivery of the
// guest recognises it and replaces it.
func TestDaemonKilled(t *testing.T) {
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	src := sparseImage(t, 16, []int{0, 2, 4, 6, 8, 10, 12, 14})
	img, err := diskimg.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	plan := libvirtdst.Plan{Guest: "k", Volumes: []libvirtdst.VolumeSpec{{Name: "k-vda.qcow2", Format: "qcow2", Capacity: img.Size()}}}

	c, err := libvirtdst.Connect(context.Background(), d.URI)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Device: img, half: img.Size() / 2, reached: make(chan struct{}), release: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := deliver(t, c, g, plan)
		errc <- err
	}()
	<-g.reached
	d.Kill()
	close(g.release)
	err = <-errc
	c.Close()
	if err == nil {
		t.Fatal("the delivery succeeded with the daemon killed")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "k-vda.qcow2") {
		t.Errorf("the error does not name the volume: %v", err)
	}

	d.Restart(t)
	if out := d.Virsh(t, "list", "--all", "--name"); strings.TrimSpace(out) != "" {
		t.Errorf("domains defined after the failed delivery: %s", out)
	}
	left := d.Volumes(t, "default")
	t.Logf("left in the pool: %v", left)
	if !contains(left, libvirtdst.StateVolume("k")) {
		t.Fatalf("no state volume names what the killed run left: %v", left)
	}
	c = connect(t, d)
	dl, err := deliver(t, c, img, plan)
	if err != nil {
		t.Fatalf("re-run after the killed one: %v", err)
	}
	if len(dl.Recovered) != 1 {
		t.Errorf("Recovered = %v, want the volume of the killed run", dl.Recovered)
	}
	if err := dl.Commit(); err != nil {
		t.Fatal(err)
	}
	if vols := d.Volumes(t, "default"); len(vols) != 1 || vols[0] != "k-vda.qcow2" {
		t.Errorf("after the re-run the pool has %v", vols)
	}
	if out, err := exec.Command(testutil.NeedTool(t, "qemu-img"), "compare", "-f", "raw", src, filepath.Join(poolDir, "k-vda.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare after the re-run: %v\n%s", err, out)
	}
}

// minimalDomain is a domain XML with one disk, for Define.
func minimalDomain(name string) []byte {
	return []byte(`<domain type='qemu'><name>` + name + `</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>` +
		`<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/nonexistent'/><target dev='vda' bus='virtio'/></disk></devices></domain>`)
}

// TestRerunAfterDefine: a run killed after it defined the domain (before
// it committed) left a domain and volumes that the next run, without
// Force, recognises from the state volume and replaces; a domain that is
// not xen2kvm's is still refused.
func TestRerunAfterDefine(t *testing.T) {
	d := testlibvirtd.Start(t)
	d.DirPool(t, "default")
	src := sparseImage(t, 4, []int{0, 2})
	img, err := diskimg.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	plan := libvirtdst.Plan{Guest: "r", Volumes: []libvirtdst.VolumeSpec{{Name: "r-vda.raw", Format: "raw", Capacity: img.Size()}}}
	define := func(c *libvirtdst.Conn) *libvirtdst.Delivery {
		t.Helper()
		dl, err := deliver(t, c, img, plan)
		if err != nil {
			t.Fatal(err)
		}
		disks := map[string]string{"vda": "r-vda.raw"}
		x, err := dl.DomainXML(minimalDomain("r"), libvirtdst.DomainOptions{Type: "qemu", Disks: disks})
		if err != nil {
			t.Fatal(err)
		}
		if len(disks) != 1 {
			t.Errorf("DomainXML changed the caller's disks: %v", disks) // the virtio XML is made from the same map
		}
		if err := dl.Define(x, false); err != nil {
			t.Fatal(err)
		}
		return dl
	}
	c1, err := libvirtdst.Connect(context.Background(), d.URI)
	if err != nil {
		t.Fatal(err)
	}
	define(c1)
	c1.Close() // killed: neither Commit nor Abort

	c2 := connect(t, d)
	dl := define(c2)
	if err := dl.Commit(); err != nil {
		t.Fatal(err)
	}
	if l := strings.TrimSpace(d.Virsh(t, "list", "--all", "--name")); l != "r" {
		t.Errorf("domains: %q", l)
	}
	if vols := d.Volumes(t, "default"); len(vols) != 1 {
		t.Errorf("volumes: %v", vols)
	}
	// Committed: the domain is now a finished guest, refused without Force.
	if _, err := c2.Begin(context.Background(), plan); !errors.Is(err, libvirtdst.ErrExists) {
		t.Errorf("Begin over a finished guest: %v, want ErrExists", err)
	}
}

// TestStateTornWrite: the state volume is rewritten in place, its latest
// state in one of two slots, so a run killed in the middle of rewriting
// it (here: the slot being written cut short, on the pool's file) still
// leaves the state before the write, and the next run recognises the
// killed run's volumes and replaces them. A state volume of zeros (killed
// right after creating it) names nothing; one that holds someone else's
// bytes is refused.
func TestStateTornWrite(t *testing.T) {
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	plan := libvirtdst.Plan{Guest: "s", Volumes: []libvirtdst.VolumeSpec{{Name: "s-vda.raw", Format: "raw", Capacity: 1 << 20}}}
	statePath := filepath.Join(poolDir, libvirtdst.StateVolume("s"))

	c1, err := libvirtdst.Connect(context.Background(), d.URI)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := c1.Begin(context.Background(), plan) // state: slot 0
	if err != nil {
		t.Fatal(err)
	}
	x, err := dl.DomainXML(minimalDomain("s"), libvirtdst.DomainOptions{Type: "qemu", Disks: map[string]string{"vda": "s-vda.raw"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Define(x, false); err != nil { // state: slot 1, the domain being defined
		t.Fatal(err)
	}
	c1.Close() // killed: neither Commit nor Abort
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	const slot = 16 << 10
	if len(b) != 2*slot || !bytes.Contains(b[:slot], []byte(`"seq":1`)) || !bytes.Contains(b[slot:], []byte(`"seq":2`)) || !bytes.Contains(b[slot:], []byte(`"domain":true`)) {
		t.Fatalf("state volume (%d bytes): %q ... %q", len(b), b[:120], b[slot:slot+120])
	}
	// The next run's first write goes to slot 0: killed half way
	// through it, the slot holds the start of a state and then the old
	// bytes.
	torn := append([]byte{}, b...)
	copy(torn, []byte(`{"tool":"xen2kvm","guest":"s","volumes":["s-vda.raw","s-oth`))
	if err := os.WriteFile(statePath, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := connect(t, d)
	dl, err = c2.Begin(context.Background(), plan)
	if err != nil {
		t.Fatalf("Begin after a torn state write: %v", err)
	}
	if fmt.Sprint(dl.Recovered) != "[s-vda.raw]" {
		t.Errorf("Recovered = %v, want the killed run's volume", dl.Recovered)
	}
	if err := dl.Define(x, false); err != nil { // the domain the killed run defined is replaced
		t.Fatalf("Define after the torn state: %v", err)
	}
	if err := dl.Commit(); err != nil {
		t.Fatal(err)
	}
	if l := strings.TrimSpace(d.Virsh(t, "list", "--all", "--name")); l != "s" {
		t.Errorf("domains: %q", l)
	}
	if vols := d.Volumes(t, "default"); fmt.Sprint(vols) != "[s-vda.raw]" {
		t.Errorf("volumes after the commit: %v", vols)
	}

	// A state volume of zeros names nothing: Begin goes on (and a
	// volume it does not name is still refused without Force).
	plan2 := libvirtdst.Plan{Guest: "z", Volumes: []libvirtdst.VolumeSpec{{Name: "z-vda.raw", Format: "raw", Capacity: 1 << 20}}}
	d.Virsh(t, "vol-create-as", "default", libvirtdst.StateVolume("z"), fmt.Sprint(2*slot), "--format", "raw")
	dl, err = c2.Begin(context.Background(), plan2)
	if err != nil {
		t.Fatalf("Begin over a state volume of zeros: %v", err)
	}
	if err := dl.Abort(); err != nil {
		t.Fatal(err)
	}
	// Someone else's bytes under the state volume's name are refused.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte("not a state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Virsh(t, "vol-create-as", "default", libvirtdst.StateVolume("z"), "4096", "--format", "raw")
	d.Virsh(t, "vol-upload", "--pool", "default", libvirtdst.StateVolume("z"), other)
	if _, err := c2.Begin(context.Background(), plan2); err == nil || !strings.Contains(err.Error(), "not xen2kvm's state") {
		t.Errorf("Begin over someone else's volume: %v", err)
	}
}
