package kvmrun

import (
	"testing"

	"github.com/xen2kvm/xen2kvm/config"
)

func TestTCGTimerWorkaround(t *testing.T) {
	tests := []struct {
		name       string
		dom        config.KVMDomain
		qo         config.QEMUOptions
		wantKernel string
		wantAppend string
	}{
		{"override cmdline", config.KVMDomain{}, config.QEMUOptions{Kernel: "/k", Append: "ro root=/dev/vda2"}, "/k", "ro root=/dev/vda2 no_timer_check"},
		{"domain kernel", config.KVMDomain{Kernel: "/dk", Initrd: "/di", Cmdline: "console=ttyS0"}, config.QEMUOptions{}, "/dk", "console=ttyS0 no_timer_check"},
		{"already there", config.KVMDomain{}, config.QEMUOptions{Kernel: "/k", Append: "no_timer_check ro"}, "/k", "no_timer_check ro"},
		{"BIOS boot untouched", config.KVMDomain{}, config.QEMUOptions{}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			qo := tc.qo
			tcgTimerWorkaround(&tc.dom, &qo)
			if qo.Kernel != tc.wantKernel || qo.Append != tc.wantAppend {
				t.Errorf("got kernel %q append %q, want %q %q", qo.Kernel, qo.Append, tc.wantKernel, tc.wantAppend)
			}
		})
	}
}
