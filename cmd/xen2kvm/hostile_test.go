package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// runCLIWithin runs the CLI like runCLI and fails the test when it does
// not return within d (the hostile inputs here used to hang it).
func runCLIWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := runWith(context.Background(), args, &stdout, &stderr)
		done <- result{code, stdout.String(), stderr.String()}
	}()
	select {
	case r := <-done:
		return r.code, r.stdout, r.stderr
	case <-time.After(d):
		t.Fatalf("%v did not return within %v", args, d)
		return 0, "", ""
	}
}

// specialFiles makes, in dir, a FIFO, a socket and a folder, and names
// a character device: none is a disk image, and reading the FIFO blocks.
func specialFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	fifo := filepath.Join(dir, "fifo.img")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock.img")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	folder := filepath.Join(dir, "folder.img")
	os.Mkdir(folder, 0o755)
	return map[string]string{"a FIFO": fifo, "a socket": sock, "a folder": folder, "a character device": "/dev/zero"}
}

// TestNonImageSourcesRefused: every command that reads a disk refuses a
// FIFO, socket, folder or character device at once, saying what it is,
// instead of hanging on it (a FIFO) or reading it forever (/dev/zero).
func TestNonImageSourcesRefused(t *testing.T) {
	dir := t.TempDir()
	for what, p := range specialFiles(t, dir) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "guest")
			os.WriteFile(cfg, []byte("name = 'guest'\nmemory = 256\ndisk = [ 'file:"+p+",xvda,w' ]\n"), 0o644)
			out := filepath.Join(t.TempDir(), "out")
			for _, args := range [][]string{
				{"disk", "info", p},
				{"disk", "convert", p, filepath.Join(t.TempDir(), "o.qcow2")},
				{"migrate", cfg, "-o", out, "--no-boot-check"},
				{"migrate", cfg, "--dry-run"},
			} {
				code, _, stderr := runCLIWithin(t, 30*time.Second, args...)
				if code != exitFail || !strings.Contains(stderr, "not a disk image file or block device: it is "+what) {
					t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
				}
			}
			// inspect reports the disk it cannot read and still exits.
			code, stdout, stderr := runCLIWithin(t, 30*time.Second, "inspect", cfg)
			if !strings.Contains(stdout+stderr, "it is "+what) {
				t.Errorf("inspect: exit %d, output %q %q", code, stdout, stderr)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("migrate left %d entries in OUTDIR", len(ents))
			}
		})
	}
}

// TestConvertOntoDevicesRefused: disk convert --force onto a character
// device, a block device, a symlink to one, a FIFO, a socket or a folder
// is refused and the node stays what it was (it used to be replaced by a
// file).
func TestConvertOntoDevicesRefused(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	os.WriteFile(src, bytes.Repeat([]byte{1}, 1<<20), 0o644)
	link := filepath.Join(dir, "full-link")
	os.Symlink("/dev/full", link)
	fifo := filepath.Join(dir, "out.fifo")
	syscall.Mkfifo(fifo, 0o644)
	folder := filepath.Join(dir, "folder")
	os.Mkdir(folder, 0o755)
	sock := filepath.Join(dir, "out.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dsts := map[string]string{"/dev/full": "a character device", "/dev/null": "a character device", link: "a character device", fifo: "a FIFO", folder: "a folder", sock: "a socket"}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("losetup"); err == nil {
			back := filepath.Join(dir, "loop.img")
			os.WriteFile(back, make([]byte, 2<<20), 0o644)
			dsts[testutil.Loop(t, back)] = "a block device"
		}
	} else if testutil.InCI() {
		t.Fatal("CI runs as root: the loop device case must run")
	}
	for dst, what := range dsts {
		before, err := os.Lstat(dst)
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"--force", "-O", "raw"}, {"--force", "-O", "qcow2"}, {"-O", "raw"}} {
			code, _, stderr := runCLIWithin(t, 30*time.Second, append(append([]string{"disk", "convert"}, args...), src, dst)...)
			if code != exitFail || !strings.Contains(stderr, dst+": output exists and is not a regular file: it is "+what) {
				t.Errorf("%s (%v): exit %d, stderr %q", dst, args, code, stderr)
			}
		}
		after, err := os.Lstat(dst)
		if err != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
			t.Errorf("%s changed: %v -> %v (%v)", dst, before.Mode(), after.Mode(), err)
		}
		if parts, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")); len(parts) != 0 {
			t.Errorf("part files left: %v", parts)
		}
	}
}

