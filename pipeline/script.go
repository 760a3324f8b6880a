package pipeline

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
)

// dirMarker stands for the script's own folder in a QEMU argv until the
// argv is quoted for the shell.
const dirMarker = "\x00XEN2KVM_DIR\x00"

// relocate returns a copy of k whose image paths in dir are rewritten to
// dirMarker/NAME, so the launch script finds them next to itself from
// whatever the current directory is, and after the folder is moved.
func relocate(k *config.KVMDomain, dir string) *config.KVMDomain {
	c := *k
	c.Disks = append([]config.KVMDisk(nil), k.Disks...)
	for i := range c.Disks {
		if p := c.Disks[i].Path; p != "" && (filepath.Dir(p) == dir || filepath.Dir(p) == ".") {
			c.Disks[i].Path = dirMarker + "/" + filepath.Base(p)
		}
	}
	for _, p := range []*string{&c.Kernel, &c.Initrd} {
		if *p != "" && (filepath.Dir(*p) == dir || filepath.Dir(*p) == ".") {
			*p = dirMarker + "/" + filepath.Base(*p)
		}
	}
	return &c
}

// launchScript writes a POSIX shell script that runs argv (argv[0] is the
// QEMU binary) with every dirMarker replaced by the script's folder.
// Extra arguments given to the script are passed on to QEMU.
func launchScript(name string, argv []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `#!/bin/sh
# Runs the KVM guest %s, migrated from Xen by xen2kvm.
# The disk images are found next to this script, from any current directory.
# Extra arguments are passed to QEMU, e.g.:  %s.sh -display none
# ACCEL=tcg selects the accelerator (default: kvm when /dev/kvm is usable;
# use ACCEL=tcg on a host where KVM guests hang, as under some nested setups).
set -eu
dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
# QEMU option values are comma-separated: a comma in the folder is doubled.
qdir=$(printf '%%s' "$dir" | sed 's/,/,,/g')
if [ -z "${ACCEL:-}" ]; then
	if [ -w /dev/kvm ]; then ACCEL=kvm; else ACCEL=tcg; fi
fi
exec`, name, name)
	// One line per option and its value.
	for i := 0; i < len(argv); i++ {
		if i > 0 {
			b.WriteString(" \\\n\t")
		} else {
			b.WriteString(" ")
		}
		b.WriteString(shellArg(argv[i]))
		if i > 0 && strings.HasPrefix(argv[i], "-") && i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
			i++
			b.WriteString(" " + shellArg(argv[i]))
		}
	}
	b.WriteString(` \
	-accel "$ACCEL" "$@"
`)
	return b.Bytes()
}

// shellArg quotes one argument for the shell, turning each dirMarker into
// the script's folder: "$dir" in a plain path, "$qdir" (commas doubled)
// inside a QEMU key=value option.
func shellArg(a string) string {
	parts := strings.Split(a, dirMarker)
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			if strings.Contains(a, "=") {
				b.WriteString(`"$qdir"`)
			} else {
				b.WriteString(`"$dir"`)
			}
		}
		if p != "" || len(parts) == 1 {
			b.WriteString(quote(p))
		}
	}
	return b.String()
}

func quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:@+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
