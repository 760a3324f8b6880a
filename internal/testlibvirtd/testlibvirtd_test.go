package testlibvirtd

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// TestReapOrphans: the folder of a test binary that died without its
// cleanups is reaped by the next Start: the QEMU its pid file names is
// killed and the folder removed; a live owner's folder is left alone.
func TestReapOrphans(t *testing.T) {
	// A stand-in QEMU: sleep under a name starting with qemu.
	bin := filepath.Join(t.TempDir(), "qemu-reap-test")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	qemu := exec.Command(bin, "300")
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { qemu.Wait(); close(exited) }()
	t.Cleanup(func() { qemu.Process.Kill() })
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphan, live := mkOwned(t, dead.Process.Pid, qemu.Process.Pid), mkOwned(t, os.Getpid(), 0)
	reapOrphans()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("the orphaned QEMU was not killed")
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the orphan's folder is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live test binary's folder was reaped: %v", err)
	}
}

// mkOwned makes a daemon folder owned by pid, naming qemuPid (if not 0)
// in a QEMU pid file.
func mkOwned(t *testing.T, pid, qemuPid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(pid)), 0o644)
	if qemuPid != 0 {
		run := filepath.Join(dir, "run", "libvirt", "qemu", "run")
		os.MkdirAll(run, 0o755)
		os.WriteFile(filepath.Join(run, "g.pid"), []byte(strconv.Itoa(qemuPid)), 0o644)
	}
	return dir
}

// TestVolumes: Volumes lists nothing for an empty pool and the names of
// the volumes virsh created, in vol-list's order, for a filled one.
func TestVolumes(t *testing.T) {
	d := Start(t)
	d.DirPool(t, "default")
	if v := d.Volumes(t, "default"); len(v) != 0 {
		t.Errorf("empty pool: Volumes = %q, want none", v)
	}
	d.Virsh(t, "vol-create-as", "default", "b.raw", "1M", "--format", "raw")
	d.Virsh(t, "vol-create-as", "default", "a.qcow2", "1M", "--format", "qcow2")
	if v, want := d.Volumes(t, "default"), []string{"a.qcow2", "b.raw"}; !slices.Equal(v, want) {
		t.Errorf("Volumes = %q, want %q", v, want)
	}
}