// TestConvertRemovesStaleParts: part files of converts to the same DST
// that were killed are removed by the next convert; one that a live
// convert holds (its lock taken), and other files, are not.
func TestConvertRemovesStaleParts(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	os.WriteFile(src, bytes.Repeat([]byte{7}, 1<<20), 0o644)
	dst := filepath.Join(dir, "vda.qcow2")
	stale := []string{filepath.Join(dir, ".vda.qcow2.part-123"), filepath.Join(dir, ".vda.qcow2.part-99999")}
	for _, p := range stale {
		os.WriteFile(p, []byte("half"), 0o644)
	}
	live := filepath.Join(dir, ".vda.qcow2.part-555")
	os.WriteFile(live, []byte("busy"), 0o644)
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	keep := []string{filepath.Join(dir, ".other.qcow2.part-1"), filepath.Join(dir, ".vda.qcow2.part-x1"), filepath.Join(dir, "vda.qcow2.part-1")}
	for _, p := range keep {
		os.WriteFile(p, []byte("not ours"), 0o644)
	}
	if code, _, stderr := runCLIWithin(t, time.Minute, "disk", "convert", src, dst); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	for _, p := range append(keep, live) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}

// TestDiskInfoUnreadableLayout: disk info shows what it could read of an
// image whose partitions cannot be read, and exits 1 naming the problem.
func TestDiskInfoUnreadableLayout(t *testing.T) {
	src := testDisk(t)
	for _, tc := range []struct {
		name string
		size int64
		want string
	}{
		{"partition starts past the end", 512 << 10, "partition 1 starts at sector 2048, outside"},
		{"one sector", 512, "partition 1 starts at sector 2048, outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "short.img")
			data, _ := os.ReadFile(src)
			os.WriteFile(img, data[:tc.size], 0o644)
			for _, args := range [][]string{{"disk", "info", img}, {"disk", "info", "--json", img}} {
				code, stdout, stderr := runCLI(t, args...)
				if code != exitFail || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "xen2kvm: hint:") || !strings.Contains(stdout, "raw") {
					t.Errorf("%v: exit %d\nstdout %q\nstderr %q", args, code, stdout, stderr)
				}
			}
		})
	}
}

