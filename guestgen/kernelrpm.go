package guestgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/xen2kvm/xen2kvm/internal/atomicfile"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
)

// KernelRPM writes the kernel package of a non-Xen release
// ("2.6.18-164.el5") into dir and returns its path,
// DIR/kernel-2.6.18-164.el5.x86_64.rpm: what xen2kvm migrate --kernel-rpm
// installs into a guest that has only Xen kernels. It holds the test
// kernel as /boot/vmlinuz-RELEASE with its config, and the filesystem,
// ACPI and virtio modules under /lib/modules/RELEASE, without a
// modules.dep (the package's %post makes it). The layout is rpm's: a
// lead, an empty signature header, a header naming the package, a gzip'ed
// newc payload.
func KernelRPM(ctx context.Context, dir, release string) (string, error) {
	version, rel, ok := strings.Cut(release, "-")
	if !ok || !releaseRe.MatchString(release) || IsXen(release) {
		return "", fmt.Errorf("%w: kernel RPM release %q: want a non-Xen release, 2.6.18-164.el5", ErrInvalidSpec, release)
	}
	k, err := testkernel.Get(ctx)
	if err != nil {
		return "", fmt.Errorf("getting the test kernel: %w", err)
	}
	debConfig, err := os.ReadFile(k.Config)
	if err != nil {
		return "", err
	}
	vmlinuz, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		return "", err
	}
	var es []cpioEntry
	add := func(name string, mode uint32, data []byte) {
		es = append(es, cpioEntry{Name: "./" + name, Mode: sIFREG | mode, Data: data})
	}
	add("boot/vmlinuz-"+release, 0o755, vmlinuz)
	add("boot/config-"+release, 0o644, []byte(kernelConfig(string(debConfig), release)))
	mods, err := loadModules(k.ModulesDir, fsModules, acpiModules, virtioModules)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(mods))
	for n := range mods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(mods[n].Src)
		if err != nil {
			return "", err
		}
		add("lib/modules/"+release+"/"+mods[n].Rel, 0o744, data)
	}
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	if err := writeCpio(zw, es, 1257000000); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}

	const arch = "x86_64"
	pkg := RPM("kernel", version, rel, arch, payload.Bytes())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "kernel-"+release+"."+arch+".rpm")
	if err := atomicfile.WriteFile(p, pkg, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// RPM lays out a binary package the way rpmbuild does around payload, a
// gzip'ed newc cpio archive: a v3 lead, an empty signature header, and a
// header with the tags a reader needs (name, version, release, arch,
// payload format and compressor).
func RPM(name, version, release, arch string, payload []byte) []byte {
	var out bytes.Buffer
	lead := make([]byte, 96)
	binary.BigEndian.PutUint32(lead[0:], 0xedabeedb)
	lead[4], lead[5] = 3, 0                         // format 3.0
	binary.BigEndian.PutUint16(lead[8:], 1)         // a binary package for x86
	copy(lead[10:76], name+"-"+version+"-"+release) // NAME-VERSION-RELEASE
	binary.BigEndian.PutUint16(lead[76:], 1)        // Linux
	binary.BigEndian.PutUint16(lead[78:], 5)        // a header-style signature follows
	out.Write(lead)
	out.Write(rpmHeader(nil, nil)) // the signature: empty, 16 bytes, aligned
	out.Write(rpmHeader([]int32{1000, 1001, 1002, 1022, 1124, 1125},
		[]string{name, version, release, arch, "cpio", "gzip"}))
	out.Write(payload)
	return out.Bytes()
}

// rpmHeader is an rpm header structure of STRING tags.
func rpmHeader(tags []int32, values []string) []byte {
	var index, data bytes.Buffer
	for i, tag := range tags {
		binary.Write(&index, binary.BigEndian, [4]int32{tag, 6, int32(data.Len()), 1})
		data.WriteString(values[i] + "\x00")
	}
	var h bytes.Buffer
	binary.Write(&h, binary.BigEndian, [4]uint32{0x8eade801, 0, uint32(len(tags)), uint32(data.Len())})
	h.Write(index.Bytes())
	h.Write(data.Bytes())
	return h.Bytes()
}
