// Package virtiowin stages the virtio drivers for a migrated Windows guest
// without a helper VM: it reads the virtio-win driver set (the ISO or a
// folder, in the layout since 0.1.100 or before it, or the virtio-win
// RPM's /usr/share/virtio-win with its ISO or drivers/ tree), finds the
// viostor and NetKVM drivers for the guest's Windows version and
// architecture, and writes a small FAT32 disk (with
// github.com/diskfs/go-diskfs) holding a first-boot script that installs
// them. The script is meant to be registered in the guest's RunOnce key.
//
//	src, err := virtiowin.Open("/srv/iso/virtio-win.iso")
//	drv, err := src.Drivers("6.0", "AMD64")
//	err = virtiowin.WriteDisk("/srv/kvm/w2k8-hdd.raw", src, drv)
package virtiowin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Errors callers branch on.
var (
	// ErrNotVirtioWin: the path is neither an ISO nor a folder holding
	// viostor and NetKVM.
	ErrNotVirtioWin = errors.New("not a virtio-win driver set")
	// ErrNoDrivers: the set has no driver for the guest's Windows.
	ErrNoDrivers = errors.New("no virtio driver for this Windows")
)

// Layout is how a driver set arranges its folders.
type Layout int

// The layouts Open recognises.
const (
	// PerDriver: DRIVER/OS/ARCH (viostor/2k8/amd64), one folder per
	// driver, the virtio-win ISO and folder since build 0.1.100.
	PerDriver Layout = iota
	// RPMTree: ARCH/WinOS (amd64/Win2008), every driver of one Windows
	// flat in one folder, the drivers/ tree that the RHEL 6 and 7
	// virtio-win RPMs install in /usr/share/virtio-win (and, as ARCH/OS,
	// amd64/2k8, the later RPMs' drivers/by-os).
	RPMTree
	// OldISO: OS/ARCH (WLH/AMD64), folders named after the Windows
	// build (WNET 2003, WLH Vista/2008, XP, VISTA, WIN7), several drivers
	// flat in each, the virtio-win ISOs before 0.1.100.
	OldISO
)

func (l Layout) String() string {
	return [...]string{"DRIVER/OS/ARCH (virtio-win 0.1.100 and later)", "drivers/ARCH/WinOS (virtio-win RPM)", "OS/ARCH (virtio-win ISO before 0.1.100)"}[l]
}

// Source is an opened virtio-win driver set.
type Source struct {
	// Path is the ISO or folder the drivers are read from: for the
	// virtio-win RPM's folder (/usr/share/virtio-win) the ISO in it or
	// its drivers/ folder.
	Path string
	// ISO tells an ISO image (attached to the guest as a CD-ROM); a
	// folder's drivers are copied onto the first-boot disk instead.
	ISO    bool
	Layout Layout
	fsys   fs.FS
	f      *os.File
	// alt is the RPM folder's drivers/ tree when its ISO was chosen:
	// Drivers falls back to it when the ISO lacks the guest's drivers.
	alt *Source
}

// oldOSFolders are the top folders of the virtio-win ISOs before 0.1.100.
var oldOSFolders = []string{"WNET", "WLH", "WXP", "XP", "VISTA", "WIN7", "WIN8"}