// TestInterruptedSaysSo: a command cancelled by SIGINT or SIGTERM (the
// context main cancels) says "interrupted", not "context canceled".
func TestInterruptedSaysSo(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	os.WriteFile(src, bytes.Repeat([]byte{7}, 4<<20), 0o644)
	cfg := filepath.Join(dir, "guest")
	os.WriteFile(cfg, []byte("name = 'guest'\nmemory = 256\ndisk = [ 'file:"+src+",xvda,w' ]\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	mf := filepath.Join(t.TempDir(), "guests.yaml")
	os.WriteFile(mf, []byte("defaults:\n  output: "+filepath.Join(dir, "out")+"\n  boot_check: false\nguests:\n  - config: "+cfg+"\n"), 0o644)
	for _, args := range [][]string{
		{"disk", "convert", src, filepath.Join(dir, "o.qcow2")},
		{"migrate", cfg, "-o", filepath.Join(dir, "out"), "--no-boot-check"},
		{"batch", mf},
	} {
		var stdout, stderr bytes.Buffer
		code := runWith(ctx, args, &stdout, &stderr)
		if code != exitFail || !strings.Contains(stderr.String(), "xen2kvm: error: interrupted\n") || strings.Contains(stderr.String(), "context canceled") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("the interrupted commands left files: %v", ents)
	}
	// The batch made the guest's folder, OUTPUT/NAME; nothing is in it.
	filepath.WalkDir(filepath.Join(dir, "out"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("the interrupted runs left %s", p)
		}
		return nil
	})
}

// hostileNames are guest names that must never name a file: each would
// leave OUTDIR, hide a file, read as an option, or carry bytes a file
// name or a terminal should not.
var hostileNames = []string{
	"../../../../tmp/x2k-pwn", "../../victim", "../sibling", "..", ".", "/abs/path", "a/b",
	"--force", "-rf", ".hidden", "", "a b", "$(touch pwned)", "a;b", "a\\b",
	"a\nb", "a\rb", "a\tb", "a\x00b", "\x1b[31mred", "\xff\xfe", "caf\xc3\xa9", strings.Repeat("n", 65),
}

// pyQuote writes s as a Python string literal for an xm config.
func pyQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteString("\\" + string(c))
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestHostileNamesWriteNothing is the acceptance test of guest names:
// every hostile name, in every config syntax, through migrate, its dry
// run and a batch, with OUTDIR deep inside a tree made read-only (which
// root ignores, so the whole tree is compared before and after as
// well): the command fails naming the config, and nothing in the tree,
// nor in /tmp where the first name points, is created or changed.
func TestHostileNamesWriteNothing(t *testing.T) {
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	outDir := filepath.Join(tree, "a", "b", "out")
	for _, d := range []string{filepath.Join(tree, "a", "b"), filepath.Join(tree, "a", "sibling"), filepath.Join(tree, "x")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(tree, "a", "victim"), []byte("precious"), 0o644)
	os.WriteFile(filepath.Join(tree, "a", "victim.xml"), []byte("precious"), 0o644)
	os.WriteFile(filepath.Join(tree, "a", "b", "..-vda.qcow2"), []byte("precious"), 0o644)
	img := filepath.Join(work, "disk.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	imgHash := testutil.HashFile(t, img)

	cfgs := filepath.Join(work, "configs")
	os.MkdirAll(cfgs, 0o755)
	var files []string
	for i, name := range hostileNames {
		xm := filepath.Join(cfgs, fmt.Sprintf("g%02d.cfg", i))
		os.WriteFile(xm, []byte("# hostile\nname = "+pyQuote(name)+"\nmemory = 256\ndisk = [ 'file:"+img+",xvda,w' ]\n"), 0o644)
		files = append(files, xm)
		if !strings.ContainsAny(name, "\x00\r\n\t\x1b()\" ;\\") && name != "" {
			sxp := filepath.Join(cfgs, fmt.Sprintf("g%02d.sxp", i))
			os.WriteFile(sxp, []byte("(domain\n (name '"+name+"')\n (memory 256)\n (device (vbd (dev xvda) (uname file:"+img+") (mode w))))\n"), 0o644)
			files = append(files, sxp)
		}
		if utf8.ValidString(name) && !strings.ContainsAny(name, "\x00\x1b<&") {
			var esc bytes.Buffer
			xml.EscapeText(&esc, []byte(name))
			lx := filepath.Join(cfgs, fmt.Sprintf("g%02d.xml", i))
			os.WriteFile(lx, []byte("<domain type='xen'>\n  <name>"+esc.String()+"</name>\n  <memory>262144</memory>\n  <devices><disk type='file' device='disk'><source file='"+img+"'/><target dev='xvda'/></disk></devices>\n</domain>\n"), 0o644)
			files = append(files, lx)
		}
	}

	// Read-only as far as permissions go (root writes anyway).
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Chmod(p, 0o555)
		}
		return nil
	})
	t.Cleanup(func() {
		filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})

	before := testutil.TreeDigest(t, tree)
	tmpBefore, _ := filepath.Glob("/tmp/x2k-pwn*")

	var manifest strings.Builder
	manifest.WriteString("defaults:\n  output: " + outDir + "\n  boot_check: false\nguests:\n")
	for _, f := range files {
		for _, args := range [][]string{
			{"migrate", f, "-o", outDir, "--no-boot-check"},
			{"migrate", f, "-o", outDir, "--no-boot-check", "--force"},
			{"migrate", f, "--dry-run"},
		} {
			code, _, stderr := runCLIWithin(t, time.Minute, args...)
			if code != exitFail || !strings.Contains(stderr, filepath.Base(f)) || !strings.Contains(stderr, "guest name") {
				t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
			}
		}
		manifest.WriteString("  - config: " + f + "\n")
	}
	mf := filepath.Join(work, "guests.yaml")
	os.WriteFile(mf, []byte(manifest.String()), 0o644)
	code, stdout, stderr := runCLIWithin(t, 2*time.Minute, "batch", mf, "--json")
	if code != exitFail {
		t.Errorf("batch: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var res struct {
		Guests []struct {
			Config, Status, Error string
		} `json:"guests"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res.Guests) != len(files) {
		t.Fatalf("batch JSON (%v): %s", err, stdout)
	}
	for _, g := range res.Guests {
		if g.Status != "failed" || !strings.Contains(g.Error, "guest name") || !strings.Contains(g.Error, filepath.Base(g.Config)) {
			t.Errorf("batch guest %+v", g)
		}
	}

	if after := testutil.TreeDigest(t, tree); after != before {
		t.Errorf("the tree around OUTDIR changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if tmpAfter, _ := filepath.Glob("/tmp/x2k-pwn*"); len(tmpAfter) != len(tmpBefore) {
		t.Errorf("files appeared in /tmp: %v", tmpAfter)
	}
	if testutil.HashFile(t, img) != imgHash {
		t.Error("the source image changed")
	}
}

// TestInspectWarnsAboutHostileNames: inspect still shows a guest whose
// name migrate refuses, quoted, with a warning that names the line.
func TestInspectWarnsAboutHostileNames(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "evil")
	os.WriteFile(cfg, []byte("memory = 256\nname = \"\\x1b[2Jweb/../01\"\n"), 0o644)
	code, stdout, stderr := runCLI(t, "inspect", cfg)
	if code != exitOK || strings.Contains(stdout, "\x1b") || !strings.Contains(stdout, `"\x1b[2Jweb/../01"`) ||
		!strings.Contains(stdout, cfg+":2: guest name") || !strings.Contains(stdout, "migrate and batch refuse this guest") {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
}

// TestDiskInfoCutPartition: an image shorter than its partition table
// says shows which partition is cut and by how much.
func TestDiskInfoCutPartition(t *testing.T) {
	src := testDisk(t)
	img := filepath.Join(t.TempDir(), "cut.img")
	data, _ := os.ReadFile(src)
	os.WriteFile(img, data[:20<<20], 0o644)
	code, stdout, stderr := runCLI(t, "disk", "info", img)
	if code != exitOK || !strings.Contains(stdout, "(cut short: the image ends 4.0 MiB before the partition does)") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "disk", "info", "--json", img)
	if code != exitOK || !strings.Contains(stdout, `"missing_bytes": 4194304`) {
		t.Errorf("exit %d\n%s", code, stdout)
	}
}
