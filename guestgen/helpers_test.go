package guestgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// Guests built by the tests are shared through one folder per test run.
var (
	sharedOnce sync.Once
	sharedDir  string
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// buildForTest builds a preset into the shared folder, skipping the test
// when the host lacks what a PV build needs.
func buildForTest(t *testing.T, s Spec) *Guest {
	t.Helper()
	sharedOnce.Do(func() { sharedDir, sharedErr = os.MkdirTemp("", "guestgen-test-") })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	if !s.HVM {
		testutil.NeedTool(t, "mke2fs")
		testutil.NeedTool(t, "busybox")
		testkernel.ForTest(t)
	}
	g, err := Build(context.Background(), sharedDir, s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// fsAt names a filesystem inside an image for e2fsprogs.
func fsAt(img string, off int64) string { return fmt.Sprintf("%s?offset=%d", img, off) }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// readGuestFile reads a file from an ext3 filesystem in an image.
func readGuestFile(t *testing.T, img string, off int64, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	run(t, "debugfs", "-R", fmt.Sprintf("dump -p %s %s", path, dst), fsAt(img, off))
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatalf("%s not in %s at %d: %v", path, img, off, err)
	}
	return string(data)
}

func dumpGuestFile(t *testing.T, img string, off int64, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	run(t, "debugfs", "-R", fmt.Sprintf("dump %s %s", path, dst), fsAt(img, off))
	if _, err := os.Stat(dst); err != nil {
		t.Fatalf("%s not in %s at %d", path, img, off)
	}
	return dst
}

// writeGuestFiles replaces files in an ext3 filesystem in an image.
func writeGuestFiles(t *testing.T, img string, off int64, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	var cmds strings.Builder
	n := 0
	for path, content := range files {
		n++
		src := filepath.Join(dir, fmt.Sprint(n))
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cmds, "rm %s\nwrite %s %s\n", path, src, path)
	}
	script := filepath.Join(dir, "cmds")
	if err := os.WriteFile(script, []byte(cmds.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "debugfs", "-w", "-f", script, fsAt(img, off))
	for path, content := range files {
		if got := readGuestFile(t, img, off, path); got != content {
			t.Fatalf("writing %s into %s did not take", path, img)
		}
	}
}

// copySparse copies an image keeping its holes.
func copySparse(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fi, _ := in.Stat()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(fi.Size()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				t.Fatal(werr)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

type grubEntry struct {
	Title, Kernel, Args, Initrd string
}

// parseGrub reads grub legacy's default= and its entries.
func parseGrub(t *testing.T, conf string) (int, []grubEntry) {
	t.Helper()
	def := 0
	var es []grubEntry
	for _, line := range strings.Split(conf, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch {
		case strings.HasPrefix(f[0], "default="):
			fmt.Sscanf(f[0], "default=%d", &def)
		case f[0] == "title":
			es = append(es, grubEntry{Title: strings.Join(f[1:], " ")})
		case f[0] == "kernel" && len(es) > 0:
			es[len(es)-1].Kernel, es[len(es)-1].Args = f[1], strings.Join(f[2:], " ")
		case f[0] == "initrd" && len(es) > 0:
			es[len(es)-1].Initrd = f[1]
		}
	}
	if def >= len(es) {
		t.Fatalf("grub.conf default=%d with %d entries", def, len(es))
	}
	return def, es
}

// bootEntry is what a direct kernel boot of a guest's default grub entry
// takes, read from the guest's /boot.
type bootEntry struct {
	Kernel, Initrd, Args string
}

func defaultEntry(t *testing.T, img string, bootOff int64) bootEntry {
	t.Helper()
	def, es := parseGrub(t, readGuestFile(t, img, bootOff, "/grub/grub.conf"))
	e := es[def]
	return bootEntry{
		Kernel: dumpGuestFile(t, img, bootOff, e.Kernel),
		Initrd: dumpGuestFile(t, img, bootOff, e.Initrd),
		Args:   e.Args,
	}
}

// bootRun is a QEMU run's outcome.
type bootRun struct {
	Log     string
	Matched bool // want was seen
	Exited  bool // QEMU ended by itself (the guest panicked or rebooted)
}

type bootOpts struct {
	Want     *regexp.Regexp // stop with success when seen
	Until    *regexp.Regexp // once seen, give the guest Grace more and stop
	Grace    time.Duration
	Timeout  time.Duration
	Snapshot bool   // discard disk writes
	MAC      string // a virtio NIC with this address (none when empty)
}

// bootQEMU boots a kernel, initrd and command line with the disks as
// virtio disks under QEMU (TCG), watching the serial console.
func bootQEMU(t *testing.T, e bootEntry, disks []string, o bootOpts) bootRun {
	t.Helper()
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")
	args := []string{"-accel", "tcg", "-m", "384", "-smp", "1", "-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-no-reboot",
		// no_timer_check: on a busy host TCG can be too slow for the
		// kernel's IO-APIC timer check, which then panics.
		"-kernel", e.Kernel, "-initrd", e.Initrd, "-append", e.Args + " no_timer_check"}
	if o.MAC != "" {
		args = append(args, "-nic", "user,model=virtio-net-pci,mac="+o.MAC)
	} else {
		args = append(args, "-nic", "none")
	}
	for _, d := range disks {
		drive := "file=" + d + ",format=raw,if=virtio"
		if o.Snapshot {
			drive += ",snapshot=on"
		}
		args = append(args, "-drive", drive)
	}
	t.Logf("boot: %s %s", qemu, shellQuote(args))
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	res := bootRun{}
	lines := make(chan string)
	go func() {
		r := bufio.NewReader(stdout)
		for {
			s, err := r.ReadString('\n')
			if s != "" {
				lines <- s
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	var graceC <-chan time.Time
loop:
	for {
		select {
		case s, ok := <-lines:
			if !ok {
				break loop
			}
			log.WriteString(s)
			if o.Want != nil && o.Want.MatchString(log.String()) {
				res.Matched = true
				cancel()
			}
			if graceC == nil && o.Until != nil && o.Until.MatchString(log.String()) {
				graceC = time.After(o.Grace)
			}
		case <-graceC:
			cancel()
		}
	}
	err = cmd.Wait()
	res.Log = log.String() + stderr.String()
	res.Exited = ctx.Err() == nil && err == nil
	if ctx.Err() == nil && err != nil {
		t.Fatalf("qemu: %v\n%s", err, res.Log)
	}
	return res
}

func shellQuote(args []string) string {
	var q []string
	for _, a := range args {
		if strings.ContainsAny(a, " =,'\"") && !strings.HasPrefix(a, "file=") {
			a = "'" + a + "'"
		}
		q = append(q, a)
	}
	return strings.Join(q, " ")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
