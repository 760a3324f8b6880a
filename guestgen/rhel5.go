package guestgen

// Pieces of real RHEL 5 guests that a migration to KVM breaks unless the
// conversion handles them: rc.local loading the Xen PV drivers by path
// (kmod-xenpv) and kdump dumping to a Xen disk.

import (
	"path/filepath"
	"strings"
)

// rcLocal is RHEL 5's /etc/rc.d/rc.local, with the lines that load
// kmod-xenpv's drivers by hand (for the non-Xen kernel rel).
func rcLocal(rel string) string {
	dir := "/lib/modules/" + rel + "/extra/xenpv"
	return `#!/bin/sh
#
# This script will be executed *after* all the other init scripts.
# You can put your own initialization stuff in here if you don't
# want to do the full Sys V style init stuff.

touch /var/lock/subsys/local
# Xen PV drivers (kmod-xenpv)
insmod ` + dir + `/xen-vbd.ko
insmod ` + dir + `/xen-vnif.ko
`
}

// kdumpConf is /etc/kdump.conf dumping to an ext3 filesystem on a Xen
// disk.
const kdumpConf = `# Configures where to put the kdump /proc/vmcore files
#
# This file contains a series of commands to perform (in order) when a
# kernel crash has happened and the kdump kernel has been loaded.
#
# raw <partition>     - will dd /proc/vmcore into <partition>.
# ext3 <partition>    - will mount the partition and copy /proc/vmcore
#                       to the path below.
# path <path>         - the directory on the dump target, /var/crash
#                       by default.
# core_collector makedumpfile <options>
#
ext3 /dev/xvda1
path /crash
core_collector makedumpfile -c --message-level 1
`

// xenPVFiles are kmod-xenpv's drivers as the test kernel's modules: on
// KVM, insmod of either fails (no Xen platform), as RHEL's do.
var xenPVFiles = map[string]string{
	"xen-vbd.ko":  "kernel/drivers/block/xen-blkfront.ko",
	"xen-vnif.ko": "kernel/drivers/net/xen-netfront.ko",
}

// rhel5Pieces adds the spec's RHEL 5 pieces to the root tree; modDir is
// the test kernel's module directory.
func rhel5Pieces(t *tree, s Spec, modDir string) {
	if s.XenPVModules {
		rel := ""
		for _, k := range s.Kernels {
			if !IsXen(k) {
				rel = k
				break
			}
		}
		for dst, src := range xenPVFiles {
			t.copy(filepath.Join("lib/modules", rel, "extra/xenpv", dst), filepath.Join(modDir, src), 0o744)
		}
		t.file("etc/rc.d/rc.local", 0o755, rcLocal(rel))
		t.link("etc/rc.local", "rc.d/rc.local")
		for _, lvl := range []string{"2", "3", "4", "5"} {
			t.link("etc/rc.d/rc"+lvl+".d/S99local", "../rc.local")
		}
	}
	if s.RPMDB {
		t.file("bin/rpm", 0o755, skel("rpm"))
		t.file("var/lib/rpm/Packages", 0o644, rpmPackages(s))
	}
	if s.Kdump {
		t.file("etc/kdump.conf", 0o644, kdumpConf)
		t.file("etc/rc.d/init.d/kdump", 0o755, skel("kdump"))
		for _, lvl := range []string{"2", "3", "4", "5"} {
			t.link("etc/rc.d/rc"+lvl+".d/S20kdump", "../init.d/kdump")
		}
		for _, lvl := range []string{"0", "1", "6"} {
			t.link("etc/rc.d/rc"+lvl+".d/K88kdump", "../init.d/kdump")
		}
	}
}

// rpmPackages is the rpm stand-in's database: a few base packages and
// one entry per installed kernel (kernel-xen-2.6.18-164.el5 for
// 2.6.18-164.el5xen).
func rpmPackages(s Spec) string {
	var b strings.Builder
	b.WriteString("centos-release-5-4.el5.centos.1\nbash-3.2-24.el5\ninitscripts-8.45.30-2.el5.centos\nkudzu-1.2.57.1.21-1.el5.centos\n")
	for _, k := range s.Kernels {
		pkg, rel := "kernel", k
		for _, f := range []string{"xen", "debug", "PAE"} {
			if r, ok := strings.CutSuffix(k, f); ok {
				pkg, rel = "kernel-"+f, r
				break
			}
		}
		b.WriteString(pkg + "-" + rel + "\n")
	}
	return b.String()
}

// debugBanner is what a debug kernel (kernel-debug, a release ending in
// "debug") prints early in its boot and a production one does not: its
// lock dependency validator. The guests' kernels are all the test kernel,
// so a debug release's initrd prints it in the kernel's place (nash
// echo lines, kept when the initrd is rebuilt).
func debugBanner(release string) string {
	if !strings.HasSuffix(release, "debug") {
		return ""
	}
	return "echo \"Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar\"\n" +
		"echo \"... MAX_LOCKDEP_SUBCLASSES:    8\"\necho \"... MAX_LOCK_DEPTH:          30\"\n" +
		"echo \" memory used by lock dependency info: 1120 kB\"\n"
}