// Open opens a virtio-win driver set: an ISO, or a folder in one of the
// Layouts, or the virtio-win RPM's folder (/usr/share/virtio-win), where
// it takes virtio-win.iso (or the only virtio-win*.iso) and keeps the
// drivers tree beside it (drivers/by-driver, drivers/by-os or drivers) for
// the Windows releases the ISO lacks.
func Open(p string) (*Source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("virtio-win %s: %w", p, err)
	}
	if !fi.IsDir() {
		s, err := openISO(p, fi)
		if err != nil {
			return nil, err
		}
		if err := s.detect(); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	s := &Source{Path: p, fsys: os.DirFS(p)}
	if s.detect() == nil {
		return s, nil
	}
	// The virtio-win RPM's folder: its drivers tree is drivers/by-driver
	// (viostor/2k8/amd64) and drivers/by-os (amd64/2k8) in the later
	// RPMs, drivers (amd64/Win2008) in those of RHEL 6 and 7.
	var tree *Source
	for _, sub := range []string{"drivers/by-driver", "drivers/by-os", "drivers"} {
		if d, err := s.resolve(sub); err == nil {
			dir := filepath.Join(p, filepath.FromSlash(d))
			if ts := (&Source{Path: dir, fsys: os.DirFS(dir)}); ts.detect() == nil {
				tree = ts
				break
			}
		}
	}
	iso, err := s.rpmISO()
	if err != nil {
		return nil, err
	}
	if iso != "" {
		isoPath := filepath.Join(p, iso)
		fi, err := os.Stat(isoPath)
		if err != nil {
			return nil, fmt.Errorf("virtio-win %s: %w", isoPath, err)
		}
		is, err := openISO(isoPath, fi)
		if err == nil {
			if err = is.detect(); err == nil {
				is.alt = tree
				return is, nil
			}
			is.Close()
		}
		if tree == nil {
			return nil, err
		}
	}
	if tree != nil {
		return tree, nil
	}
	return nil, fmt.Errorf("virtio-win %s: %w: found neither viostor and NetKVM folders (virtio-win 0.1.100 and later), nor %s folders (older ISOs), nor virtio-win.iso or drivers/by-driver, drivers/by-os or drivers/i386 and drivers/amd64 (the virtio-win RPM's /usr/share/virtio-win)",
		p, ErrNotVirtioWin, strings.Join(oldOSFolders, ", "))
}

// rpmISO returns the name of the ISO in the RPM's folder: virtio-win.iso
// (a link to the versioned ISO), else the only virtio-win*.iso.
func (s *Source) rpmISO() (string, error) {
	ents, err := fs.ReadDir(s.fsys, ".")
	if err != nil {
		return "", fmt.Errorf("virtio-win %s: %w", s.Path, err)
	}
	var isos []string
	for _, e := range ents {
		n := strings.ToLower(e.Name())
		if n == "virtio-win.iso" {
			return e.Name(), nil
		}
		if strings.HasPrefix(n, "virtio-win") && strings.HasSuffix(n, ".iso") {
			isos = append(isos, e.Name())
		}
	}
	switch len(isos) {
	case 0:
		return "", nil
	case 1:
		return isos[0], nil
	}
	return "", fmt.Errorf("virtio-win %s: %w: several ISOs and no virtio-win.iso to choose between them (%s): give the ISO",
		s.Path, ErrNotVirtioWin, strings.Join(isos, ", "))
}

func openISO(p string, fi fs.FileInfo) (*Source, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("virtio-win %s: %w", p, err)
	}
	iso, err := iso9660.Read(file.New(f, true), fi.Size(), 0, 2048)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("virtio-win %s: %w: not an ISO 9660 image (%v)", p, ErrNotVirtioWin, err)
	}
	return &Source{Path: p, ISO: true, fsys: iso, f: f}, nil
}

// detect sets the layout from the top folders.
func (s *Source) detect() error {
	has := func(names ...string) bool {
		for _, n := range names {
			if _, err := s.find(".", n); err == nil {
				return true
			}
		}
		return false
	}
	switch {
	case has("viostor") && has("NetKVM"):
		s.Layout = PerDriver
	case has("amd64", "i386"):
		s.Layout = RPMTree
	case has(oldOSFolders...):
		s.Layout = OldISO
	default:
		return fmt.Errorf("virtio-win %s: %w: no viostor and NetKVM folders (virtio-win 0.1.100 and later), no i386 or amd64 folder (the RPM's drivers/ tree), no %s folder (older ISOs)",
			s.Path, ErrNotVirtioWin, strings.Join(oldOSFolders, ", "))
	}
	return nil
}

// Close releases the ISO.
func (s *Source) Close() error {
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	return err
}

// find returns the entry of dir whose name equals name, ignoring case
// (ISO 9660 names may be upper case).
func (s *Source) find(dir, name string) (string, error) {
	ents, err := fs.ReadDir(s.fsys, dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), name) && e.IsDir() {
			return path.Join(dir, e.Name()), nil
		}
	}
	return "", fs.ErrNotExist
}

