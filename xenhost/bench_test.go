package xenhost_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// BenchmarkDiskRead reads a 256 MiB file over SFTP through Disk.ReadAt as
// diskimg.Convert does (4 workers, 1 MiB chunks), against a server with
// OpenSSH 4.3's algorithms and one with sshd's defaults.
func BenchmarkDiskRead(b *testing.B) {
	const size = 256 << 20
	p := filepath.Join(b.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		f.WriteAt(buf, off)
	}
	f.Close()
	for _, modern := range []bool{false, true} {
		b.Run(fmt.Sprintf("modern=%v", modern), func(b *testing.B) {
			srv := testsshd.Start(b, testsshd.Options{Modern: modern})
			u, _ := xenhost.ParseURL(srv.URL(""))
			h, err := xenhost.Dial(context.Background(), u, xenhost.Options{Identities: []string{srv.KeyPath}, KnownHosts: srv.KnownHostsPath, NoAgent: true, Warn: func(string) {}})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			d, err := h.OpenDisk(context.Background(), p)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			alg, _ := h.Algorithms()
			b.Logf("%s %s %s", alg.KeyExchange, alg.Read.Cipher, alg.Read.MAC)
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				var g errgroup.Group
				g.SetLimit(4)
				for off := int64(0); off < size; off += 1 << 20 {
					g.Go(func() error {
						_, err := d.ReadAt(make([]byte, 1<<20), off)
						return err
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
