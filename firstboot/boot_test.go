package firstboot_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/firstboot"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/pipeline"
)

// TestCheckUncleanStop boots the converted example guest, proves its
// network on a port nothing listens on (the guest's TCP reset, read from
// QEMU's real packet capture), and gives it no time to power off: QEMU is told to quit, the report says the guest was
// not cleanly stopped, and the drift is still read from the overlay, whose
// root filesystem was left mounted (its journal replayed in memory). Reading
// the drift again from the kept overlay gives the same files and writes
// neither the overlay nor the converted image (hashed before and after).
func TestCheckUncleanStop(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a guest under QEMU")
	}
	testutil.NeedTool(t, "mke2fs")
	testutil.NeedTool(t, "busybox")
	testutil.NeedTool(t, "qemu-system-x86_64")
	testkernel.ForTest(t)
	ctx := context.Background()
	cache, err := testkernel.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := guestgen.BuildCached(ctx, filepath.Join(cache, "firstboot-e2e"), guestgen.CentOS5PV)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "kvm")
	if _, err := pipeline.Migrate(ctx, g.Config, pipeline.Options{OutDir: out, Boot: pipeline.BootNever,
		DiskMap: []pipeline.PathMap{{Old: g.XenImageDir, New: filepath.Dir(g.Images[0])}}}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, g.Name+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	dom, err := config.ParseKVMXML(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := firstboot.Check(ctx, dom, firstboot.Options{
		Boot: []kvmrun.Option{kvmrun.WithAccel(kvmrun.AccelTCG), kvmrun.WithTimeout(8 * time.Minute),
			kvmrun.WithShutdownGrace(time.Millisecond), kvmrun.WithSerialLog(filepath.Join(out, "serial.log"))},
		NetCheckPort: 2222, NetCheckTimeout: 20 * time.Second, KeepOverlays: true, Dir: filepath.Join(out, "overlays"),
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Report.Detail)
	}
	b := res.Report
	if b.Shutdown != kvmrun.ShutdownQuit || len(b.Warnings) == 0 || !strings.Contains(b.Warnings[0], "not cleanly unmounted") {
		t.Errorf("shutdown %q, warnings %q: want quit and a warning", b.Shutdown, b.Warnings)
	}
	if n := b.Network; n == nil || !n.OK || n.Proof != kvmrun.ProofTCPReset || n.Port != 2222 || n.GuestIP != kvmrun.DefaultGuestIP {
		t.Errorf("network proof on a closed port: %+v", n)
	}
	if b.Drift == nil || b.Drift.Error != "" || b.Drift.Flagged != 0 {
		t.Fatalf("drift %+v", b.Drift)
	}
	if len(res.Overlays) != 1 {
		t.Fatalf("overlays %q", res.Overlays)
	}

	// The overlay's root filesystem is still marked mounted: a reader
	// must replay its journal.
	ov, err := diskimg.Open(res.Overlays[0])
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := part.Read(ov)
	if err != nil {
		t.Fatal(err)
	}
	sb := make([]byte, 1024)
	if _, err := tbl.Partitions[1].Device().ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	ov.Close()
	if incompat := binary.LittleEndian.Uint32(sb[0x60:]); incompat&0x4 == 0 {
		t.Errorf("the root filesystem in the overlay is clean (incompat %#x): the guest was not stopped mounted", incompat)
	}

	img := dom.Disks[0].Path
	hashes := func() [2]string { return [2]string{testutil.HashFile(t, img), testutil.HashFile(t, res.Overlays[0])} }
	before := hashes()
	after := []config.KVMDisk{{Path: res.Overlays[0], Format: "qcow2", Target: dom.Disks[0].Target, Device: "disk"}}
	files, err := firstboot.ReadDrift(ctx, dom.Disks, after)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(files, b.Drift.Files) {
		t.Errorf("drift read again:\n%+v\nwant\n%+v", files, b.Drift.Files)
	}
	if hashes() != before {
		t.Error("reading the drift wrote to the converted image or the overlay")
	}
}
