package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sample is a dry-run report shaped like the one of a CentOS 5 PV guest.
func sample() *Guest {
	return &Guest{
		Name:   "centos5",
		Config: "/etc/xen/centos5",
		Status: StatusPlanned,
		DryRun: true,
		Source: Source{
			File: "/etc/xen/centos5", Format: "xm", Type: "pv",
			MemoryMiB: 512, MaxMemoryMiB: 1024, VCPUs: 2, Bootloader: "/usr/bin/pygrub",
			NICs: []NIC{{MAC: "00:16:3e:12:34:56", Bridge: "xenbr0", NewModel: "virtio"}},
		},
		OS: &OS{Distro: "centos", Version: "5.11", Arch: "x86_64", Kernel: "2.6.18-398.el5", Virtio: true},
		Disks: []Disk{{
			Source: "/var/lib/xen/images/centos5.img", Path: "/srv/import/centos5.img",
			Backend: "tap:aio", SourceFormat: "raw", Target: "xvda", NewTarget: "vda", Bus: "virtio",
			VirtualSize: 8 << 30, Allocated: 1536 << 20, Format: "qcow2",
			EstimatedSize: 1540 << 20, EstimatedCopySeconds: 6.1,
		}},
		Edits: []Edit{
			{Path: "etc/fstab", Rule: "remap-block-devices", Why: "xvd* disks are vd* under virtio",
				Diff: "--- a/etc/fstab\n+++ b/etc/fstab\n@@ -1,2 +1,2 @@\n-/dev/xvda2 / ext3 defaults 1 1\n+/dev/vda2 / ext3 defaults 1 1\n /dev/xvda1 /boot ext3 defaults 1 2\n"},
			{Path: "boot/initrd-2.6.18-398.el5.img", Rule: "initrd", Diff: "+ lib/virtio_blk.ko\n"},
		},
		TargetXML: "<domain type='kvm'>\n  <name>centos5</name>\n</domain>\n",
		Warnings:  []string{"SELinux is enforcing: /.autorelabel added"},
		Blockers:  nil,
		Started:   time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC),
		Finished:  time.Date(2026, 11, 23, 20, 0, 1, 0, time.UTC),
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output:\n%s", path, got)
	}
}

func TestWriteTextGolden(t *testing.T) {
	failed := sample()
	failed.Name, failed.Status, failed.DryRun = "broken", StatusFailed, false
	failed.Error = "opening disk xvda: /srv/import/broken.img: no such file or directory"
	failed.Edits, failed.Disks, failed.OS = nil, nil, nil
	failed.Blockers = []string{"only Xen kernels are installed: install kernel (x86_64)"}
	failed.Boot = &Boot{Skipped: "qemu-system-x86_64 not found"}
	var buf bytes.Buffer
	if err := WriteText(&buf, sample(), failed); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", buf.Bytes())
}

func TestWriteJSONRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	var back Guest
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Name != "centos5" || len(back.Edits) != 2 || back.Disks[0].Allocated != 1536<<20 {
		t.Errorf("round trip lost data: %+v", back)
	}
	buf.Reset()
	if err := WriteJSON(&buf, sample(), sample()); err != nil {
		t.Fatal(err)
	}
	var many []Guest
	if err := json.Unmarshal(buf.Bytes(), &many); err != nil || len(many) != 2 {
		t.Errorf("two guests: %v, %d", err, len(many))
	}
}