// Drivers are the folders (in the driver set, slash-separated) of the
// drivers for one Windows.
type Drivers struct {
	Version string // the guest's CurrentVersion: 5.2, 6.0, 6.1
	Viostor string // viostor/2k8/amd64, amd64/Win2008, WLH/AMD64
	NetKVM  string // NetKVM/2k8/amd64, amd64/Win2008, VISTA/AMD64
	// Shared: the folders hold other drivers too (the RPM's tree, the
	// ISOs before 0.1.100), so only the files named viostor* and netkvm*
	// are taken from them.
	Shared bool
	// ViostorSys is viostor's driver file (viostor/2k8/amd64/viostor.sys),
	// which the script copies to system32\drivers.
	ViostorSys string
	// Installers are the installers at the top of the set
	// (virtio-win-gt-x64.msi, virtio-win-guest-tools.exe). None serves
	// Windows 2003 or 2008: virtio-win's installers need Windows 8 or
	// Server 2012 and later, so they are listed only to say why they are
	// not used.
	Installers []string
}

// Is2003 tells the NT 5 drivers (Windows 2003), which have no pnputil.
func (d *Drivers) Is2003() bool { return strings.HasPrefix(d.Version, "5.") }

// Method says, in one line for the report, how the first-boot script
// installs the drivers.
func (d *Drivers) Method() string {
	var s string
	if d.Is2003() {
		s = "Windows 2003 has no pnputil and virtio-win has no installer for it (its folders hold only the .inf, .sys, .cat and .pdb files), " +
			"so the script copies " + d.Viostor + " and " + d.NetKVM + ` to %SystemRoot%\xen2kvm and adds both folders to DevicePath, ` +
			"where Plug and Play finds the signed drivers when the virtio devices appear"
	} else {
		s = "pnputil -i -a adds " + d.Viostor + "/viostor.inf and " + d.NetKVM + "/netkvm.inf to the driver store"
	}
	if d.Shared {
		s += " (only the viostor* and netkvm* files: those folders hold other drivers too)"
	}
	s += `; it also copies viostor.sys to %SystemRoot%\system32\drivers and makes the viostor service boot-start (Start=0), which the registry prepared disabled`
	if len(d.Installers) > 0 {
		s += "; not used: " + strings.Join(d.Installers, ", ") + " (virtio-win's installers need Windows 8 or Server 2012 and later)"
	}
	return s
}

// candidates are the folders, in order, that may hold a driver (base
// "viostor" or "netkvm") for a Windows version and architecture in the
// source's layout. The folder names are those of virtio-win's ISOs and
// RPMs: 2k3/2k8/2k8R2 (and the build names wnet, wlh, w7) since 0.1.100;
// the RPM's drivers/ARCH/Win2003, Win2008, Win2008R2 (or Win7); before
// 0.1.100 viostor in WNET, WLH, WIN7 and NetKVM in XP, VISTA, WIN7, and
// in the earliest ISOs, which have no WNET or WLH, both in XP (2003) and
// WIN7 (2008).
func (s *Source) candidates(base, version, arch string) ([]string, error) {
	amd64 := strings.EqualFold(arch, "AMD64") || strings.EqualFold(arch, "x86_64")
	arches := []string{"x86", "i386"}
	if amd64 {
		arches = []string{"amd64", "x64"}
	}
	var oses []string
	switch s.Layout {
	case PerDriver:
		oses = map[string][]string{"5.2": {"2k3", "wnet"}, "6.0": {"2k8", "wlh"}, "6.1": {"2k8R2", "w7"}}[version]
	case RPMTree:
		// drivers/by-os of the later RPMs names the folders as the ISO
		// does (2k8, 2k8R2).
		oses = map[string][]string{"5.2": {"Win2003", "2k3"}, "6.0": {"Win2008", "2k8"}, "6.1": {"Win2008R2", "2k8R2", "Win7", "w7"}}[version]
		if !amd64 {
			arches = []string{"i386", "x86"}
		}
	case OldISO:
		// The earliest ISOs had no per-build folders (WNET, WLH), only XP
		// (for XP and 2003) and WIN7 (for Vista, 2008 and 7), which the
		// RPMs of the time packed as Win2003 and Win2008.
		_, errWNET := s.find(".", "WNET")
		_, errWLH := s.find(".", "WLH")
		switch {
		case errWNET != nil && errWLH != nil:
			oses = map[string][]string{"5.2": {"XP"}, "6.0": {"WIN7"}, "6.1": {"WIN7"}}[version]
		case base == "viostor":
			oses = map[string][]string{"5.2": {"WNET"}, "6.0": {"WLH"}, "6.1": {"WIN7"}}[version]
		default:
			oses = map[string][]string{"5.2": {"XP", "WNET"}, "6.0": {"VISTA", "WLH"}, "6.1": {"WIN7"}}[version]
		}
		arches = []string{"X86"}
		if amd64 {
			arches = []string{"AMD64"}
		}
	}
	if oses == nil {
		return nil, fmt.Errorf("virtio-win %s: %w: Windows version %q (viostor and netkvm are looked for only for 5.2 Server 2003, 6.0 Server 2008 and 6.1 Server 2008 R2)", s.Path, ErrNoDrivers, version)
	}
	var c []string
	for _, o := range oses {
		for _, a := range arches {
			switch s.Layout {
			case PerDriver:
				drv := "viostor"
				if base == "netkvm" {
					drv = "NetKVM"
				}
				c = append(c, drv+"/"+o+"/"+a)
			case RPMTree:
				c = append(c, a+"/"+o)
			case OldISO:
				c = append(c, o+"/"+a)
			}
		}
	}
	return c, nil
}

