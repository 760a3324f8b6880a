package guestgen

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// initrdSpec is what a nash initrd for one kernel release holds.
type initrdSpec struct {
	Release string
	Modules []*module // insmod'ed in this order
	LVM     bool
	// LVMFilter: the initrd's lvm.conf accepts only Xen disks.
	LVMFilter bool
	// ExtraVGs are volume groups activated after the root's.
	ExtraVGs []string
	RootDev  string // mkrootdev's device
	SwapDev  string // resume's device
}

// nashScript is the /init of a RHEL 5 mkinitrd initrd: proc, sys and /dev
// set up, the modules loaded, LVM activated, the root mounted and
// switched to.
func nashScript(s initrdSpec) string {
	var b strings.Builder
	b.WriteString("#!/bin/nash\n\n")
	b.WriteString(debugBanner(s.Release))
	b.WriteString("mount -t proc /proc /proc\nsetquiet\necho Mounting proc filesystem\n" +
		"echo Mounting sysfs filesystem\nmount -t sysfs /sys /sys\necho Creating /dev\n" +
		"mount -o mode=0755 -t tmpfs /dev /dev\nmkdir /dev/pts\n" +
		"mount -t devpts -o gid=5,mode=620 /dev/pts /dev/pts\nmkdir /dev/shm\nmkdir /dev/mapper\n" +
		"echo Creating initial device nodes\n")
	for _, n := range devNodes {
		fmt.Fprintf(&b, "mknod /%s %c %d %d\n", n.Name, n.kind(), n.Major, n.Minor)
	}
	b.WriteString("echo Setting up hotplug.\nhotplug\necho Creating block device nodes.\nmkblkdevs\n")
	for _, m := range s.Modules {
		f := filepath.Base(m.Rel)
		fmt.Fprintf(&b, "echo \"Loading %s module\"\ninsmod /lib/%s \n", f, f)
	}
	b.WriteString("echo Waiting for driver initialization.\nstabilized --hash --interval 250 /proc/scsi/scsi\nmkblkdevs\n")
	if s.LVM {
		var vgs []string
		if strings.Count(s.RootDev, "/") == 3 {
			vgs = append(vgs, strings.Split(strings.TrimPrefix(s.RootDev, "/dev/"), "/")[0])
		}
		vgs = append(vgs, s.ExtraVGs...)
		b.WriteString("echo Scanning logical volumes\nlvm vgscan --ignorelockingfailure\n")
		for _, vg := range vgs {
			fmt.Fprintf(&b, "echo Activating logical volumes\nlvm vgchange -ay --ignorelockingfailure  %s\n", vg)
		}
	}
	fmt.Fprintf(&b, "resume %s\necho Creating root device.\nmkrootdev -t ext3 -o defaults,ro %s\n", s.SwapDev, s.RootDev)
	b.WriteString("echo Mounting root filesystem.\nmount /sysroot\necho Setting up other filesystems.\nsetuproot\n" +
		"echo Switching to new root and running init.\nswitchroot\n")
	return b.String()
}

// devNode is a device node RHEL 5's initrd carries in /dev.
type devNode struct {
	Name         string
	Block        bool
	Major, Minor uint32
}

func (n devNode) kind() byte {
	if n.Block {
		return 'b'
	}
	return 'c'
}

var devNodes = func() []devNode {
	ns := []devNode{{"dev/null", false, 1, 3}, {"dev/zero", false, 1, 5}, {"dev/systty", false, 4, 0},
		{"dev/tty", false, 5, 0}, {"dev/console", false, 5, 1}, {"dev/ptmx", false, 5, 2},
		{"dev/rtc", false, 10, 135}}
	for i := uint32(0); i <= 12; i++ {
		ns = append(ns, devNode{fmt.Sprintf("dev/tty%d", i), false, 4, i})
	}
	for i := uint32(0); i <= 3; i++ {
		ns = append(ns, devNode{fmt.Sprintf("dev/ttyS%d", i), false, 4, 64 + i})
	}
	return ns
}()

