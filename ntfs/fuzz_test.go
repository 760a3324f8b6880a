package ntfs_test

import (
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/ntfs"
)

// FuzzOpen feeds damaged volumes to Open and the lookups inspection
// makes: they must return errors, not panic.
func FuzzOpen(f *testing.F) {
	boot := make([]byte, 64<<10)
	copy(boot[3:], "NTFS    ")
	boot[0x0b], boot[0x0c], boot[0x0d] = 0, 2, 8 // 512-byte sectors, 8 per cluster
	boot[0x30] = 4                               // $MFT at cluster 4
	boot[0x40] = 0xf6                            // 1024-byte records
	boot[510], boot[511] = 0x55, 0xaa
	f.Add(boot)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ntfs.Open(&testutil.MemDev{B: b})
		if err != nil {
			return
		}
		_, _ = v.Dirty()
		_ = v.IsDir("Windows/System32/config")
		_, _ = v.ReadFile("boot.ini")
		_, _ = v.File("Windows/System32/config/SYSTEM")
		_, _ = v.RealPath("windows/system32")
	})
}