// resolve returns the folder dir names, matched ignoring case; an error
// other than fs.ErrNotExist is one reading the set.
func (s *Source) resolve(dir string) (string, error) {
	cur := "."
	for _, el := range strings.Split(dir, "/") {
		next, err := s.find(cur, el)
		if err != nil {
			return "", err
		}
		cur = next
	}
	return cur, nil
}

// Drivers finds viostor and NetKVM for a Windows version (CurrentVersion
// "5.2" is Server 2003, "6.0" Server 2008, "6.1" Server 2008 R2) and
// architecture ("x86", "AMD64"), in the source's Layout: the first
// candidate folder holding viostor.inf (netkvm.inf) is taken (the 2003
// and 2008 drivers were last built for 0.1.173; later sets carry those
// builds). viostor's folder must hold viostor.sys. For the RPM's folder,
// when its ISO lacks the drivers, the drivers/ tree beside it is used
// and the Source switches to it.
func (s *Source) Drivers(version, arch string) (*Drivers, error) {
	d, err := s.drivers(version, arch)
	if err != nil && s.alt != nil && errors.Is(err, ErrNoDrivers) {
		d2, err2 := s.alt.drivers(version, arch)
		if err2 != nil {
			return nil, fmt.Errorf("%w; and %w", err, err2)
		}
		s.Close()
		*s = *s.alt
		return d2, nil
	}
	return d, err
}

func (s *Source) drivers(version, arch string) (*Drivers, error) {
	d := &Drivers{Version: version, Shared: s.Layout != PerDriver}
	for _, drv := range []struct {
		base string
		to   *string
	}{{"viostor", &d.Viostor}, {"netkvm", &d.NetKVM}} {
		cands, err := s.candidates(drv.base, version, arch)
		if err != nil {
			return nil, err
		}
		var looked []string
		var readErr error
		for _, c := range cands {
			looked = append(looked, c+"/"+drv.base+".inf")
			dir, err := s.resolve(c)
			if err == nil {
				_, err = s.findFile(dir, drv.base+".inf")
			}
			if err == nil {
				*drv.to = dir
				break
			}
			if !errors.Is(err, fs.ErrNotExist) && readErr == nil {
				readErr = err
			}
		}
		if *drv.to == "" {
			msg := ""
			if readErr != nil {
				msg = "; reading it failed: " + readErr.Error()
			}
			return nil, fmt.Errorf("virtio-win %s: %w: no %s for Windows %s %s (layout %s; looked for %s%s)",
				s.Path, ErrNoDrivers, drv.base, version, arch, s.Layout, strings.Join(looked, ", "), msg)
		}
	}
	sys, err := s.findFile(d.Viostor, "viostor.sys")
	if err != nil {
		return nil, fmt.Errorf("virtio-win %s: %w: no viostor.sys in %s", s.Path, ErrNoDrivers, d.Viostor)
	}
	d.ViostorSys = sys
	ents, err := fs.ReadDir(s.fsys, ".")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		n := strings.ToLower(e.Name())
		if !e.IsDir() && strings.HasPrefix(n, "virtio-win") && (strings.HasSuffix(n, ".msi") || strings.HasSuffix(n, ".exe")) {
			d.Installers = append(d.Installers, e.Name())
		}
	}
	slices.Sort(d.Installers) // an ISO lists its names in its own order
	return d, nil
}

