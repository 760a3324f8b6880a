package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// TestSSHDiskOpenForWriting: a guest that xm lists as off but whose disk
// a process on the host holds open read-write is refused, naming guest,
// host, disk and pid; --force-running goes on and says so in the report
// (with --host-zero-map, that the zero map is crash-consistent too).
func TestSSHDiskOpenForWriting(t *testing.T) {
	testutil.NeedTool(t, "/usr/sbin/sshd")
	img := filepath.Join(t.TempDir(), "web01.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	before := testutil.HashFile(t, img)
	cfg := "name = \"web01\"\nmemory = 256\nbootloader = \"/usr/bin/pygrub\"\ndisk = [ \"tap:aio:" + img + ",xvda,w\" ]\n"
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: "web01", Config: []byte(cfg)}}})

	pid := testutil.HoldOpen(t, "<>", img)

	ctx := context.Background()
	opts := pipeline.Options{OutDir: filepath.Join(t.TempDir(), "kvm"), Boot: pipeline.BootNever}
	opts.DryRun = true
	opts.SSH = sshOptions(srv)
	_, err := pipeline.Migrate(ctx, srv.URL("web01"), opts)
	var ue *xenhost.DiskInUseError
	if !errors.As(err, &ue) || !errors.Is(err, xenhost.ErrRunning) {
		t.Fatalf("disk open for writing: %v, want a DiskInUseError", err)
	}
	for _, s := range []string{"web01", srv.Addr, img, "process " + strconv.Itoa(pid) + " (sleep)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}

	opts.ForceRunning = true
	res, err := pipeline.Migrate(ctx, srv.URL("web01"), opts)
	if res == nil {
		t.Fatalf("--force-running: no result: %v", err)
	}
	warned := false
	for _, w := range res.Report.Warnings {
		warned = warned || strings.Contains(w, "open for writing") && strings.Contains(w, "--force-running")
	}
	if !warned {
		t.Errorf("--force-running: the report does not warn that the disk was open for writing: %q (err %v)", res.Report.Warnings, err)
	}

	// With the host's zero map (a real run: a dry run takes no map), the
	// warning says the map is only crash-consistent too. The empty disk
	// holds no guest, so the migration fails after the warning.
	opts.DryRun, opts.HostZeroMap = false, true
	res, err = pipeline.Migrate(ctx, srv.URL("web01"), opts)
	if res == nil {
		t.Fatalf("--force-running --host-zero-map: no result: %v", err)
	}
	warned = false
	for _, w := range res.Report.Warnings {
		warned = warned || strings.Contains(w, "--force-running") && strings.Contains(w, "zero map")
	}
	if !warned {
		t.Errorf("--force-running --host-zero-map: no warning that the zero map is crash-consistent: %q (err %v)", res.Report.Warnings, err)
	}
	if testutil.HashFile(t, img) != before {
		t.Error("the source changed")
	}
}
