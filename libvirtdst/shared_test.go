package libvirtdst_test

import (
	"context"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testlibvirtd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/libvirtdst"
)

// TestSharedVolume: two deliveries that want the same shared volume at
// once upload it once (the file is opened once, one reports uploaded,
// the other reused), the volume holds the file, the domain XML names it,
// and aborting one delivery deletes that guest's volume, not the shared
// one; the other's commit leaves it too.
func TestSharedVolume(t *testing.T) {
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	c := connect(t, d)
	iso := filepath.Join(t.TempDir(), "virtio-win.iso")
	b := make([]byte, 3<<20+2048)
	rand.New(rand.NewSource(2)).Read(b)
	if err := os.WriteFile(iso, b, 0o644); err != nil {
		t.Fatal(err)
	}
	const shared = "virtio-win-0123456789ab.iso"
	var opens atomic.Int32
	open := func() (io.ReadCloser, error) {
		opens.Add(1)
		return os.Open(iso)
	}
	dls := make([]*libvirtdst.Delivery, 2)
	uploaded := make([]bool, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, g := range []string{"sha", "shb"} {
		dl, err := c.Begin(context.Background(), libvirtdst.Plan{Guest: g, Pool: "default",
			Volumes: []libvirtdst.VolumeSpec{{Name: g + "-hda.raw", Format: "raw", Capacity: 1 << 20}}})
		if err != nil {
			t.Fatal(err)
		}
		dls[i] = dl
		wg.Add(1)
		go func() {
			defer wg.Done()
			uploaded[i], errs[i] = dl.Shared(context.Background(), shared, int64(len(b)), open)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if opens.Load() != 1 || uploaded[0] == uploaded[1] {
		t.Errorf("file opened %d times, uploaded %v: want one upload", opens.Load(), uploaded)
	}
	if testutil.HashFile(t, filepath.Join(poolDir, shared)) != testutil.HashFile(t, iso) {
		t.Error("the shared volume differs from the file")
	}
	gen := []byte(`<domain type='qemu'><name>shb</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>` +
		`<devices><disk type='file' device='cdrom'><source file='/x.iso'/><target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>`)
	x, err := dls[1].DomainXML(gen, libvirtdst.DomainOptions{Disks: map[string]string{"hdc": shared}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(x), `<source pool="default" volume="`+shared+`">`) || !strings.Contains(string(x), `type="raw"`) {
		t.Errorf("domain XML does not name the shared volume as raw:\n%s", x)
	}
	mtime := func() time.Time {
		fi, err := os.Stat(filepath.Join(poolDir, shared))
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	before := mtime()
	if err := dls[0].Abort(); err != nil {
		t.Fatal(err)
	}
	if err := dls[1].Commit(); err != nil {
		t.Fatal(err)
	}
	if v := d.Volumes(t, "default"); strings.Join(v, " ") != "shb-hda.raw "+shared {
		t.Errorf("after one abort and one commit: %v, want shb-hda.raw and the shared volume", v)
	}
	// A third guest reuses it, without opening the file.
	dl, err := c.Begin(context.Background(), libvirtdst.Plan{Guest: "shc", Pool: "default", Force: true,
		Volumes: []libvirtdst.VolumeSpec{{Name: "shc-hda.raw", Format: "raw", Capacity: 1 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	if up, err := dl.Shared(context.Background(), shared, int64(len(b)), open); err != nil || up || opens.Load() != 1 {
		t.Errorf("third guest: uploaded %v, err %v, opens %d: want it reused", up, err, opens.Load())
	}
	if err := dl.Abort(); err != nil {
		t.Fatal(err)
	}
	if !mtime().Equal(before) {
		t.Error("the shared volume was written again")
	}
	if v := d.Volumes(t, "default"); strings.Join(v, " ") != "shb-hda.raw "+shared {
		t.Errorf("after the third guest's abort: %v", v)
	}
	// Another file of the name, of another size: refused, not replaced.
	if _, err := dl.Shared(context.Background(), shared, 4096, open); err == nil || !strings.Contains(err.Error(), "not the 4096 expected") {
		t.Errorf("a shared volume of another size: %v", err)
	}
}

// TestSharedVolumeDeadUpload: a run killed while it uploaded a shared
// volume left the volume half written and its upload mark; the next run
// waits for the upload to grow, takes it as dead after SharedStale and
// uploads it again.
func TestSharedVolumeDeadUpload(t *testing.T) {
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	c := connect(t, d)
	iso := filepath.Join(t.TempDir(), "virtio-win.iso")
	b := make([]byte, 2<<20)
	rand.New(rand.NewSource(3)).Read(b)
	if err := os.WriteFile(iso, b, 0o644); err != nil {
		t.Fatal(err)
	}
	const shared = "virtio-win-dead.iso"
	d.Virsh(t, "vol-create-as", "default", shared, "2M", "--format", "raw")
	d.Virsh(t, "vol-create-as", "default", shared+".xen2kvm-upload", "0", "--format", "raw")
	ready, err := c.SharedReady("default", shared, int64(len(b)))
	if err != nil || ready {
		t.Fatalf("SharedReady of a marked volume: %v, %v", ready, err)
	}
	old := libvirtdst.SharedStale
	libvirtdst.SharedStale = 2 * time.Second
	t.Cleanup(func() { libvirtdst.SharedStale = old })
	dl, err := c.Begin(context.Background(), libvirtdst.Plan{Guest: "shd", Pool: "default",
		Volumes: []libvirtdst.VolumeSpec{{Name: "shd-hda.raw", Format: "raw", Capacity: 1 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Abort()
	start := time.Now()
	up, err := dl.Shared(context.Background(), shared, int64(len(b)), func() (io.ReadCloser, error) { return os.Open(iso) })
	if err != nil || !up {
		t.Fatalf("uploaded %v, err %v", up, err)
	}
	if s := time.Since(start); s < 2*time.Second {
		t.Errorf("took over the mark after %s, before SharedStale", s)
	}
	if testutil.HashFile(t, filepath.Join(poolDir, shared)) != testutil.HashFile(t, iso) {
		t.Error("the shared volume differs from the file")
	}
	if v := d.Volumes(t, "default"); strings.Contains(strings.Join(v, " "), ".xen2kvm-upload") {
		t.Errorf("the mark is left: %v", v)
	}
	if ready, err := c.SharedReady("default", shared, int64(len(b))); err != nil || !ready {
		t.Errorf("SharedReady after the upload: %v, %v", ready, err)
	}
}
