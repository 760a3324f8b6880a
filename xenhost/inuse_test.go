package xenhost_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// TestDiskOpenForWriting: a guest whose disk some process on the host has
// open for writing (O_RDWR, or O_WRONLY through a symbolic link the
// config names) is refused, naming guest, host, disk and process, found
// by reading /proc over SFTP; readers do not count.
func TestDiskOpenForWriting(t *testing.T) {
	img, _ := sparseImage(t, 8<<20)
	img2, _ := sparseImage(t, 8<<20)
	link := filepath.Join(t.TempDir(), "disk-link.img")
	if err := os.Symlink(img2, link); err != nil {
		t.Fatal(err)
	}
	cfg2 := []byte(strings.NewReplacer("NAME", "db02", "IMG", link).Replace(cfgTmpl))
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{
		{Name: "web01", Config: guestCfg("web01", img)},
		{Name: "db02", Config: cfg2},
	}})
	h, _ := dial(t, srv, nil)
	ctx := context.Background()
	guests := map[string]*xenhost.Guest{}
	for _, name := range []string{"web01", "db02"} {
		start := time.Now()
		g, err := h.Guest(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: config read in %v", name, time.Since(start).Round(time.Millisecond))
		guests[name] = g
	}
	check := func(name string) error {
		t.Helper()
		g := guests[name]
		start := time.Now()
		warns, err := h.CheckDisksIdle(ctx, g)
		t.Logf("%s: /proc scanned in %v", name, time.Since(start).Round(time.Millisecond))
		if len(warns) != 0 {
			t.Errorf("%s: warnings %q (the test runs as root: every process is readable)", name, warns)
		}
		return err
	}

	testutil.HoldOpen(t, "<", img) // a reader, as xen2kvm's own sftp-server is
	if err := check("web01"); err != nil {
		t.Fatalf("disk open read-only only: %v", err)
	}
	writer := testutil.HoldOpen(t, "<>", img)
	err := check("web01")
	var ue *xenhost.DiskInUseError
	if !errors.As(err, &ue) || !errors.Is(err, xenhost.ErrDiskInUse) || !errors.Is(err, xenhost.ErrRunning) {
		t.Fatalf("disk open read-write: %v, want a DiskInUseError", err)
	}
	if ue.PID != writer || ue.Command != "sleep" || ue.Disk != img || ue.Guest != "web01" || ue.Host != srv.Addr {
		t.Errorf("DiskInUseError %+v, want pid %d (sleep), disk %s, guest web01, host %s", ue, writer, img, srv.Addr)
	}
	for _, s := range []string{"web01", srv.Addr, img, strconv.Itoa(writer)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}

	// Through the symbolic link the config names, write-only (>>).
	if err := check("db02"); err != nil {
		t.Fatalf("db02 before: %v", err)
	}
	appender := testutil.HoldOpen(t, ">>", img2)
	if err := check("db02"); !errors.As(err, &ue) || ue.PID != appender || ue.Disk != link {
		t.Errorf("disk open write-only behind a symlink: %v, want pid %d, disk %s", err, appender, link)
	}
}
