package pipeline_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// nonZeroBytes is how many bytes of the file at path lie in blocks of
// bs bytes that are not all zeros.
func nonZeroBytes(t *testing.T, path string, bs int) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, zero := make([]byte, bs), make([]byte, bs)
	var n, off int64
	for {
		m, err := f.ReadAt(buf, off)
		if m > 0 && !bytes.Equal(buf[:m], zero[:m]) {
			n += int64(m)
		}
		off += int64(m)
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2ESSHHostZeroMap migrates the example guest over SSH with the
// host's zero map (python, then dd and md5sum): the output is sound
// (qemu-img check), and the bytes read over SSH are the data
// blocks plus what inspection reads, far less than the disk; when the
// helper cannot run (dd fails), the migration reads every block and
// warns. The sources are not written.
func TestE2ESSHHostZeroMap(t *testing.T) {
	needE2E(t)
	testutil.NeedTool(t, "/usr/sbin/sshd")
	qemuImg := testutil.NeedTool(t, "qemu-img")
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	src := g.Images[0]
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	data := nonZeroBytes(t, src, 1<<20)
	t.Logf("source: %d bytes, %d of them in non-zero 1 MiB blocks", fi.Size(), data)
	if data > fi.Size()/2 {
		t.Fatalf("the example disk is not sparse enough to tell (%d of %d bytes data)", data, fi.Size())
	}
	cfgData, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := []byte(strings.ReplaceAll(string(cfgData), g.XenImageDir, filepath.Dir(src)))
	shim := "#!/bin/sh\necho \"$0: cannot run here\" >&2\nexit 127\n"
	for _, tc := range []struct {
		name     string
		method   string
		programs map[string]string
		mapped   bool
	}{
		{"python", "python", nil, true},
		{"dd", "dd", nil, true},
		// The helper cannot run: dd fails. (Python cannot be taken away
		// on this machine: root's .bashrc puts pyenv's shims first on
		// the PATH of every SSH command.)
		{"fallback", "dd", map[string]string{"dd": shim}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: g.Name, Config: cfg}}, Programs: tc.programs})
			opts := pipeline.Options{OutDir: filepath.Join(t.TempDir(), "kvm"), Boot: pipeline.BootNever}
			opts.SSH = sshOptions(srv)
			opts.HostZeroMap = true
			opts.HostZeroMapMethod = xenhost.HashMethod(tc.method)
			res, err := pipeline.Migrate(context.Background(), srv.URL(g.Name), opts)
			if err != nil {
				t.Fatal(err)
			}
			rep := res.Report
			if rep.Status != report.StatusMigrated || len(rep.Disks) != 1 {
				t.Fatalf("status %s, disks %+v", rep.Status, rep.Disks)
			}
			out := filepath.Join(opts.OutDir, g.Name+"-vda.qcow2")
			// The conversion edits the guest, so the output is not the
			// source: xenhost's TestZeroMapCopy compares a plain copy.
			if b, err := exec.Command(qemuImg, "check", out).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img check: %v\n%s", err, b)
			}
			d := rep.Disks[0]
			warned := false
			for _, w := range rep.Warnings {
				warned = warned || strings.Contains(w, "host zero map of "+src+" not taken")
			}
			t.Logf("read %d bytes over SSH, zero map %d bytes", d.BytesRead, d.HostZeroBytes)
			if tc.mapped {
				if warned {
					t.Errorf("warnings %q", rep.Warnings)
				}
				if d.HostZeroBytes != fi.Size()-data {
					t.Errorf("zero map: %d bytes zero, want %d", d.HostZeroBytes, fi.Size()-data)
				}
				// The copy reads the data blocks; inspection reads some
				// metadata (through 256 KiB cache blocks) on top: some 33 MiB
				// of this guest, with or without the map.
				if d.BytesRead < data || d.BytesRead > data+40<<20 {
					t.Errorf("read %d bytes over SSH, want the %d data bytes (+ at most 40 MiB of inspection)", d.BytesRead, data)
				}
			} else {
				if !warned {
					t.Errorf("no warning that the zero map was not taken: %q", rep.Warnings)
				}
				if d.HostZeroBytes != 0 || d.BytesRead < fi.Size() {
					t.Errorf("fallback: read %d of %d bytes, zero map %d", d.BytesRead, fi.Size(), d.HostZeroBytes)
				}
			}
		})
	}
}
