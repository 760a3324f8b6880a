package convert

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/hive"
	"github.com/xen2kvm/xen2kvm/ntfs"
)

// Windows is what inspection found on a Windows system volume.
type Windows struct {
	// SystemRoot is the Windows folder on the volume ("WINDOWS",
	// "Windows").
	SystemRoot  string `json:"system_root"`
	ProductName string `json:"product_name,omitempty"`
	// Version is CurrentVersion: "5.2" (Server 2003), "6.0" (2008).
	Version     string `json:"version,omitempty"`
	Build       string `json:"build,omitempty"`
	ServicePack string `json:"service_pack,omitempty"`
	Edition     string `json:"edition,omitempty"`
	Arch        string `json:"arch,omitempty"` // x86, AMD64
	Hostname    string `json:"hostname,omitempty"`
	// BootConfig is the boot loader configuration found on the volume:
	// "boot.ini" (NTLDR, 2003) or "Boot/BCD" (bootmgr, 2008); "" when
	// neither is there (another partition boots the system).
	BootConfig string `json:"boot_config,omitempty"`
	// BootDefault is boot.ini's default= entry.
	BootDefault string `json:"boot_default,omitempty"`
	// CurrentControlSet is Select\Current: 1 for ControlSet001.
	CurrentControlSet int   `json:"current_control_set"`
	ControlSets       []int `json:"control_sets"`
	// RealTimeIsUniversal: the registry keeps the RTC in UTC (the
	// default is local time).
	RealTimeIsUniversal bool `json:"real_time_is_universal"`
	// PVDrivers are the Xen PV drivers installed (current control set).
	PVDrivers []WinService `json:"pv_drivers,omitempty"`
	// Storage are the IDE drivers (atapi, intelide, pciide).
	Storage []WinService `json:"storage_drivers,omitempty"`
	// Dirty: the NTFS volume's dirty flag is set; Hibernated: hiberfil.sys
	// holds a hibernated system; LogPending: the SYSTEM hive's
	// transaction log has not been applied.
	Dirty      bool `json:"volume_dirty,omitempty"`
	Hibernated bool `json:"hibernated,omitempty"`
	LogPending bool `json:"hive_log_pending,omitempty"`
	// SoftwareLogPending: the same for the SOFTWARE hive (product
	// information unread).
	SoftwareLogPending bool `json:"software_hive_log_pending,omitempty"`

	configDir string // WINDOWS/system32/config, as spelt on the volume
}

// WinService is a Windows driver service and its Start type (0 boot, 1
// system, 2 automatic, 3 on demand, 4 disabled).
type WinService struct {
	Name   string `json:"name"`
	Vendor string `json:"vendor,omitempty"`
	Start  int    `json:"start"`
}

// Product is a one-line description: "Microsoft Windows Server 2003
// Service Pack 2 (5.2.3790, x86)".
func (w *Windows) Product() string {
	s := w.ProductName
	if s == "" {
		s = "Windows"
	}
	if w.ServicePack != "" {
		s += " " + w.ServicePack
	}
	v := w.Version
	if w.Build != "" {
		v += "." + w.Build
	}
	if w.Arch != "" {
		v += ", " + w.Arch
	}
	return s + " (" + v + ")"
}

// Release is the product without its architecture: "Windows Server
// 2003 Service Pack 2 (5.2.3790)".
func (w *Windows) Release() string {
	s := strings.TrimPrefix(w.ProductName, "Microsoft ")
	if s == "" {
		s = "Windows"
	}
	if w.ServicePack != "" {
		s += " " + w.ServicePack
	}
	if w.Version != "" {
		v := w.Version
		if w.Build != "" {
			v += "." + w.Build
		}
		s += " (" + v + ")"
	}
	return s
}

// Is2003 tells a Windows of the NT 5 family (2003, XP, 2000), which has
// no driver for QEMU's standard VGA beyond plain VGA modes.
func (w *Windows) Is2003() bool {
	major, _, _ := strings.Cut(w.Version, ".")
	n, err := strconv.Atoi(major)
	return err == nil && n < 6
}

