// Package wintest builds the Windows guests the tests use
// (guestgen.BuildWindows), skipping a test (failing it under CI) when the
// tools or root are missing.
package wintest

import (
	"context"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// Build builds w into a temporary folder of t.
func Build(t testing.TB, w guestgen.WindowsSpec) *guestgen.Guest {
	t.Helper()
	for _, tool := range guestgen.WindowsTools {
		testutil.NeedTool(t, tool)
	}
	testutil.NeedTool(t, "ntfsinfo")
	testutil.NeedRoot(t, "building an NTFS fixture needs root for the ntfs-3g mount")
	g, err := guestgen.BuildWindows(context.Background(), t.TempDir(), w)
	if err != nil {
		t.Fatalf("building Windows guest %s: %v", w.Name, err)
	}
	return g
}