// findFile returns the file of dir whose name equals name, ignoring case.
func (s *Source) findFile(dir, name string) (string, error) {
	ents, err := fs.ReadDir(s.fsys, dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), name) && !e.IsDir() {
			return path.Join(dir, e.Name()), nil
		}
	}
	return "", fs.ErrNotExist
}

// Label is the first-boot disk's volume label; ScriptPath the script on
// it.
const (
	Label      = "XEN2KVM"
	ScriptPath = `XEN2KVM\FIRSTBOOT.CMD`
)

// RunOnceName and RunOnceCommand are the RunOnce value that starts the
// script at the next administrator logon, wherever Windows mounted the
// disk.
const (
	RunOnceName    = "xen2kvm-virtio-win"
	RunOnceCommand = `cmd.exe /c for %d in (C D E F G H I J K L M N O P Q R S T U V W X Y Z) do @if exist %d:\` + ScriptPath + ` call %d:\` + ScriptPath
)

func win(p string) string { return strings.ReplaceAll(p, "/", `\`) }

// Script is the first-boot script for the drivers. It finds the drivers
// on the virtio-win CD-ROM or, for a folder, on the first-boot disk, and
// logs to %SystemRoot%\xen2kvm-virtio.log. Windows 2008 installs them
// with pnputil; Windows 2003, which has no pnputil (and for which
// virtio-win has no installer), gets them copied to %SystemRoot%\xen2kvm
// and added to DevicePath, where Plug and Play finds them when the virtio
// devices appear. On both, viostor.sys is copied to system32\drivers and
// only then is the viostor service, which xen2kvm created disabled in the
// registry with the CriticalDeviceDatabase entries, made boot-start: from
// then on the system disk can move to virtio.
func Script(d *Drivers, onDisk bool) string {
	viostor, netkvm, sys := win(d.Viostor), win(d.NetKVM), win(d.ViostorSys)
	prefix := ""
	if onDisk {
		prefix = `XEN2KVM\DRIVERS\`
	}
	l := []string{
		"@echo off",
		"rem xen2kvm first boot: install the virtio drivers viostor and netkvm,",
		"rem so that the disks and network can be switched to virtio afterwards.",
		`set LOG=%SystemRoot%\xen2kvm-virtio.log`,
		"set SRC=",
		`for %%d in (C D E F G H I J K L M N O P Q R S T U V W X Y Z) do if exist %%d:\` + prefix + viostor + ` set SRC=%%d:\` + prefix,
		`if "%SRC%"=="" (echo virtio-win drivers not found on any drive >> "%LOG%" & exit /b 1)`,
		`echo xen2kvm: installing virtio drivers from %SRC% >> "%LOG%"`,
	}
	if d.Is2003() {
		const cv = `"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion"`
		if d.Shared {
			l = append(l,
				`xcopy /i /y "%SRC%`+viostor+`\viostor*" "%SystemRoot%\xen2kvm\viostor\" >> "%LOG%" 2>&1`,
				`xcopy /i /y "%SRC%`+netkvm+`\netkvm*" "%SystemRoot%\xen2kvm\netkvm\" >> "%LOG%" 2>&1`)
		} else {
			l = append(l,
				`xcopy /e /i /y "%SRC%`+viostor+`" "%SystemRoot%\xen2kvm\viostor" >> "%LOG%" 2>&1`,
				`xcopy /e /i /y "%SRC%`+netkvm+`" "%SystemRoot%\xen2kvm\netkvm" >> "%LOG%" 2>&1`)
		}
		l = append(l,
			"rem DevicePath keeps what it had and gains the two folders.",
			`set "DP=%%SystemRoot%%\inf"`,
			`for /f "tokens=2,*" %%a in ('reg query `+cv+` /v DevicePath ^| find "REG_EXPAND_SZ"') do set "DP=%%b"`,
			`reg add `+cv+` /v DevicePath /t REG_EXPAND_SZ /d "%DP%;%%SystemRoot%%\xen2kvm\viostor;%%SystemRoot%%\xen2kvm\netkvm" /f >> "%LOG%" 2>&1`,
		)
	} else {
		l = append(l,
			`pnputil -i -a "%SRC%`+viostor+`\viostor.inf" >> "%LOG%" 2>&1`,
			`pnputil -i -a "%SRC%`+netkvm+`\netkvm.inf" >> "%LOG%" 2>&1`,
		)
	}
	l = append(l,
		"rem viostor boot-start only once its driver file is in place, and only",
		"rem in the service key xen2kvm prepared (with its Type and ImagePath).",
		`reg query "HKLM\SYSTEM\CurrentControlSet\Services\viostor" /v ImagePath >nul 2>&1`,
		"if errorlevel 1 goto novio",
		`copy /y "%SRC%`+sys+`" "%SystemRoot%\system32\drivers\viostor.sys" >> "%LOG%" 2>&1`,
		"if errorlevel 1 goto novio",
		`reg add "HKLM\SYSTEM\CurrentControlSet\Services\viostor" /v Start /t REG_DWORD /d 0 /f >> "%LOG%" 2>&1`,
		"if errorlevel 1 goto novio",
		`echo xen2kvm: viostor is boot-start: the system disk can be switched to virtio >> "%LOG%"`,
		"goto done",
		":novio",
		`echo xen2kvm: ERROR: viostor.sys not in place or viostor not boot-start: keep the system disk on IDE >> "%LOG%"`,
		":done",
		`echo xen2kvm: done >> "%LOG%"`,
	)
	return strings.Join(l, "\r\n") + "\r\n"
}