// initrdLVMConf is the initrd's /etc/lvm/lvm.conf: there is no udev in
// the initrd, so LVM scans /dev itself and makes its own device nodes.
const initrdLVMConf = `# LVM settings for the initrd, which runs no udev daemon
devices {
	dir = "/dev"
	scan = [ "/dev" ]
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
	use_devicesfile = 0
	write_cache_state = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	verify_udev_operations = 1
	monitoring = 0
}
global {
	use_lvmpolld = 0
}
`

// xenOnlyFilter is the lvm.conf filter of a guest whose LVM may see only
// its Xen disks.
const xenOnlyFilter = "\t# Only the Xen disks: never the host's own volumes.\n\tfilter = [ \"a|^/dev/xvd[a-z]+[0-9]*$|\", \"r|.*|\" ]\n"

// buildInitrd writes a gzip'ed newc initrd: /init (the nash script),
// /bin/nash (the busybox shim), busybox, the modules in /lib, the device
// nodes, and with LVM the host's lvm binary with its shared libraries.
func buildInitrd(ctx context.Context, w io.Writer, s initrdSpec, busybox string) error {
	var es []cpioEntry
	dirs := map[string]bool{}
	addDir := func(name string) {
		for d := name; d != "." && d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			es = append(es, cpioEntry{Name: d, Mode: sIFDIR | 0o755})
		}
	}
	addFile := func(name string, mode uint32, data []byte) {
		addDir(filepath.Dir(name))
		es = append(es, cpioEntry{Name: name, Mode: sIFREG | mode, Data: data})
	}
	addHostFile := func(name, src string, mode uint32) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		addFile(name, mode, data)
		return nil
	}
	for _, d := range []string{"bin", "dev", "etc", "lib", "proc", "sys", "sysroot", "run/lock", "tmp"} {
		addDir(d)
	}
	es = append(es,
		cpioEntry{Name: "sbin", Mode: sIFLNK | 0o777, Data: []byte("bin")},
		cpioEntry{Name: "bin/modprobe", Mode: sIFLNK | 0o777, Data: []byte("nash")},
		cpioEntry{Name: "bin/hotplug", Mode: sIFLNK | 0o777, Data: []byte("nash")})
	for _, n := range devNodes {
		mode := uint32(sIFCHR | 0o600)
		if n.Block {
			mode = sIFBLK | 0o600
		}
		es = append(es, cpioEntry{Name: n.Name, Mode: mode, Major: n.Major, Minor: n.Minor})
	}
	addFile("init", 0o755, []byte(nashScript(s)))
	addFile("bin/nash", 0o755, []byte(skel("nash")))
	if err := addHostFile("bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	for _, m := range s.Modules {
		if err := addHostFile("lib/"+filepath.Base(m.Rel), m.Src, 0o644); err != nil {
			return err
		}
	}
	if s.LVM {
		files, err := lvmFiles(ctx)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := addHostFile(f.name, f.src, 0o755); err != nil {
				return err
			}
		}
		conf := initrdLVMConf
		if s.LVMFilter {
			conf = strings.Replace(conf, "devices {\n", "devices {\n"+xenOnlyFilter, 1)
		}
		addFile("etc/lvm/lvm.conf", 0o644, []byte(conf))
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	if err := writeCpio(zw, es, 1257000000); err != nil {
		return err
	}
	return zw.Close()
}

type hostFile struct{ name, src string }

// lvmFiles lists the host's lvm binary (as bin/lvm) and the shared
// libraries ldd says it loads, at the paths the dynamic linker wants.
func lvmFiles(ctx context.Context) ([]hostFile, error) {
	lvm, err := exec.LookPath("lvm")
	if err != nil {
		for _, p := range []string{"/sbin/lvm", "/usr/sbin/lvm"} {
			if _, serr := os.Stat(p); serr == nil {
				lvm, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the LVM initrd needs the host's lvm binary (install lvm2): %w", err)
	}
	cmd := exec.CommandContext(ctx, "ldd", lvm)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", lvm, err, bytes.TrimSpace(stderr.Bytes()))
	}
	files := []hostFile{{"bin/lvm", lvm}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var p string
		switch {
		case len(f) >= 3 && f[1] == "=>":
			p = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			p = f[0]
		}
		if strings.HasPrefix(p, "/") {
			files = append(files, hostFile{strings.TrimPrefix(p, "/"), p})
		}
	}
	return files, nil
}
