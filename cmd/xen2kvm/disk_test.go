package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// testDisk makes a 24 MiB raw disk with an MBR and an ext3 partition.
func testDisk(t *testing.T) string {
	t.Helper()
	sfdisk := testutil.NeedTool(t, "sfdisk")
	mke2fs := testutil.NeedTool(t, "mke2fs")
	p := filepath.Join(t.TempDir(), "xvda.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 24<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sfdisk, "-q", p)
	cmd.Stdin = strings.NewReader("label: dos\nstart=2048, type=83, bootable\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext3", "-L", "/", "-E", "offset=1048576", p, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return p
}

func TestDiskConvert(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	src := testDisk(t)
	hash := testutil.HashFile(t, src)
	for _, format := range []string{"qcow2", "raw"} {
		t.Run(format, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "vda."+format)
			code, out, stderr := runCLI(t, "disk", "convert", "-O", format, src, dst)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(out, "-> "+dst) {
				t.Errorf("stdout %q does not name the output", out)
			}
			// stderr is not a terminal here: plain progress lines, no bar.
			if !strings.Contains(stderr, "xen2kvm: converting "+src+": 100%") || strings.Contains(stderr, "\r") {
				t.Errorf("stderr %q: want plain progress lines", stderr)
			}
			if o, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", format, src, dst).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img compare: %v\n%s", err, o)
			}
			if testutil.HashFile(t, src) != hash {
				t.Fatal("source changed")
			}
		})
	}
}

func TestDiskConvertErrors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	os.WriteFile(src, make([]byte, 1<<20), 0o644)
	trunc := filepath.Join(dir, "trunc.qcow2")
	os.WriteFile(trunc, []byte("QFI\xfb\x00\x00\x00\x03"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"bad-format", []string{"disk", "convert", "-O", "vmdk", src, filepath.Join(dir, "o")}, exitUsage, "qcow2 or raw"},
		{"one-arg", []string{"disk", "convert", src}, exitUsage, "accepts 2 arg"},
		{"bad-cluster", []string{"disk", "convert", "--cluster-size", "1000", src, filepath.Join(dir, "o")}, exitUsage, "power of two"},
		{"missing", []string{"disk", "convert", filepath.Join(dir, "nope"), filepath.Join(dir, "o")}, exitFail, "no such file"},
		{"corrupt", []string{"disk", "convert", trunc, filepath.Join(dir, "o")}, exitFail, "xen2kvm: hint:"},
		{"info-corrupt", []string{"disk", "info", trunc}, exitFail, "too short"},
		{"dst-exists", []string{"disk", "convert", trunc, src}, exitFail, "--force"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.msg)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "o")); err == nil {
		t.Error("a failed convert left its output")
	}
	if b, _ := os.ReadFile(src); len(b) != 1<<20 {
		t.Error("convert without --force replaced an existing file")
	}
	// With --force the existing file is replaced.
	dst := filepath.Join(dir, "dst.img")
	os.WriteFile(dst, []byte("old"), 0o644)
	if code, _, stderr := runCLI(t, "disk", "convert", "--force", "-O", "raw", src, dst); code != exitOK {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	if st, err := os.Stat(dst); err != nil || st.Size() != 1<<20 {
		t.Errorf("--force did not replace the output: %v", err)
	}
}

func TestDiskInfo(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	src := testDisk(t)
	q := filepath.Join(t.TempDir(), "xvda.qcow2")
	if o, err := exec.Command(qemuImg, "convert", "-O", "qcow2", src, q).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	code, out, stderr := runCLI(t, "disk", "info", "--json", q)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var info diskInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if info.Format != "qcow2" || info.VirtualSize != 24<<20 || info.AllocatedBytes <= 0 || info.AllocatedBytes >= 24<<20 {
		t.Errorf("info %+v", info)
	}
	if info.Layout == nil || info.Layout.Scheme != "mbr" || len(info.Layout.Partitions) != 1 || info.Layout.Partitions[0].Content.Type != "ext3" {
		t.Errorf("layout %+v", info.Layout)
	}

	code, out, _ = runCLI(t, "disk", "info", src)
	for _, want := range []string{"format:", "raw", "virtual size:", "24.0 MiB", "partition table: mbr", `ext3 label="/"`} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 8 << 30: "8.0 GiB", 3<<40 + 1<<39: "3.5 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
