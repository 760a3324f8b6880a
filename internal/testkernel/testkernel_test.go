package testkernel

import (
	"os"
	"testing"
)

func TestGet(t *testing.T) {
	k := ForTest(t)
	for _, p := range []string{k.Vmlinuz, k.Config, k.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%v", err)
		}
	}
	if k.Release == "" {
		t.Error("empty release")
	}
}
