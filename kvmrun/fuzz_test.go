package kvmrun

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// FuzzQMP feeds arbitrary server output to the QMP client: it must fail
// or succeed, never hang past its context or panic.
func FuzzQMP(f *testing.F) {
	greeting := `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}` + "\n"
	f.Add(greeting + `{"return": {}, "id": 1}` + "\n" + `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}` + "\n" + `{"return": {"status": "running", "running": true}, "id": 2}` + "\n")
	f.Add(greeting + `{"return": {}, "id": 1}` + "\n" + `{"error": {"class": "CommandNotFound", "desc": "no"}, "id": 2}` + "\n")
	f.Add(greeting + `{"return": {}, "id": 7}{"return": {}, "id": 1}{"return": 3, "id": 2}`)
	f.Add(`{"QMP": null}`)
	f.Add(greeting + `{"return": {}, "id": "1"}`)
	f.Fuzz(func(t *testing.T, server string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q, err := handshake(ctx, &scriptConn{r: strings.NewReader(server)}, "fuzz")
		if err != nil {
			return
		}
		defer q.Close()
		if _, err := q.Execute(ctx, "query-status", map[string]any{"x": 1}); ctx.Err() != nil {
			t.Fatalf("Execute ran into its deadline: %v", err)
		}
		q.Events()
	})
}

// scriptConn is a connection whose peer sends a fixed script and then
// closes; what the client writes is dropped.
type scriptConn struct {
	net.Conn // nil: only the methods below are used
	r        *strings.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *scriptConn) Close() error                       { return nil }
func (c *scriptConn) SetDeadline(time.Time) error        { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error    { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzPyGrub runs the built-in pygrub on arbitrary grub configs over a
// small /boot: it must not panic nor read outside the filesystem.
func FuzzPyGrub(f *testing.F) {
	f.Add(rhel5GrubConf)
	f.Add("default 0\ntitle CentOS 4\n  root (hd0,0)\n  kernel (hd0,0)/boot/vmlinuz ro root=LABEL=/\n  initrd /boot/initrd.img\n")
	f.Add("default=0\ntitle RHEL 5 Xen\n kernel /xen.gz-2.6.18\n module /vmlinuz ro\n module /initrd.img\n")
	f.Add("title x\nkernel /../../../etc/passwd\n")
	f.Add("title x\nkernel ()\ninitrd (hd0,0\n")
	f.Fuzz(func(t *testing.T, conf string) {
		fsys := fstest.MapFS{
			"grub/grub.conf": {Data: []byte(conf)},
			"vmlinuz":        {Data: []byte("k")},
			"initrd.img":     {Data: []byte("i")},
			"boot/vmlinuz":   {Data: []byte("k2")},
		}
		dir := t.TempDir()
		db, err := PyGrub(fsys, dir)
		if err != nil {
			return
		}
		if db.KernelPath == "" || strings.Contains(db.KernelPath, "..") {
			t.Fatalf("kernel path %q", db.KernelPath)
		}
		if b, err := os.ReadFile(db.Kernel); err != nil || len(b) == 0 {
			t.Fatalf("kernel copy %q: %v", db.Kernel, err)
		}
	})
}

// FuzzGuessStage: any serial output gives one of the stages.
func FuzzGuessStage(f *testing.F) {
	for _, s := range []string{"", "SeaBIOS\nBooting from Hard Disk", "Linux version 2.6.18\nRed Hat nash version 5.1.19.6 starting\nKernel panic - not syncing: Attempted to kill init!", "\r\n\r\n\x1b[0m"} {
		f.Add(s, false)
	}
	stages := map[string]bool{StageFirmware: true, StageBootloader: true, StageKernel: true, StageInitrd: true, StageUserspace: true}
	f.Fuzz(func(t *testing.T, serial string, direct bool) {
		lines := serialLines(serial)
		if got := GuessStage(lines, direct); !stages[got] {
			t.Fatalf("GuessStage = %q", got)
		}
		clue(lines)
	})
}