// xenPVServices are the Xen PV driver services of the Windows PV driver
// sets of the RHEL 5 era, by service name (lower case) with the vendor
// they are known from. xenvbd and xennet are both GPLPV's and Citrix's.
var xenPVServices = map[string]string{
	// GPLPV (James Harper)
	"xenpci": "GPLPV", "xenhide": "GPLPV", "xenscsi": "GPLPV", "xenusb": "GPLPV",
	"xenstub": "GPLPV", "xenconfig": "GPLPV", "xenvbd": "GPLPV/Citrix", "xennet": "GPLPV/Citrix",
	// Red Hat xenpv-win
	"rhelscsi": "Red Hat", "rhelnet": "Red Hat", "rhelfltr": "Red Hat", "rhelvbd": "Red Hat",
	// Citrix XenServer tools
	"xenbus": "Citrix", "xenfilt": "Citrix", "xenvif": "Citrix", "xeniface": "Citrix",
	"xevtchn": "Citrix", "xenutil": "Citrix", "xennet6": "Citrix", "xendisk": "Citrix",
	"scsifilt": "Citrix",
}

// Drivers whose Start xen2kvm changes besides the PV ones.
var (
	cpuDrivers = []string{"intelppm", "processr"}        // 0x7E when the CPU changes
	ideDrivers = []string{"atapi", "intelide", "pciide"} // must be boot-start on KVM's PIIX IDE
)

var windirs = []string{"Windows", "WINDOWS", "WINNT"}

// InspectWindows looks for Windows on an NTFS volume and reads its
// registry. It returns ErrNoOS when the volume holds no Windows folder
// with a SYSTEM hive.
func InspectWindows(v *ntfs.Volume) (*Windows, error) {
	w := &Windows{}
	for _, d := range windirs {
		if v.IsDir(d+"/system32/config") && v.Exists(d+"/system32/config/SYSTEM") {
			p, err := v.RealPath(d + "/system32/config")
			if err != nil {
				return nil, err
			}
			w.SystemRoot, w.configDir = p[:strings.IndexByte(p, '/')], p
			break
		}
	}
	if w.SystemRoot == "" {
		return nil, ErrNoOS
	}
	if p, err := v.RealPath("Boot/BCD"); err == nil {
		w.BootConfig = p
	}
	switch {
	case v.Exists("boot.ini"):
		w.BootConfig = "boot.ini"
		if b, err := v.ReadFile("boot.ini"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if d, ok := strings.CutPrefix(strings.TrimSpace(l), "default="); ok {
					w.BootDefault = d
				}
			}
		}
	}
	var err error
	if w.Dirty, err = v.Dirty(); err != nil {
		return nil, err
	}
	if b, err := readHead(v, "hiberfil.sys"); err == nil {
		w.Hibernated = strings.EqualFold(string(b), "hibr")
	}
	sys, err := w.readHive(v, "SYSTEM")
	if errors.Is(err, hive.ErrDirty) {
		w.LogPending = true
		return w, nil
	}
	if err != nil {
		return nil, err
	}
	if err := w.inspectSystem(sys); err != nil {
		return nil, fmt.Errorf("reading the SYSTEM hive: %w", err)
	}
	switch soft, err := w.readHive(v, "SOFTWARE"); {
	case err == nil:
		w.inspectSoftware(soft)
	case errors.Is(err, hive.ErrDirty):
		w.SoftwareLogPending = true
	case !errors.Is(err, ntfs.ErrNotFound):
		return nil, err
	}
	return w, nil
}

func readHead(v *ntfs.Volume, path string) ([]byte, error) {
	b, err := v.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return b[:min(4, len(b))], nil
}

// NamedDevice is a disk to search, by its name in the guest (hda).
type NamedDevice struct {
	Name string
	Dev  diskimg.Device
}

// WindowsVolume is a Windows system volume found on a guest's disks.
type WindowsVolume struct {
	// Name is the partition's name (hda1), or the disk's for a disk
	// without a partition table.
	Name    string
	Dev     diskimg.Device // the partition, over the disk
	Volume  *ntfs.Volume
	Windows *Windows
}

