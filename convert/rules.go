package convert

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xen2kvm/xen2kvm/hive"
)

// A Rule is one step of the conversion. Rules lists them; Options.Disable
// leaves some out by Name.
type Rule struct {
	// Name is what Options.Disable (the CLI's --skip-rule) and Edit.Rule
	// call the rule.
	Name string `json:"name"`
	// Reason says what the rule changes and why, in one line.
	Reason string `json:"reason"`
	// plan plans the rule's edits into the planner (Linux guests).
	plan func(*planner) error
	// win plans a Windows rule's registry edits in one control set of
	// the SYSTEM hive (and makes them in the parsed hive).
	win func(*winPlanner, hive.Key) error
}

// rules is the conversion, in the order its rules run; everything else
// (Rules, Options.Disable, Edit.Rule) derives from it. To add a rule,
// write its planner method in the rules_*.go file of its family (boot
// loader, disks, packages, modules and initrd, console, SELinux, network)
// and add its line here. The Windows rules (win-*) have a win function
// instead (windows.go): PlanWindows runs them on every control set of a
// Windows guest's SYSTEM hive. kernel-choice has neither: MakePlan
// applies it when it picks the kernel.
var rules = []Rule{
	{RuleKernelChoice, "the kernel chosen to boot is never a debug or kdump flavour while another is installed, and versions compare without the flavour", nil, nil},
	{"grub", "grub.conf boots a non-Xen kernel by default, with KVM's disk names and the serial console", (*planner).grub, nil},
	{"device-map", "grub's device.map and /etc/sysconfig/grub name KVM's disks", (*planner).deviceMapRule, nil},
	{"sysconfig-kernel", "DEFAULTKERNEL in /etc/sysconfig/kernel follows the kernel that boots on KVM", (*planner).sysconfigKernel, nil},
	{"fstab", "/etc/fstab names KVM's disks", (*planner).fstab, nil},
	{"crypttab", "/etc/crypttab names KVM's disks", (*planner).crypttab, nil},
	{"blkid-cache", "the blkid and LVM device caches that name the Xen disks are removed", (*planner).blkidCache, nil},
	{"lvm-filter", "LVM filters in lvm.conf and the initrd's copy that accept only Xen disks (xvd*) also accept KVM's", (*planner).lvmFilter, nil},
	{"modprobe", "modprobe.conf, modules.conf and modprobe.d aliases load virtio instead of the Xen drivers", (*planner).modprobe, nil},
	{"initrd", "the chosen kernel's initrd is rebuilt with the virtio drivers and the renamed root", (*planner).initrd, nil},
	{"console", "a getty and root logins on the serial port ttyS0 instead of the Xen console", (*planner).console, nil},
	{"xorg", "xorg.conf drives KVM's VGA instead of the Xen framebuffer", (*planner).xorg, nil},
	{"xenpv", "the Xen PV-on-HVM drivers (kmod-xenpv) are never loaded", (*planner).xenpv, nil},
	{"kudzu", "kudzu's first-boot hardware probe is disabled (chkconfig kudzu off), so it does not replace ifcfg-eth0 when it sees the new NIC", (*planner).kudzu, nil},
	{"rc-xen-modules", "rc.local and rc.sysinit lines that load the Xen PV drivers by hand are commented out", (*planner).rcXenModules, nil},
	{"kdump", "/etc/kdump.conf's dump targets name KVM's disks", (*planner).kdump, nil},
	{"persistent-net", "udev's persistent names (RHEL 6) for the Xen NICs are freed, so the KVM NIC is eth0", (*planner).persistentNet, nil},
	{"selinux", "files xen2kvm creates get the SELinux label the guest's file_contexts gives their path (modified files keep theirs); /.autorelabel only when the policy cannot be read", (*planner).selinux, nil},
	{"network", "a NIC the config gives no MAC takes the HWADDR of the guest's ifcfg-ethN (ethN is the N-th NIC); warnings for HWADDRs no NIC will have", (*planner).network, nil},
	{RuleWinXenPV, "Windows: the Xen PV drivers (GPLPV, Red Hat xenpv-win, Citrix) are disabled (Start=4) in every control set", nil, (*winPlanner).xenPV},
	{RuleWinFilters, "Windows: the Xen PV drivers are taken out of the device classes' UpperFilters/LowerFilters", nil, (*winPlanner).xenFilters},
	{RuleWinCPU, "Windows: intelppm and processr are disabled (0x7E when the CPU changes)", nil, (*winPlanner).cpu},
	{RuleWinIDE, "Windows: atapi, intelide and pciide are boot-start (Start=0) for QEMU's IDE", nil, (*winPlanner).ideBoot},
	{RuleWinViostor, "Windows, with --virtio-win: CriticalDeviceDatabase entries for the virtio block device and a viostor service (disabled until the first-boot script has put viostor.sys in place), in every control set, so that the system disk can move to virtio", nil, (*winPlanner).viostorBoot},
}

// Rules lists the conversion rules in the order they run.
func Rules() []Rule {
	out := make([]Rule, len(rules))
	for i, r := range rules {
		out[i] = Rule{Name: r.Name, Reason: r.Reason}
	}
	return out
}

// CheckRuleNames returns an error wrapping ErrUnknownRule, listing the
// known rules, for every name in names that is not a rule's.
func CheckRuleNames(names []string) error {
	var bad []error
	for _, r := range names {
		if !slices.Contains(ruleNames(), r) {
			bad = append(bad, fmt.Errorf("%w %q (known: %s)", ErrUnknownRule, r, strings.Join(ruleNames(), ", ")))
		}
	}
	return errors.Join(bad...)
}

// ruleNames lists the rules' names in the order they run.
func ruleNames() []string {
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = r.Name
	}
	return names
}

// splitLines splits text into lines without terminators; final tells
// whether it ended with a newline.
func splitLines(b []byte) (lines []string, final bool) {
	s := string(b)
	final = strings.HasSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\n")
	if s == "" && !final {
		return nil, false
	}
	return strings.Split(s, "\n"), final
}

func joinLines(lines []string, final bool) []byte {
	s := strings.Join(lines, "\n")
	if final && len(lines) > 0 {
		s += "\n"
	}
	return []byte(s)
}
