package convert

import "testing"

func TestKernelPackage(t *testing.T) {
	tests := []struct {
		rel, pkg string
		debug    bool
	}{
		{"2.6.18-164.el5", "kernel", false},
		{"2.6.18-164.el5xen", "kernel-xen", false},
		{"2.6.18-164.el5PAE", "kernel-PAE", false},
		{"2.6.18-164.el5debug", "kernel-debug", true},
		{"2.6.9-89.EL", "kernel", false},
		{"2.6.9-89.ELsmp", "kernel-smp", false},
		{"2.6.9-89.ELxenU", "kernel-xenU", false},
		{"2.6.32-71.el6.x86_64", "kernel", false},
		{"2.6.32-71.el6.x86_64.debug", "kernel-debug", true},
		{"2.6.32-71.el6.i686", "kernel", false},
	}
	for _, tc := range tests {
		pkg, debug := kernelPackage(tc.rel)
		if pkg != tc.pkg || debug != tc.debug {
			t.Errorf("kernelPackage(%q) = %q, %v; want %q, %v", tc.rel, pkg, debug, tc.pkg, tc.debug)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"2.6.18-164.el5", "2.6.18-128.el5", 1},
		{"2.6.18-8.el5", "2.6.18-128.el5", -1},
		{"2.6.18-164.el5", "2.6.18-164.el5", 0},
		{"2.6.18-164.2.1.el5", "2.6.18-164.el5", 1},
		{"2.6.32-71.el6.x86_64", "2.6.18-164.el5", 1},
		{"2.6.9-89.EL", "2.6.9-89.ELsmp", -1},
		{"1.010", "1.9", 1},
	}
	for _, tc := range tests {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestRemap(t *testing.T) {
	r := newRemapper(map[string]string{"xvda": "vda", "xvdb": "vdb", "sdc1": "vdc"})
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/dev/xvda2", "/dev/vda2", true},
		{"xvdb", "vdb", true},
		{"/dev/hda1", "/dev/vda1", true}, // the same disk under the IDE scheme
		{"/dev/sdc1", "/dev/vdc", true},  // a partition exported as a disk
		{"/dev/sdc2", "/dev/sdc2", false},
		{"/dev/xvdc", "/dev/xvdc", false},
		{"/dev/vda2", "/dev/vda2", false},
		{"LABEL=/", "LABEL=/", false},
		{"UUID=abc", "UUID=abc", false},
		{"/dev/VolGroup00/LogVol00", "/dev/VolGroup00/LogVol00", false},
		{"/dev/mapper/cryptdata", "/dev/mapper/cryptdata", false},
	}
	for _, tc := range tests {
		got, ok := r.remap(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("remap(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
