package kvmrun

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"testing"
)

// cpioEntry is one file of a newc cpio archive.
type cpioEntry struct {
	name         string
	mode         uint32 // type and permission bits, as in st_mode
	data         []byte // file content or symlink target
	major, minor uint32 // of a device node
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
)

// writeCpio writes entries as a newc ("070701") archive, the format the
// kernel unpacks an initramfs from.
func writeCpio(w io.Writer, entries []cpioEntry) error {
	pad := func(n int) []byte { return make([]byte, (4-n%4)%4) }
	ino := uint32(1)
	write := func(e cpioEntry) error {
		name := e.name + "\x00"
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.major, e.minor, len(name), 0)
		ino++
		var b bytes.Buffer
		b.WriteString(hdr)
		b.WriteString(name)
		b.Write(pad(len(hdr) + len(name)))
		b.Write(e.data)
		b.Write(pad(len(e.data)))
		_, err := w.Write(b.Bytes())
		return err
	}
	for _, e := range entries {
		if err := write(e); err != nil {
			return err
		}
	}
	return write(cpioEntry{name: "TRAILER!!!"})
}

// testInit is the test guest's /init: it prints a login prompt on the
// serial console and powers off when the ACPI power button is pressed.
const testInit = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
echo "xen2kvm test guest: /init running"
for m in /lib/modules/*.ko; do insmod "$m"; done
# Watch the input devices (the power button's among them) before the
# prompt, so a power-button press right after it is not missed.
n=0
while ! ls /dev/input/event* >/dev/null 2>&1 && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
# Open each device here, not in the background readers, so its events
# are queued from now on.
fd=3
for e in /dev/input/event*; do
	eval "exec $fd<$e"
	( eval "head -c 1 <&$fd" >/dev/null && echo "power button pressed" && poweroff -f ) &
	fd=$((fd+1))
done
echo
echo -n "testvm login: "
exec sleep 100000
`

// buildInitramfs writes a gzip'ed newc initramfs with the static busybox
// as its only program, testInit as /init and the given kernel modules.
func buildInitramfs(t *testing.T, dst, busybox string, modules map[string]string) {
	t.Helper()
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	entries := []cpioEntry{
		{name: "bin", mode: modeDir | 0o755},
		{name: "dev", mode: modeDir | 0o755},
		{name: "dev/console", mode: modeChr | 0o600, major: 5, minor: 1},
		{name: "proc", mode: modeDir | 0o755},
		{name: "sys", mode: modeDir | 0o755},
		{name: "lib", mode: modeDir | 0o755},
		{name: "lib/modules", mode: modeDir | 0o755},
		{name: "bin/busybox", mode: modeFile | 0o755, data: bb},
		{name: "bin/sh", mode: modeLink | 0o777, data: []byte("busybox")},
		{name: "init", mode: modeFile | 0o755, data: []byte(testInit)},
	}
	for name, path := range modules {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, cpioEntry{name: "lib/modules/" + name, mode: modeFile | 0o644, data: b})
	}
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if err := writeCpio(zw, entries); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