// FindWindows looks at every partition (or whole disk) with an NTFS boot
// sector for a Windows folder with a SYSTEM hive and inspects the first
// it finds. It returns nil without one. NTFS volumes that cannot be read
// are reported in warnings.
func FindWindows(disks []NamedDevice) (*WindowsVolume, []string, error) {
	var warnings []string
	for _, d := range disks {
		var cands []NamedDevice
		tab, err := part.Read(d.Dev)
		switch {
		case errors.Is(err, part.ErrNoTable):
			cands = append(cands, d)
		case err != nil:
			continue
		default:
			for _, p := range tab.Partitions {
				if !p.Extended {
					cands = append(cands, NamedDevice{fmt.Sprintf("%s%d", d.Name, p.Number), p.Device()})
				}
			}
		}
		for _, c := range cands {
			var sig [8]byte
			if _, err := c.Dev.ReadAt(sig[:], 3); err != nil || string(sig[:]) != "NTFS    " {
				continue
			}
			vol, err := ntfs.Open(c.Dev)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("%s: NTFS volume xen2kvm cannot read: %v", c.Name, err))
				continue
			}
			w, err := InspectWindows(vol)
			if errors.Is(err, ErrNoOS) {
				continue
			}
			if err != nil {
				return nil, warnings, fmt.Errorf("inspecting Windows on %s: %w", c.Name, err)
			}
			return &WindowsVolume{Name: c.Name, Dev: c.Dev, Volume: vol, Windows: w}, warnings, nil
		}
	}
	return nil, warnings, nil
}

// HivePath is the volume path of a hive in the config folder.
func (w *Windows) HivePath(name string) string {
	if w.configDir == "" {
		return w.SystemRoot + "/system32/config/" + name
	}
	return w.configDir + "/" + name
}

func (w *Windows) readHive(v *ntfs.Volume, name string) (*hive.Hive, error) {
	b, err := v.ReadFile(w.HivePath(name))
	if err != nil {
		return nil, fmt.Errorf("reading the %s hive: %w", name, err)
	}
	h, err := hive.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s hive (%s): %w", name, w.HivePath(name), err)
	}
	return h, nil
}

var controlSetRe = regexp.MustCompile(`(?i)^ControlSet(\d{3})$`)

