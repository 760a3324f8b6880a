package convert

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/hive"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestViostorHiveFull plans the viostor boot entries in a SYSTEM hive
// whose free space is used up: the plan is refused with ErrHiveFull,
// saying how to go on, and planning on a hive with room succeeds.
func TestViostorHiveFull(t *testing.T) {
	p := testutil.MergeReg(t, hive.New("SYSTEM"), "[\\Select]\n\"Current\"=dword:00000001\n\n"+
		"[\\ControlSet001]\n\n[\\ControlSet001\\Control]\n\n[\\ControlSet001\\Control\\CriticalDeviceDatabase]\n\n[\\ControlSet001\\Services]\n\n[\\ControlSet001\\Services\\atapi]\n\"Start\"=dword:00000000\n\n")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	roomy, err := hive.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	edits, err := planSystem(roomy, WindowsOptions{Viostor: true})
	if err != nil {
		t.Fatalf("planning with room: %v", err)
	}
	if want := len(viostorPCIIDs)*2 + 5; len(edits) != want {
		t.Errorf("%d edits, want %d: %v", len(edits), want, edits)
	}

	full, _ := hive.Parse(b)
	for _, size := range []int{1024, 64, 4} { // use up the free cells
		for i := 0; ; i++ {
			if err := full.AddValue(full.Root(), fmt.Sprintf("pad%d-%d", size, i), hive.Binary, make([]byte, size)); err != nil {
				break
			}
		}
	}
	before := full.Bytes()
	_, err = planSystem(full, WindowsOptions{Viostor: true})
	if !errors.Is(err, ErrHiveFull) || !errors.Is(err, hive.ErrNoRoom) || !strings.Contains(err.Error(), "--skip-rule "+RuleWinViostor) {
		t.Errorf("planning in a full hive: %v", err)
	}
	if got := full.Bytes(); len(got) != len(before) {
		t.Errorf("the hive grew from %d to %d bytes", len(before), len(got))
	}
	// Without the rule, nothing is added and the full hive is fine.
	plain, _ := hive.Parse(before)
	if edits, err := planSystem(plain, WindowsOptions{Viostor: true, Disabled: map[string]bool{RuleWinViostor: true}}); err != nil || len(edits) != 0 {
		t.Errorf("skipping the rule: %v, %v", edits, err)
	}
	if !bytes.Equal(plain.Bytes(), before) {
		t.Error("a plan without edits changed the hive")
	}
}