// Readme is the README.TXT on the first-boot disk.
func Readme(d *Drivers) string {
	return strings.Join([]string{
		"This disk was written by xen2kvm when the guest moved from Xen to KVM.",
		"FIRSTBOOT.CMD installs the virtio drivers (viostor, netkvm). It runs once,",
		"at the next logon of an administrator (console or Remote Desktop), from",
		"the RunOnce value " + RunOnceName + ", and logs to",
		"%SystemRoot%\\xen2kvm-virtio.log. It copies viostor.sys to",
		"%SystemRoot%\\system32\\drivers and makes the viostor service, which xen2kvm",
		"prepared disabled in the registry, boot-start.",
		"",
		"When the log says \"viostor is boot-start: the system disk can be switched",
		"to virtio\", shut Windows down and define NAME-virtio.xml, which xen2kvm",
		"wrote beside the guest's NAME.xml (virsh define NAME-virtio.xml): the same",
		"guest with its disks and NICs on virtio, without this disk and the",
		"virtio-win CD-ROM. If the log says ERROR, keep the disks on IDE.",
		"Windows sees the virtio NIC as a new network adapter: enter a static IP",
		"configuration again.",
	}, "\r\n") + "\r\n"
}

// DiskSize is the first-boot disk's size: FAT32 needs at least 65525
// clusters for Windows to take it as FAT32, which with go-diskfs's
// 512-byte clusters on small volumes is about 33 MiB.
const DiskSize = 64 << 20

// WriteDisk writes the first-boot disk to p (raw, sparse): an MBR with
// one FAT32 partition (type 0x0c) labelled XEN2KVM holding XEN2KVM\
// FIRSTBOOT.CMD, README.TXT and, for a folder source, the drivers under
// XEN2KVM\DRIVERS (from folders that hold several drivers, only the
// viostor* and netkvm* files). p must not exist.
func WriteDisk(p string, s *Source, d *Drivers) error {
	dk, err := diskfs.Create(p, DiskSize, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	const start = 2048
	err = fill(dk, p, start, s, d)
	if cerr := dk.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing %s: %w", p, cerr)
	}
	if err == nil {
		err = fixDotDot(p, start*512)
	}
	if err != nil {
		os.Remove(p)
	}
	return err
}