// controlSets lists the hive's ControlSetNNN keys by number.
func controlSets(h *hive.Hive) (map[int]hive.Key, []int, error) {
	ks, err := h.Root().Subkeys()
	if err != nil {
		return nil, nil, err
	}
	m := map[int]hive.Key{}
	var ns []int
	for _, k := range ks {
		if mm := controlSetRe.FindStringSubmatch(k.Name()); mm != nil {
			n, _ := strconv.Atoi(mm[1])
			m[n] = k
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	return m, ns, nil
}

func dword(k hive.Key, name string) (int, bool) {
	v, err := k.Value(name)
	if err != nil {
		return 0, false
	}
	n, err := v.DWORD()
	return int(n), err == nil
}

func str(h *hive.Hive, key, name string) string {
	k, err := h.Open(key)
	if err != nil {
		return ""
	}
	v, err := k.Value(name)
	if err != nil {
		return ""
	}
	s, _ := v.String()
	return s
}

func (w *Windows) inspectSystem(h *hive.Hive) error {
	sets, ns, err := controlSets(h)
	if err != nil {
		return err
	}
	w.ControlSets = ns
	if sel, err := h.Open("Select"); err == nil {
		w.CurrentControlSet, _ = dword(sel, "Current")
	}
	cs, ok := sets[w.CurrentControlSet]
	if !ok {
		if len(ns) == 0 {
			return errors.New("no ControlSet key")
		}
		w.CurrentControlSet = ns[0]
		cs = sets[ns[0]]
	}
	ccs := cs.Name()
	w.Hostname = str(h, ccs+`\Control\ComputerName\ComputerName`, "ComputerName")
	w.Arch = str(h, ccs+`\Control\Session Manager\Environment`, "PROCESSOR_ARCHITECTURE")
	if tz, err := h.Open(ccs + `\Control\TimeZoneInformation`); err == nil {
		n, _ := dword(tz, "RealTimeIsUniversal")
		w.RealTimeIsUniversal = n != 0
	}
	svcs, err := h.Open(ccs + `\Services`)
	if err != nil {
		return err
	}
	ks, err := svcs.Subkeys()
	if err != nil {
		return err
	}
	for _, k := range ks {
		name := strings.ToLower(k.Name())
		start, ok := dword(k, "Start")
		if !ok {
			start = -1
		}
		if vendor, pv := xenPVServices[name]; pv {
			w.PVDrivers = append(w.PVDrivers, WinService{Name: k.Name(), Vendor: vendor, Start: start})
		}
		if slices.Contains(ideDrivers, name) {
			w.Storage = append(w.Storage, WinService{Name: k.Name(), Start: start})
		}
	}
	return nil
}

func (w *Windows) inspectSoftware(h *hive.Hive) {
	const cv = `Microsoft\Windows NT\CurrentVersion`
	w.ProductName = str(h, cv, "ProductName")
	w.Version = str(h, cv, "CurrentVersion")
	w.Build = str(h, cv, "CurrentBuildNumber")
	w.ServicePack = str(h, cv, "CSDVersion")
	w.Edition = str(h, cv, "EditionID")
}

// RegEdit is one planned registry change.
type RegEdit struct {
	Hive  string `json:"hive"`  // SYSTEM
	Key   string `json:"key"`   // ControlSet001\Services\xenvbd
	Value string `json:"value"` // Start
	Old   string `json:"old"`
	New   string `json:"new"`
	Rule  string `json:"rule"`
	Why   string `json:"why"`
}

// String is "HKLM\SYSTEM\key\value: old -> new".
func (e RegEdit) String() string {
	return fmt.Sprintf(`HKLM\%s\%s\%s: %s -> %s`, e.Hive, e.Key, e.Value, e.Old, e.New)
}

// Windows rule names (the rules --skip takes).
const (
	RuleWinXenPV   = "win-xenpv"
	RuleWinCPU     = "win-intelppm"
	RuleWinIDE     = "win-ide-boot"
	RuleWinFilters = "win-xen-filters"
	RuleWinViostor = "win-viostor-boot"
)

// WindowsRules are the names of the rules of a Windows conversion.
func WindowsRules() []string {
	var out []string
	for _, r := range rules {
		if r.win != nil {
			out = append(out, r.Name)
		}
	}
	return out
}

// WindowsBlockers are the reasons a Windows volume must not be edited.
func (w *Windows) Blockers() []string {
	var b []string
	if w.Hibernated {
		b = append(b, "Windows is hibernated (hiberfil.sys holds a hibernation image): resume and shut it down cleanly on Xen first")
	}
	if w.Dirty {
		b = append(b, "the NTFS volume is dirty (Windows did not shut down cleanly): boot it on Xen and shut it down cleanly, or run chkdsk, first")
	}
	if w.LogPending || w.SoftwareLogPending {
		which := "SYSTEM"
		if !w.LogPending {
			which = "SOFTWARE"
		}
		b = append(b, "the "+which+" hive's transaction log has not been applied (sequence numbers differ): boot Windows on Xen once and shut it down cleanly first")
	}
	return b
}

// WindowsOptions choose the registry edits of a Windows conversion.
type WindowsOptions struct {
	// Disabled names the rules left out (--skip-rule).
	Disabled map[string]bool
	// Viostor runs the win-viostor-boot rule: the virtio drivers are
	// staged (--virtio-win), so the registry is prepared for viostor.
	Viostor bool
}

// PlanWindows decides the registry edits that let the guest boot on
// KVM's IDE and emulated hardware, running every Windows rule of the
// rules table on every control set of the SYSTEM hive. It reads the
// volume and writes nothing.
func PlanWindows(w *Windows, v *ntfs.Volume, o WindowsOptions) ([]RegEdit, error) {
	if len(w.Blockers()) > 0 {
		return nil, nil
	}
	h, err := w.readHive(v, "SYSTEM")
	if err != nil {
		return nil, err
	}
	edits, err := planSystem(h, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.HivePath("SYSTEM"), err)
	}
	return edits, nil
}

// winPlanner plans and makes the edits of the Windows rules in a parsed
// SYSTEM hive.
type winPlanner struct {
	h     *hive.Hive
	o     WindowsOptions
	edits []RegEdit
}

// planSystem runs the Windows rules on every control set of h, making
// their edits in h, and returns them.
func planSystem(h *hive.Hive, o WindowsOptions) ([]RegEdit, error) {
	sets, ns, err := controlSets(h)
	if err != nil {
		return nil, err
	}
	p := &winPlanner{h: h, o: o}
	for _, n := range ns {
		for _, r := range rules {
			if r.win == nil || o.Disabled[r.Name] {
				continue
			}
			if err := r.win(p, sets[n]); err != nil {
				return nil, err
			}
		}
	}
	return p.edits, nil
}

func (p *winPlanner) add(key, value, old, new, rule, why string) {
	p.edits = append(p.edits, RegEdit{Hive: "SYSTEM", Key: key, Value: value, Old: old, New: new, Rule: rule, Why: why})
}

// setStarts sets the Start of the services of control set cs for which
// match returns a reason, where it is not start already.
func (p *winPlanner) setStarts(cs hive.Key, start uint32, rule string, match func(name string) (why string)) error {
	svcs, err := cs.Subkey("Services")
	if err != nil {
		return nil
	}
	ks, err := svcs.Subkeys()
	if err != nil {
		return err
	}
	for _, k := range ks {
		why := match(strings.ToLower(k.Name()))
		if why == "" {
			continue
		}
		path := cs.Name() + `\Services\` + k.Name()
		v, err := k.Value("Start")
		if errors.Is(err, hive.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		old, err := v.DWORD()
		if err != nil {
			return fmt.Errorf("%s\\Start: %w", path, err)
		}
		if old == start {
			continue
		}
		if err := p.h.SetDWORD(v, start); err != nil {
			return fmt.Errorf("%s\\Start: %w", path, err)
		}
		p.add(path, "Start", strconv.Itoa(int(old)), strconv.Itoa(int(start)), rule, why)
	}
	return nil
}

// xenPV disables the Xen PV drivers.
func (p *winPlanner) xenPV(cs hive.Key) error {
	return p.setStarts(cs, 4, RuleWinXenPV, func(name string) string {
		if vendor := xenPVServices[name]; vendor != "" {
			return "Xen PV driver (" + vendor + "): on KVM it finds no Xen platform device and a boot-start one stops the boot (0x7B) or hangs it"
		}
		return ""
	})
}

// cpu disables intelppm and processr.
func (p *winPlanner) cpu(cs hive.Key) error {
	return p.setStarts(cs, 4, RuleWinCPU, func(name string) string {
		if slices.Contains(cpuDrivers, name) {
			return "processor driver: crashes with 0x7E when the CPU vendor or model changes"
		}
		return ""
	})
}

// ideBoot makes the IDE drivers boot-start.
func (p *winPlanner) ideBoot(cs hive.Key) error {
	return p.setStarts(cs, 0, RuleWinIDE, func(name string) string {
		if slices.Contains(ideDrivers, name) {
			return "IDE driver: the KVM guest boots from QEMU's PIIX IDE, so it must load at boot"
		}
		return ""
	})
}

// xenFilters takes the Xen PV drivers out of the device classes'
// UpperFilters and LowerFilters.
func (p *winPlanner) xenFilters(cs hive.Key) error {
	class, err := cs.Subkey(`Control`)
	if err == nil {
		class, err = class.Subkey("Class")
	}
	if err != nil {
		return nil
	}
	cks, err := class.Subkeys()
	if err != nil {
		return err
	}
	for _, ck := range cks {
		for _, f := range []string{"UpperFilters", "LowerFilters"} {
			v, err := ck.Value(f)
			if err != nil {
				continue
			}
			old, err := v.Strings()
			if err != nil {
				continue
			}
			keep := slices.DeleteFunc(slices.Clone(old), func(s string) bool { return xenPVServices[strings.ToLower(s)] != "" })
			if len(keep) == len(old) {
				continue
			}
			path := cs.Name() + `\Control\Class\` + ck.Name()
			if err := p.h.SetData(v, hive.EncodeMultiSZ(keep)); err != nil {
				return fmt.Errorf("%s\\%s: %w", path, f, err)
			}
			p.add(path, f, multiString(old), multiString(keep), RuleWinFilters,
				"a class filter naming a disabled Xen PV driver stops every device of the class from starting")
		}
	}
	return nil
}

// The viostor boot entries, as the virt-v2v family of tools make them for
// Windows up to 7 / 2008 R2: the CriticalDeviceDatabase maps the virtio
// block device's PCI IDs to the viostor service in the SCSI adapter class
// (viostor.inf's Class=SCSIAdapter), so that Windows can start viostor
// for a boot disk it has never seen; the service key is what viostor.inf's
// AddService creates. Windows looks a device's hardware and compatible
// IDs up there, "\" spelt "#", in lower case.
//
// The IDs are those virtio-win's viostor.inf names. The infs of 2008 to
// 2015 (wnet.inf, wlh.inf, then WinNET.inx and WinLH.inx) name the
// transitional device VEN_1AF4&DEV_1001 with SUBSYS_00000000,
// SUBSYS_00020000, SUBSYS_00021AF4 and SUBSYS_00021AF4&REV_00, as QEMU's
// virtio-blk-pci on a PCI bus shows it. viostor.inx, which virtio-win has
// built every Windows's viostor from since 2016 (2003 included, in the
// 0.1.1xx builds), adds the modern-only device QEMU gives a virtio-blk on
// PCI Express when legacy is off, VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01
// (QEMU's default subsystem 1AF4:1100), and since 2018 the compatible IDs
// VEN_1AF4&DEV_1001 and VEN_1AF4&DEV_1042, which match whatever subsystem
// vendor a hypervisor sets.
//
// The service is created disabled (Start=4): viostor.sys cannot be put in
// system32\drivers offline (xen2kvm creates no NTFS files), and a
// disabled service is never loaded, so the entry is harmless until the
// first-boot script has copied viostor.sys and set Start=0. (Start=0 with
// a missing file and ErrorControl=1, SERVICE_ERROR_NORMAL, is documented
// to let startup go on with a logged error, but that could not be tried
// here against a real NTLDR or winload, and Start=4 needs no such trust.)
// ErrorControl=1 is viostor.inf's own.
const (
	scsiAdapterClass = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
	viostorService   = "viostor"
)

var viostorPCIIDs = []string{
	// transitional virtio-blk
	"pci#ven_1af4&dev_1001&subsys_00000000",
	"pci#ven_1af4&dev_1001&subsys_00020000",
	"pci#ven_1af4&dev_1001&subsys_00021af4",
	"pci#ven_1af4&dev_1001&subsys_00021af4&rev_00",
	"pci#ven_1af4&dev_1001",
	// modern-only virtio-blk (virtio 1.0)
	"pci#ven_1af4&dev_1042&subsys_11001af4&rev_01",
	"pci#ven_1af4&dev_1042",
}

// regValue is a value to create.
type regValue struct {
	name string
	typ  uint32
	data []byte
	show string // as the plan shows it
}

func szValue(name string, typ uint32, s string) regValue {
	return regValue{name, typ, hive.EncodeSZ(s), s}
}

func dwordValue(name string, n uint32) regValue {
	var b [4]byte
	b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return regValue{name, hive.DWORD, b[:], strconv.Itoa(int(n))}
}

// viostorBoot creates the CriticalDeviceDatabase entries and the viostor
// service key in control set cs, in the hive's free space. Entries that
// exist already are left as they are.
func (p *winPlanner) viostorBoot(cs hive.Key) error {
	if !p.o.Viostor {
		return nil
	}
	const why = "lets viostor start the system disk once it is on virtio; the service stays disabled until the first-boot script has copied viostor.sys to system32\\drivers"
	ctl, err := cs.Subkey("Control")
	if err != nil {
		return fmt.Errorf("%s has no Control key: %w", cs.Name(), err)
	}
	cdd, err := p.subkey(ctl, "CriticalDeviceDatabase")
	if err != nil {
		return err
	}
	for _, id := range viostorPCIIDs {
		if _, err := cdd.Subkey(id); err == nil {
			continue
		}
		err := p.createKey(cdd, cs.Name()+`\Control\CriticalDeviceDatabase\`+id, why,
			szValue("Service", hive.SZ, viostorService), szValue("ClassGUID", hive.SZ, scsiAdapterClass))
		if err != nil {
			return err
		}
	}
	svcs, err := cs.Subkey("Services")
	if err != nil {
		return fmt.Errorf("%s has no Services key: %w", cs.Name(), err)
	}
	if _, err := svcs.Subkey(viostorService); err == nil {
		return nil
	}
	return p.createKey(svcs, cs.Name()+`\Services\`+viostorService, why,
		dwordValue("Type", 1), dwordValue("Start", 4), dwordValue("ErrorControl", 1),
		szValue("Group", hive.SZ, "SCSI miniport"), szValue("ImagePath", hive.ExpandSZ, `system32\drivers\viostor.sys`))
}

// subkey opens parent's subkey name, creating it when it is missing.
func (p *winPlanner) subkey(parent hive.Key, name string) (hive.Key, error) {
	k, err := parent.Subkey(name)
	if errors.Is(err, hive.ErrNotFound) {
		k, err = p.h.AddKey(parent, name)
	}
	return k, p.roomErr(err)
}

// createKey adds the key path's last element under parent with vals.
func (p *winPlanner) createKey(parent hive.Key, path, why string, vals ...regValue) error {
	k, err := p.h.AddKey(parent, path[strings.LastIndexByte(path, '\\')+1:])
	if err != nil {
		return p.roomErr(err)
	}
	for _, v := range vals {
		if err := p.h.AddValue(k, v.name, v.typ, v.data); err != nil {
			return p.roomErr(err)
		}
		p.add(path, v.name, "(none)", v.show, RuleWinViostor, why)
	}
	return nil
}

// ErrHiveFull: the hive's free space does not hold the keys to add
// (xen2kvm does not grow hive files).
var ErrHiveFull = errors.New("not enough free space in the hive")

func (p *winPlanner) roomErr(err error) error {
	if errors.Is(err, hive.ErrNoRoom) {
		return fmt.Errorf("%w for the viostor boot entries (%d bytes free in its cells; xen2kvm does not grow hive files): %w; --skip-rule %s leaves them out, and the first-boot script then keeps the disk on IDE",
			ErrHiveFull, p.h.Free(), err, RuleWinViostor)
	}
	return err
}

func multiString(ss []string) string {
	if len(ss) == 0 {
		return "(empty)"
	}
	return strings.Join(ss, ",")
}

// editHive re-reads a hive from the volume, lets edit change it, and
// writes only the hive file's changed sectors to dev, the device the
// volume was opened on (an overlay), in the file's own clusters.
func (w *Windows) editHive(v *ntfs.Volume, dev io.WriterAt, name string, edit func(*hive.Hive) error) error {
	if b := w.Blockers(); len(b) > 0 {
		return fmt.Errorf("windows: %s", strings.Join(b, "; "))
	}
	path := w.HivePath(name)
	f, err := v.File(path)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", path, err)
	}
	before, err := v.ReadFile(path)
	if err != nil {
		return err
	}
	h, err := hive.Parse(before)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := edit(h); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeHive(f, dev, before, h.Bytes())
}

// ApplyWindows makes the planned registry edits in the SYSTEM hive on the
// volume, in place: it re-reads the hive, makes the same edits (the hive
// keeps its size), and writes only the changed sectors of the hive file's
// own clusters to dev, the device the volume was opened on (an overlay).
func ApplyWindows(w *Windows, v *ntfs.Volume, dev io.WriterAt, want []RegEdit, o WindowsOptions) error {
	if len(want) == 0 && len(w.Blockers()) == 0 {
		return nil
	}
	return w.editHive(v, dev, "SYSTEM", func(h *hive.Hive) error {
		got, err := planSystem(h, o)
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("changed since the plan: %d edits, planned %d", len(got), len(want))
		}
		for i := range got {
			if got[i].String() != want[i].String() {
				return fmt.Errorf("changed since the plan: %s, planned %s", got[i], want[i])
			}
		}
		return nil
	})
}

// writeHive writes the sectors of an edited hive that differ from before
// into the hive file's own clusters.
func writeHive(f *ntfs.File, dev io.WriterAt, before, after []byte) error {
	if len(after) != len(before) {
		return fmt.Errorf("%s: the edited hive is %d bytes, was %d", f.Path, len(after), len(before))
	}
	const sector = 512
	for off := 0; off < len(after); off += sector {
		end := min(off+sector, len(after))
		if string(after[off:end]) == string(before[off:end]) {
			continue
		}
		if err := f.WriteAt(dev, after[off:end], int64(off)); err != nil {
			return err
		}
	}
	return nil
}

// RunOnceKey is the SOFTWARE key whose values Windows runs once, at the
// next administrator logon.
const RunOnceKey = `Microsoft\Windows\CurrentVersion\RunOnce`

// ErrNoRunOnce: the SOFTWARE hive has no RunOnce key (every Windows has
// one; xen2kvm adds its value there).
var ErrNoRunOnce = errors.New("the SOFTWARE hive has no RunOnce key")

// addRunOnce adds the RunOnce value to a parsed SOFTWARE hive.
func addRunOnce(h *hive.Hive, name, command string) error {
	k, err := h.Open(RunOnceKey)
	if errors.Is(err, hive.ErrNotFound) {
		return ErrNoRunOnce
	}
	if err != nil {
		return err
	}
	return h.AddValue(k, name, hive.SZ, hive.EncodeSZ(command))
}

// PlanRunOnce checks that a RunOnce value name = command can be added to
// the SOFTWARE hive in its free space, and returns the edit. It writes
// nothing.
func PlanRunOnce(w *Windows, v *ntfs.Volume, name, command string) (RegEdit, error) {
	h, err := w.readHive(v, "SOFTWARE")
	if err != nil {
		return RegEdit{}, err
	}
	if err := addRunOnce(h, name, command); err != nil {
		return RegEdit{}, fmt.Errorf("%s: %w", w.HivePath("SOFTWARE"), err)
	}
	return RegEdit{Hive: "SOFTWARE", Key: RunOnceKey, Value: name, Old: "(none)", New: command, Rule: "virtio-win",
		Why: "runs the first-boot script that installs the virtio drivers, once, at the next administrator logon"}, nil
}

// ApplyRunOnce adds the RunOnce value to the SOFTWARE hive on the volume,
// in place, writing only the hive file's changed sectors to dev.
func ApplyRunOnce(w *Windows, v *ntfs.Volume, dev io.WriterAt, name, command string) error {
	return w.editHive(v, dev, "SOFTWARE", func(h *hive.Hive) error { return addRunOnce(h, name, command) })
}

// Details are the inspection findings, one a line, for reports.
func (wv *WindowsVolume) Details() []string {
	w := wv.Windows
	var out []string
	add := func(f string, a ...any) { out = append(out, fmt.Sprintf(f, a...)) }
	add("system volume %s, Windows folder %s, boot configuration %s", wv.Name, w.SystemRoot, orNone(w.BootConfig))
	if w.LogPending {
		add("SYSTEM hive not read: its transaction log has not been applied")
		return out
	}
	add("host name %s", orNone(w.Hostname))
	var sets []string
	for _, n := range w.ControlSets {
		sets = append(sets, fmt.Sprintf("ControlSet%03d", n))
	}
	add("current control set ControlSet%03d (of %s)", w.CurrentControlSet, strings.Join(sets, ", "))
	if w.RealTimeIsUniversal {
		add("clock: RTC in UTC (RealTimeIsUniversal=1)")
	} else {
		add("clock: RTC in local time (RealTimeIsUniversal not set)")
	}
	var pv []string
	for _, s := range w.PVDrivers {
		pv = append(pv, fmt.Sprintf("%s (%s, start %s)", s.Name, s.Vendor, startName(s.Start)))
	}
	add("Xen PV drivers: %s", orNone(strings.Join(pv, ", ")))
	var ide []string
	for _, s := range w.Storage {
		ide = append(ide, fmt.Sprintf("%s (start %s)", s.Name, startName(s.Start)))
	}
	add("IDE drivers: %s", orNone(strings.Join(ide, ", ")))
	return out
}

func startName(n int) string {
	names := []string{"0 boot", "1 system", "2 automatic", "3 on demand", "4 disabled"}
	if n >= 0 && n < len(names) {
		return names[n]
	}
	return fmt.Sprint(n)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
