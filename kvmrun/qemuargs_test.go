package kvmrun

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestQEMUAcceptsArgs runs the real QEMU on config.QEMUArgs command lines
// covering every bus, NIC model and display option, and asks it over QMP
// which drives it made: QEMU is the oracle of the argv's syntax.
func TestQEMUAcceptsArgs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU several times")
	}
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	img := func(name, format string) string {
		p := filepath.Join(dir, name)
		run(t, "", qemuImg, "create", "-q", "-f", format, p, "64M")
		return p
	}
	three := 3
	tests := []struct {
		name   string
		dom    config.KVMDomain
		opts   config.QEMUOptions
		drives map[string]blockInfo // by qdev id
	}{
		{
			name: "windows: IDE disk and CD-ROM, e1000 and rtl8139, VNC with password, tablet, sound",
			dom: config.KVMDomain{
				Name: "win2k3", MemoryMiB: 128, VCPUs: 1, MaxVCPUs: 2, Machine: "pc", OS: "windows", ACPI: true,
				Localtime: true, USBTablet: true, SoundHW: "es1370", BootOrder: "dc",
				Disks: []config.KVMDisk{
					{Path: img("win-hda.raw", "raw"), Format: "raw", Target: "hda", Bus: "ide", Device: "disk"},
					{Path: img("win.iso", "raw"), Format: "raw", Target: "hdc", Bus: "ide", Device: "cdrom", ReadOnly: true},
				},
				NICs:     []config.KVMNIC{{MAC: "00:16:3e:aa:bb:01", Model: "e1000"}, {MAC: "00:16:3e:aa:bb:02", Model: "rtl8139"}},
				Graphics: &config.Graphics{Type: "vnc", Listen: "127.0.0.1", Password: "s3cret", Display: &three, AutoPort: true, Keymap: "de"},
			},
			drives: map[string]blockInfo{"hda": {format: "raw"}, "hdc": {format: "raw", ro: true, removable: true}},
		},
		{
			name: "linux: two virtio disks, one read-only, empty CD-ROM, RTC offset, snapshot",
			dom: config.KVMDomain{
				Name: "rhel5, two", MemoryMiB: 128, VCPUs: 2, Machine: "pc", OS: "linux", ACPI: true, RTCOffset: -7200, Serial: true,
				Disks: []config.KVMDisk{
					{Path: img("a,b-vda.qcow2", "qcow2"), Format: "qcow2", Target: "vda", Bus: "virtio", Device: "disk"},
					{Path: img("vdb.qcow2", "qcow2"), Target: "vdb", Bus: "virtio", Device: "disk", ReadOnly: true},
					{Target: "hdc", Bus: "ide", Device: "cdrom"},
				},
				NICs: []config.KVMNIC{{MAC: "00:16:3e:12:34:56", Model: "virtio"}},
			},
			opts:   config.QEMUOptions{Snapshot: true},
			drives: map[string]blockInfo{"vda": {format: "qcow2"}, "vdb": {format: "qcow2", ro: true}, "hdc": {removable: true, empty: true}},
		},
		{
			name: "rare buses: SCSI, SATA CD-ROM, ne2k_pci and pcnet, SDL display, no ACPI",
			dom: config.KVMDomain{
				Name: "mixed", MemoryMiB: 128, VCPUs: 1, OS: "linux", OnReboot: "destroy",
				Disks: []config.KVMDisk{
					{Path: img("sda.raw", "raw"), Format: "raw", Target: "sda", Bus: "scsi", Device: "disk"},
					{Path: img("sdb.raw", "raw"), Format: "raw", Target: "sdb", Bus: "scsi", Device: "disk", ReadOnly: true},
					{Path: img("sdc.iso", "raw"), Format: "raw", Target: "sdc", Bus: "sata", Device: "cdrom"},
				},
				NICs:     []config.KVMNIC{{MAC: "00:16:3e:00:00:08", Model: "ne2k_pci"}, {MAC: "00:16:3e:00:00:09", Model: "pcnet"}},
				Graphics: &config.Graphics{Type: "sdl"},
			},
			drives: map[string]blockInfo{"sda": {format: "raw"}, "sdb": {format: "raw", ro: true}, "sdc": {format: "raw", ro: true, removable: true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := Start(context.Background(), &tc.dom, WithQEMU(qemu), WithAccel(AccelTCG), WithQEMUOptions(tc.opts))
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			q, err := vm.QMP(ctx)
			if err != nil {
				t.Fatalf("%v\ncommand line: %s", err, config.ShellJoin(vm.Cmdline()))
			}
			raw, err := q.Execute(ctx, "query-block", nil)
			if err != nil {
				t.Fatal(err)
			}
			var blocks []struct {
				Qdev      string `json:"qdev"`
				Removable bool   `json:"removable"`
				Inserted  *struct {
					RO  bool   `json:"ro"`
					Drv string `json:"drv"`
				} `json:"inserted"`
			}
			if err := json.Unmarshal(raw, &blocks); err != nil {
				t.Fatal(err)
			}
			got := map[string]blockInfo{}
			for _, b := range blocks {
				bi := blockInfo{removable: b.Removable, empty: b.Inserted == nil}
				if b.Inserted != nil {
					bi.ro, bi.format = b.Inserted.RO, b.Inserted.Drv
				}
				// virtio devices name their backend: /machine/peripheral/vda/virtio-backend
				id := strings.TrimSuffix(strings.TrimPrefix(b.Qdev, "/machine/peripheral/"), "/virtio-backend")
				got[id] = bi
			}
			for id, want := range tc.drives {
				g, ok := got[id]
				// A snapshot drive reports the temporary overlay's format.
				if tc.opts.Snapshot && !want.ro && want.format != "" {
					g.format = want.format
				}
				if !ok || g != want {
					t.Errorf("drive %s: got %+v (present %v), want %+v", id, g, ok, want)
				}
			}
			if len(got) != len(tc.drives) {
				t.Errorf("QEMU has drives %v, want %v", got, tc.drives)
			}
			if g := tc.dom.Graphics; g != nil && g.Password != "" {
				raw, err := q.Execute(ctx, "query-vnc", nil)
				var vnc struct {
					Enabled bool   `json:"enabled"`
					Auth    string `json:"auth"`
					Service string `json:"service"`
				}
				if err != nil || json.Unmarshal(raw, &vnc) != nil || !vnc.Enabled || vnc.Auth != "vnc" {
					t.Errorf("query-vnc: %s %v, want VNC with password auth", raw, err)
				}
			}
			if how, err := vm.Shutdown(context.Background(), 200*time.Millisecond); err != nil {
				t.Errorf("shutdown (%s): %v", how, err)
			}
		})
	}
}

type blockInfo struct {
	format    string
	ro        bool
	removable bool
	empty     bool
}