func fill(dk *disk.Disk, p string, start uint32, s *Source, d *Drivers) error {
	tab := &mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*mbr.Partition{
		{Index: 1, Type: mbr.Fat32LBA, Start: start, Size: uint32(DiskSize/512) - start},
	}}
	if err := dk.Partition(tab); err != nil {
		return fmt.Errorf("partitioning %s: %w", p, err)
	}
	fsys, err := dk.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: Label, Reproducible: true})
	if err != nil {
		return fmt.Errorf("making FAT32 on %s: %w", p, err)
	}
	if err := fsys.Mkdir("/XEN2KVM"); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	files := map[string][]byte{
		"/XEN2KVM/FIRSTBOOT.CMD": []byte(Script(d, !s.ISO)),
		"/XEN2KVM/README.TXT":    []byte(Readme(d)),
	}
	for name, b := range files {
		if err := writeFile(fsys, name, b); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if !s.ISO {
		for _, c := range []struct{ dir, base string }{{d.Viostor, "viostor"}, {d.NetKVM, "netkvm"}} {
			keep := func(fs.DirEntry) bool { return true } // the whole folder
			if d.Shared {
				// A folder that holds several drivers: this one's files.
				keep = func(e fs.DirEntry) bool {
					return !e.IsDir() && strings.HasPrefix(strings.ToLower(e.Name()), c.base)
				}
			}
			if err := copyDir(s.fsys, c.dir, fsys, "/XEN2KVM/DRIVERS/"+c.dir, keep); err != nil {
				return fmt.Errorf("copying %s to %s: %w", c.dir, p, err)
			}
		}
	}
	return nil
}

// fixDotDot points the ".." entry of the root directory's subfolders at
// cluster 0, as FAT requires for the root (go-diskfs writes the root's
// cluster number, which fsck.fat and chkdsk report as an error).
func fixDotDot(p string, off int64) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, off); err != nil {
		return err
	}
	le := func(b []byte) uint32 {
		var v uint32
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint32(b[i])
		}
		return v
	}
	bps, spc := int64(le(bs[11:13])), int64(bs[13])
	reserved, fats, fatSize := int64(le(bs[14:16])), int64(bs[16]), int64(le(bs[36:40]))
	root := le(bs[44:48])
	if bps == 0 || spc == 0 || fatSize == 0 {
		return fmt.Errorf("%s: not a FAT32 boot sector", p)
	}
	csize := bps * spc
	data := off + (reserved+fats*fatSize)*bps
	clusterAt := func(c uint32) int64 { return data + int64(c-2)*csize }
	next := func(c uint32) (uint32, error) {
		var b [4]byte
		if _, err := f.ReadAt(b[:], off+reserved*bps+int64(c)*4); err != nil {
			return 0, err
		}
		return le(b[:]) & 0x0fffffff, nil
	}
	for c, n := root, 0; c >= 2 && c < 0x0ffffff7 && n < 1<<16; n++ {
		buf := make([]byte, csize)
		if _, err := f.ReadAt(buf, clusterAt(c)); err != nil {
			return err
		}
		for e := 0; e+32 <= len(buf); e += 32 {
			ent := buf[e : e+32]
			if ent[0] == 0 || ent[0] == 0xe5 || ent[11] == 0x0f || ent[11]&0x10 == 0 || ent[0] == '.' {
				continue
			}
			sub := le(ent[20:22])<<16 | le(ent[26:28])
			if sub < 2 {
				continue
			}
			dot := make([]byte, 64)
			if _, err := f.ReadAt(dot, clusterAt(sub)); err != nil {
				return err
			}
			if string(dot[32:34]) == ".." && (le(dot[32+20:32+22])<<16|le(dot[32+26:32+28])) == root {
				if _, err := f.WriteAt(make([]byte, 2), clusterAt(sub)+32+20); err != nil {
					return err
				}
				if _, err := f.WriteAt(make([]byte, 2), clusterAt(sub)+32+26); err != nil {
					return err
				}
			}
		}
		if c, err = next(c); err != nil {
			return err
		}
	}
	return f.Sync()
}

func writeFile(fsys filesystem.FileSystem, name string, b []byte) error {
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return f.Close()
}

// copyDir copies the entries of dir that keep accepts into to on dst,
// and the folders among them recursively.
func copyDir(src fs.FS, dir string, dst filesystem.FileSystem, to string, keep func(fs.DirEntry) bool) error {
	if err := dst.Mkdir(to); err != nil {
		return err
	}
	ents, err := fs.ReadDir(src, dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !keep(e) {
			continue
		}
		from, target := path.Join(dir, e.Name()), path.Join(to, e.Name())
		if e.IsDir() {
			err = copyDir(src, from, dst, target, keep)
		} else {
			var b []byte
			if b, err = fs.ReadFile(src, from); err == nil {
				err = writeFile(dst, target, b)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