func TestWriteHTMLSelfContained(t *testing.T) {
	g := sample()
	g.Edits[0].Why = `<script>alert("x")</script>`
	var buf bytes.Buffer
	if err := WriteHTML(&buf, g); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, bad := range []string{"<script>", "http://", "https://", "<link", "@import", "src="} {
		if strings.Contains(html, bad) {
			t.Errorf("page contains %q: not self-contained or not escaped", bad)
		}
	}
	for _, want := range []string{"centos5", `class="add">&#43;/dev/vda2`, `class="del">-/dev/xvda2`, "&lt;domain type=&#39;kvm&#39;&gt;"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {8 << 30, "8.0 GiB"}, {3 << 40, "3.0 TiB"}} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// booted is sample after a real run whose first boot drifted.
func booted() *Guest {
	g := sample()
	g.Status, g.DryRun = StatusFailed, false
	g.Error = "boot check failed: the first boot changed the guest's configuration"
	g.Boot = &Boot{Ran: true, Accel: "tcg", Seconds: 74.2, Reboots: 1, Shutdown: "quit",
		Detail:   "the first boot changed the guest's configuration: interface config ifcfg-eth0 rewritten during the first boot",
		Findings: []Finding{{Kind: "failed", Line: 41, Seconds: 52.5, Text: "Bringing up interface eth1:  [FAILED]"}},
		Network: &NetworkProof{OK: true, Proof: "arp", Detail: "no TCP answer on port 22, but the guest answered ARP for 10.0.2.15",
			MAC: "00:16:3e:12:34:56", GuestIP: "10.0.2.15", Port: 22, Config: "dhcp from /etc/sysconfig/network-scripts/ifcfg-eth0"},
		Warnings: []string{"the guest did not power off after the ACPI power button (stopped by quit)"},
		Drift: &Drift{Dirs: []string{"etc", "boot", "var/log"}, Flagged: 1, Files: []DriftFile{
			{Path: "etc/mtab", Change: "created", Diff: "--- /dev/null\n+++ b/etc/mtab\n@@ -0,0 +1 @@\n+/dev/vda2 / ext3 rw 0 0\n"},
			{Path: "etc/sysconfig/network-scripts/ifcfg-eth0", Change: "changed", Flag: "interface config ifcfg-eth0 rewritten during the first boot",
				Diff: "--- a/etc/sysconfig/network-scripts/ifcfg-eth0\n+++ b/etc/sysconfig/network-scripts/ifcfg-eth0\n@@ -1,2 +1,2 @@\n DEVICE=eth0\n-BOOTPROTO=static\n+BOOTPROTO=dhcp\n"},
			{Path: "var/log/messages", Change: "changed", Diff: "changed: 812 bytes -> 1604 bytes"},
		}},
	}
	return g
}

// TestBootDriftRendering: the first boot's drift, findings and network
// proof appear in all three forms, the drift as unified diffs.
func TestBootDriftRendering(t *testing.T) {
	g := booted()
	var txt bytes.Buffer
	if err := WriteText(&txt, g); err != nil {
		t.Fatal(err)
	}
	golden(t, "report-boot.txt", txt.Bytes())

	var js bytes.Buffer
	if err := WriteJSON(&js, g); err != nil {
		t.Fatal(err)
	}
	var back Guest
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Boot, g.Boot) {
		t.Errorf("boot after a JSON round trip:\n%+v\nwant\n%+v", back.Boot, g.Boot)
	}
	for _, key := range []string{`"reboots": 1`, `"proof": "arp"`, `"flagged": 1`, `"change": "changed"`, `"kind": "failed"`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}

	var html bytes.Buffer
	if err := WriteHTML(&html, g); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`class="del">-BOOTPROTO=static`, `class="add">&#43;BOOTPROTO=dhcp`, "First-boot drift (3 files, 1 flagged)",
		"interface config ifcfg-eth0 rewritten during the first boot", "proven by arp", "Bringing up interface eth1:  [FAILED]", "not clean"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestSourceHostRendering: a guest read off a Xen host says where from
// and how much came over the network, in the text and the JSON.
func TestSourceHostRendering(t *testing.T) {
	g := sample()
	g.Host = &SourceHost{URL: "ssh://root@xen01/centos5", Address: "xen01:22", ConfigFrom: "xm list -l centos5", BytesRead: 1536 << 20, Reconnects: 1}
	var text bytes.Buffer
	if err := WriteText(&text, g); err != nil {
		t.Fatal(err)
	}
	if want := "  read from ssh://root@xen01/centos5 (config: xm list -l centos5), 1.5 GiB of disk data over the network, 1 reconnects\n"; !strings.Contains(text.String(), want) {
		t.Errorf("text report lacks %q:\n%s", want, text.String())
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, g); err != nil {
		t.Fatal(err)
	}
	var back Guest
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Host == nil || *back.Host != *g.Host {
		t.Errorf("JSON round trip: %+v", back.Host)
	}
}

func TestWriteTextDestination(t *testing.T) {
	g := sample()
	g.Destination = &Destination{URI: "qemu+ssh://root@kvm01/system", Pool: "images", DomainType: "kvm",
		Volumes: []string{"web01-vda.qcow2"}, Recovered: []string{"web01-vda.qcow2"}, Defined: true,
		Placement: "placed on qemu+ssh://root@kvm01/system: most free memory"}
	var buf bytes.Buffer
	if err := WriteText(&buf, g); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Delivered to qemu+ssh://root@kvm01/system, pool images (domain type kvm), defined\n",
		"  volumes: web01-vda.qcow2\n",
		"  replaced what an interrupted run left: web01-vda.qcow2\n",
		"  placed on qemu+ssh://root@kvm01/system: most free memory\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestWriteTextWarm: the text report gives a warm migration's passes and
// downtime.
func TestWriteTextWarm(t *testing.T) {
	g := &Guest{Name: "db01", Status: StatusMigrated, Warm: &Warm{BlockSize: 1 << 20, HashMethod: "python", Hash: "sha1", HashHelpers: 4,
		Pass1:      WarmPass{Seconds: 600, BytesRead: 200 << 30, Blocks: 204800},
		Pass2:      WarmPass{Seconds: 95, BytesRead: 4 << 30, Blocks: 204800, ChangedBlocks: 4200, ZeroBlocks: 104},
		ShutdownBy: "xen2kvm", DowntimeSeconds: 130, OutputFromPasses: 1, PatchedBytes: 1 << 20}}
	var b strings.Builder
	if err := WriteText(&b, g); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Warm migration (blocks of 1.0 MiB, hashed by python with SHA1, 4 at once a disk)", "pass 1, guest running: 200.0 GiB moved in 10m00s",
		"pass 2, guest stopped: 4200 of 204800 blocks changed (104 now zero), 4.0 GiB moved in 95 s", "stopped by xen2kvm (xm shutdown -w); downtime 2m10s",
		"output images of 1 disks written by the passes, patched with 1.0 MiB of the conversion's changes"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}
}

// TestWriteHTMLWarm: the HTML page gives a warm migration's two passes
// (bytes, times, blocks) and its downtime, and leaves the section out of
// a cold migration's page.
func TestWriteHTMLWarm(t *testing.T) {
	stopped := time.Date(2026, 12, 5, 8, 30, 0, 0, time.UTC)
	g := sample()
	g.DryRun, g.Status = false, StatusMigrated
	g.Warm = &Warm{BlockSize: 1 << 20, HashMethod: "python", Hash: "md5", Resumed: true,
		Pass1:      WarmPass{Started: stopped.Add(-20 * time.Minute), Seconds: 600, BytesRead: 200 << 30, Blocks: 204800},
		Pass2:      WarmPass{Started: stopped.Add(2 * time.Second), Seconds: 95, BytesRead: 4 << 30, Blocks: 204800, ChangedBlocks: 4200, ZeroBlocks: 104},
		ShutdownBy: "xen2kvm", Stopped: stopped, DowntimeSeconds: 130, OutputFromPasses: 2, PatchedBytes: 3 << 20}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, g); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"<h3>Warm migration</h3>",
		"Blocks of 1.0 MiB, hashed on the host by python with MD5; pass 1 was done by an earlier run.",
		`<tr><td>pass 1</td><td>running</td><td>2026-12-05 08:10:00 UTC</td><td class="num">10m00s</td><td class="num">200.0 GiB</td><td class="num">204800</td><td class="num">-</td><td class="num">-</td></tr>`,
		`<tr><td>pass 2</td><td>stopped</td><td>2026-12-05 08:30:02 UTC</td><td class="num">95 s</td><td class="num">4.0 GiB</td><td class="num">204800</td><td class="num">4200</td><td class="num">104</td></tr>`,
		"<dt>Stopped</dt><dd>by xen2kvm (xm shutdown -w) at 2026-12-05 08:30:00 UTC</dd>",
		`<dt>Downtime</dt><dd class="downtime">2m10s (guest stopped to converted guest ready)</dd>`,
		"<dt>Output images</dt><dd>of 2 disks written by the passes, patched with 3.0 MiB of the conversion's changes</dd>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Who stopped the guest, as the text report says it.
	for by, want := range map[string]string{"user": "by the user (xen2kvm waited)", "": "already stopped at"} {
		g.Warm.ShutdownBy = by
		buf.Reset()
		if err := WriteHTML(&buf, g); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "<dt>Stopped</dt><dd>"+want) {
			t.Errorf("shutdown by %q: page lacks %q", by, want)
		}
	}
	g.Warm = nil
	buf.Reset()
	if err := WriteHTML(&buf, g); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Warm migration") || strings.Contains(buf.String(), "Downtime") {
		t.Error("a cold migration's page has a warm section")
	}
}

