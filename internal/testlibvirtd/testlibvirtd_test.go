package testlibvirtd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopsEverything: a daemon killed while it runs a guest leaves a
// QEMU behind; the fixture's cleanup still stops that QEMU and removes the
// daemon's folder.
func TestStopsEverything(t *testing.T) {
	var dir string
	var qemuPid int
	t.Run("daemon", func(t *testing.T) {
		d := Start(t)
		dir = d.Dir
		xml := filepath.Join(t.TempDir(), "idle.xml")
		// A guest with no disk: it idles in its firmware.
		os.WriteFile(xml, []byte(`<domain type='qemu'><name>idle</name><memory unit='MiB'>32</memory>`+
			`<os><type arch='x86_64'>hvm</type></os><devices><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>`), 0o644)
		d.Virsh(t, "create", xml)
		pids, _ := filepath.Glob(filepath.Join(d.Dir, "*", "libvirt", "qemu", "run", "idle.pid"))
		if len(pids) != 1 {
			t.Fatalf("no pid file of the guest's QEMU: %v", pids)
		}
		b, _ := os.ReadFile(pids[0])
		qemuPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		d.Kill()
		if syscall.Kill(qemuPid, 0) != nil {
			t.Fatalf("QEMU %d died with the daemon: nothing left for the cleanup to prove", qemuPid)
		}
	})
	if qemuPid == 0 {
		t.Fatal("the guest did not start")
	}
	for i := 0; i < 50 && syscall.Kill(qemuPid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(qemuPid, 0) == nil {
		if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(qemuPid) + "/comm"); strings.HasPrefix(string(comm), "qemu") {
			syscall.Kill(qemuPid, syscall.SIGKILL)
			t.Errorf("QEMU %d still ran after the cleanup", qemuPid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the daemon's folder %s is still there: %v", dir, err)
	}
}