// TestWarmDryRunRendering: a warm dry run's report says what pass 1
// would copy and where, in the text and the HTML, and claims no passes.
func TestWarmDryRunRendering(t *testing.T) {
	g := sample()
	g.Warm = &Warm{BlockSize: 1 << 20, HashMethod: "auto", PlannedBytes: 8 << 30, Pass1: WarmPass{Blocks: 8192}, Folder: "/srv/kvm/.centos5.warm", ShutdownBy: "xen2kvm"}
	var text strings.Builder
	if err := WriteText(&text, g); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Warm migration planned (blocks of 1.0 MiB, hashed by auto):\n",
		"  pass 1, guest running: would copy at most 8.0 GiB (8192 blocks; blocks of zeros are not moved) into /srv/kvm/.centos5.warm\n",
		"  then xen2kvm would stop the guest (xm shutdown -w) and pass 2 move the blocks that changed\n"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var html bytes.Buffer
	if err := WriteHTML(&html, g); err != nil {
		t.Fatal(err)
	}
	if want := "<h3>Warm migration planned</h3>\n<p class=\"warm-plan\">Pass 1, while the guest runs, would copy at most 8.0 GiB (8192 blocks of 1.0 MiB; blocks of zeros are not moved) into /srv/kvm/.centos5.warm; then xen2kvm would stop the guest (xm shutdown -w) and pass 2 move the blocks that changed, hashed on the host by auto.</p>"; !strings.Contains(html.String(), want) {
		t.Errorf("page lacks %q", want)
	}
	for _, out := range []string{text.String(), html.String()} {
		if strings.Contains(out, "downtime") || strings.Contains(out, "Downtime") || strings.Contains(out, "moved in") {
			t.Error("a dry run's report claims passes that did not run")
		}
	}
}
