package convert

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/guestfs"
)

// Sentinel errors.
var (
	// ErrUnknownRule is returned by MakePlan for a rule name it does not
	// know in Options.Disable.
	ErrUnknownRule = errors.New("unknown conversion rule")
	// ErrBlocked is returned by Apply for a plan with blockers.
	ErrBlocked = errors.New("conversion blocked")
	// ErrConflict is returned by Apply when a file is not as the plan
	// found it.
	ErrConflict = errors.New("file changed since the plan was made")
)

// Options tune MakePlan.
type Options struct {
	// Disable names rules (see Rules) that are not run.
	Disable []string
	// KernelRPM is the host path of a kernel RPM (kernel, kernel-PAE) to
	// install when the guest has only Xen kernels: its payload is
	// planned as new files, a grub entry and a nash initrd (made from
	// the guest's current one) are added for it, and it becomes the
	// kernel the guest boots.
	KernelRPM string
}

// EditKind says what an edit does to its file.
type EditKind string

const (
	Modify EditKind = "modify"
	Create EditKind = "create"
	Remove EditKind = "remove"
)

// Edit is one planned change of one guest file.
type Edit struct {
	Path   string      `json:"path"` // guest path, "etc/fstab"
	Kind   EditKind    `json:"kind"`
	Before []byte      `json:"-"` // nil for Create
	After  []byte      `json:"-"` // nil for Remove
	Mode   fs.FileMode `json:"mode,omitempty"`
	Rule   string      `json:"rule"` // rule names, "+"-joined when several edit one file
	Why    string      `json:"why"`
	// Summary describes a binary file's change (an initrd) for Diff.
	Summary string `json:"summary,omitempty"`
	// Link is the target of a symlink the edit creates or removes
	// (Before and After are nil then).
	Link string `json:"link,omitempty"`
	// Label is the SELinux label Apply gives a created file, from the
	// guest's own file_contexts; "" leaves it unlabelled.
	Label string `json:"selinux_label,omitempty"`
}

// Plan is a conversion computed without writing anything.
type Plan struct {
	Edits    []Edit   `json:"edits"`
	Warnings []string `json:"warnings,omitempty"`
	// Blockers are reasons the guest cannot be converted; Apply refuses
	// a plan that has any.
	Blockers []string `json:"blockers,omitempty"`
	// Notes say what was decided without an edit (a Windows guest left
	// as it is, for one).
	Notes []string `json:"notes,omitempty"`
	// Kernel is the kernel the converted guest boots; nil when blocked
	// or for a guest whose insides are not edited.
	Kernel *Kernel `json:"kernel,omitempty"`
	// Virtio tells whether the KVM guest gets virtio disks and network;
	// without, IDE disks and an emulated NIC.
	Virtio bool `json:"virtio"`
	// DeviceMap maps each disk's Xen target name (the config's "xvda")
	// to its KVM name ("vda"), in the disk order of the config; CD-ROMs
	// are not listed.
	DeviceMap map[string]string `json:"device_map"`
	// DiskOrder lists DeviceMap's keys in the config's order.
	DiskOrder []string `json:"disk_order"`
	// SELinux is the guest's SELinux mode (enforcing, permissive,
	// disabled, "").
	SELinux string `json:"selinux,omitempty"`
	// Labels tells that the guest's SELinux labels are kept by the plan:
	// created files get Edit.Label and modified ones keep theirs, so
	// every file the plan writes must carry a label afterwards.
	Labels bool `json:"selinux_labels,omitempty"`
	// DirLabels are the SELinux labels of the directories Apply creates
	// for new files.
	DirLabels map[string]string `json:"selinux_dir_labels,omitempty"`
	// GuestMACs are the MAC addresses the guest's interface configs give
	// NICs the config leaves without one, by NIC; the KVM NICs take them
	// (config.KVMOptions.MACs).
	GuestMACs []GuestMAC `json:"guest_macs,omitempty"`
}

// GuestMAC is the MAC address the guest's own network configuration
// gives a NIC: ifcfg-ethN's HWADDR for the N-th NIC of the config.
type GuestMAC struct {
	NIC  int    `json:"nic"`  // index into the config's NICs
	MAC  string `json:"mac"`  // lower case, 00:16:3e:12:34:56
	File string `json:"file"` // /etc/sysconfig/network-scripts/ifcfg-eth0
}

// MakePlan decides every change that makes the guest boot on KVM, reading
// the guest through root but writing nothing. g comes from Inspect; it may
// be nil for an HVM guest whose filesystems xen2kvm cannot read (Windows),
// which is then left as it is.
func MakePlan(g *Guest, root guestfs.FS, d *config.Domain, opts Options) (*Plan, error) {
	if d == nil {
		return nil, errors.New("no domain config")
	}
	if err := CheckRuleNames(opts.Disable); err != nil {
		return nil, err
	}
	disabled := map[string]bool{}
	for _, r := range opts.Disable {
		disabled[r] = true
	}
	p := &Plan{}
	if g == nil || g.OS != "linux" {
		what := "an operating system xen2kvm cannot read"
		if g != nil && g.OS == "windows" {
			what = "Windows"
		}
		if d.Type != config.HVM {
			p.Blockers = append(p.Blockers, fmt.Sprintf("PV guest %s: no Linux root filesystem found", d.Name))
			return p, nil
		}
		p.DeviceMap, p.DiskOrder = deviceMap(d, "hd")
		p.Notes = append(p.Notes,
			fmt.Sprintf("HVM guest with %s: nothing inside the guest is edited", what),
			"the KVM guest keeps IDE disks and an emulated network card, so it boots as it did on Xen",
			"next step: install the virtio drivers (virtio-win) in the guest, then switch its disks and network to virtio")
		return p, nil
	}
	if !g.supported() {
		p.Blockers = append(p.Blockers, fmt.Sprintf("unsupported guest %q: xen2kvm converts RHEL and CentOS 4, 5 and 6", g.Product))
		return p, nil
	}
	p.Warnings = append(p.Warnings, g.Warnings...)
	p.SELinux = g.SELinux
	c := &planner{g: g, root: root, d: d, plan: p, files: map[string]*Edit{}}
	k, blocker := chooseKernel(g, !disabled[RuleKernelChoice])
	if blocker != "" && opts.KernelRPM != "" && len(g.Kernels) > 0 {
		c.rule = RuleKernelRPM
		nk, err := c.installKernelRPM(opts.KernelRPM)
		if err != nil {
			return nil, err
		}
		gg := *g
		gg.Kernels = append(slices.Clone(g.Kernels), *nk)
		c.g = &gg
		k, blocker = &gg.Kernels[len(gg.Kernels)-1], ""
		c.newKernel = true
	}
	if blocker != "" {
		p.Blockers = append(p.Blockers, blocker)
		return p, nil
	}
	p.Kernel = k
	if !disabled[RuleKernelChoice] {
		var passed []string
		for _, o := range g.Kernels {
			if o.Debug && !o.Xen && o.Release != k.Release {
				passed = append(passed, o.Release+" ("+o.Package+")")
			}
		}
		if len(passed) > 0 && !k.Debug {
			p.Notes = append(p.Notes, fmt.Sprintf("rule %s: the guest boots %s, not %s: debug and kdump flavours run slowly and are meant for diagnosing",
				RuleKernelChoice, k.Release, strings.Join(passed, ", ")))
		}
	}
	p.Virtio = k.Virtio()
	if p.Virtio {
		if bin, old := c.oldLVM(); old {
			p.Virtio = false
			p.Warnings = append(p.Warnings, fmt.Sprintf("the guest's lvm2 (%s) predates virtio disks (no \"virtblk\" device type) and would not find its volume groups on /dev/vd*: the KVM guest gets IDE disks instead; update lvm2 in the guest and migrate again for virtio", bin))
		}
	} else {
		p.Warnings = append(p.Warnings, fmt.Sprintf("kernel %s has no virtio drivers: the KVM guest gets IDE disks and an emulated network card", k.Release))
	}
	prefix := "vd"
	if !p.Virtio {
		prefix = "hd"
		if g.Major >= 6 {
			prefix = "sd"
		}
	}
	p.DeviceMap, p.DiskOrder = deviceMap(d, prefix)

	c.k, c.remap, c.prefix = k, newRemapper(p.DeviceMap), prefix
	for _, r := range rules {
		if disabled[r.Name] {
			p.Notes = append(p.Notes, "rule "+r.Name+" disabled")
			continue
		}
		if r.plan == nil { // a Windows rule, or kernel-choice (chooseKernel above)
			continue
		}
		c.rule = r.Name
		if err := r.plan(c); err != nil {
			return nil, fmt.Errorf("rule %s: %w", r.Name, err)
		}
	}
	for _, path := range c.order {
		e := c.files[path]
		if e.Kind == Modify && bytes.Equal(e.Before, e.After) {
			continue
		}
		p.Edits = append(p.Edits, *e)
	}
	return p, nil
}

// RuleKernelChoice names the part of the kernel choice that keeps debug
// and kdump flavours out; disabled, the highest release wins, flavour and
// all (2.6.18-164.el5debug over 2.6.18-164.el5).
const RuleKernelChoice = "kernel-choice"

// chooseKernel picks the kernel to boot on KVM: a non-Xen kernel, never a
// debug or kdump flavour while another one is there, those with virtio
// first (virtio_net before virtio_blk only), then the highest version
// compared without the flavour. Without flavours (the kernel-choice rule
// disabled) the debug and kdump flavours count as any other and versions
// compare with their flavour.
func chooseKernel(g *Guest, flavours bool) (*Kernel, string) {
	var cands []*Kernel
	for i := range g.Kernels {
		if !g.Kernels[i].Xen {
			cands = append(cands, &g.Kernels[i])
		}
	}
	if len(g.Kernels) == 0 {
		return nil, "no kernel found in /boot (vmlinuz-*): is the guest's /boot filesystem mounted?"
	}
	if len(cands) == 0 {
		pkg := "kernel"
		if g.Arch != "x86_64" && g.Major >= 5 {
			pkg = "kernel-PAE"
		}
		return nil, fmt.Sprintf("only Xen kernels are installed (%s): install the %s package in the guest (yum install %s) before migrating, or give its RPM with --kernel-rpm FILE",
			releases(g.Kernels), pkg, pkg)
	}
	score := func(k *Kernel) int {
		s := 0
		if k.VirtioNet {
			s += 4
		}
		if k.VirtioBlk {
			s += 2
		}
		return s
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if !flavours {
			if sa, sb := score(a), score(b); sa != sb {
				return sa > sb
			}
			return compareVersions(a.Release, b.Release) > 0
		}
		if a.Debug != b.Debug {
			return b.Debug
		}
		if sa, sb := score(a), score(b); sa != sb {
			return sa > sb
		}
		// Versions compare without the flavour: 2.6.18-164.el5debug
		// is not newer than 2.6.18-164.el5.
		ba, _ := kernelFlavour(a.Release)
		bb, _ := kernelFlavour(b.Release)
		if c := compareVersions(ba, bb); c != 0 {
			return c > 0
		}
		return compareVersions(a.Release, b.Release) > 0
	})
	return cands[0], ""
}

func releases(ks []Kernel) string {
	var rs []string
	for _, k := range ks {
		rs = append(rs, k.Release)
	}
	if len(rs) == 0 {
		return "none"
	}
	return strings.Join(rs, ", ")
}

// planner holds the working copies of the files the rules edit.
type planner struct {
	g     *Guest
	root  guestfs.FS
	d     *config.Domain
	plan  *Plan
	k     *Kernel
	remap *remapper
	rule  string
	files map[string]*Edit
	order []string
	// newKernel is set when k comes from Options.KernelRPM.
	newKernel bool
	// prefix is the new disks' name prefix: vd, hd or sd.
	prefix string
	// initrdEdit rewrites configuration files inside the initrd (the
	// lvm-filter rule's lvm.conf), initrdEditWhy says why.
	initrdEdit    map[string]func([]byte) []byte
	initrdEditWhy []string
}

// read returns a file's content as the rules so far left it; ok is false
// when it does not exist.
func (c *planner) read(path string) ([]byte, bool, error) {
	if e, ok := c.files[path]; ok {
		return e.After, e.Kind != Remove, nil
	}
	b, err := c.root.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading /%s: %w", path, err)
	}
	return b, true, nil
}

func (c *planner) record(path string, kind EditKind, before, after []byte, mode fs.FileMode, why string) {
	e, ok := c.files[path]
	if !ok {
		e = &Edit{Path: path, Kind: kind, Before: before, Mode: mode}
		c.files[path] = e
		c.order = append(c.order, path)
	}
	e.After = after
	switch {
	case kind == Remove && e.Kind == Create:
		// Created, then removed: nothing to do, as an empty Modify.
		e.Kind, e.After = Modify, e.Before
	case kind == Remove:
		e.Kind = Remove
	case e.Kind == Remove:
		// Removed by one rule, written by a later one.
		e.Kind = Modify
	}
	if !strings.Contains("+"+e.Rule+"+", "+"+c.rule+"+") {
		if e.Rule != "" {
			e.Rule += "+"
		}
		e.Rule += c.rule
	}
	if !strings.Contains(e.Why, why) {
		if e.Why != "" {
			e.Why += "; "
		}
		e.Why += why
	}
}

// write plans new content for an existing file (or creates it with mode).
func (c *planner) write(path string, after []byte, mode fs.FileMode, why string) error {
	before, ok, err := c.read(path)
	if err != nil {
		return err
	}
	if ok && bytes.Equal(before, after) {
		return nil
	}
	kind := Modify
	if !ok {
		kind, before = Create, nil
	}
	if _, seen := c.files[path]; !seen && kind == Modify {
		if fi, err := c.root.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	c.record(path, kind, before, after, mode, why)
	return nil
}

func (c *planner) remove(path, why string) error {
	before, ok, err := c.read(path)
	if err != nil || !ok {
		return err
	}
	c.record(path, Remove, before, nil, 0, why)
	return nil
}

func (c *planner) warn(format string, args ...any) {
	c.plan.Warnings = append(c.plan.Warnings, fmt.Sprintf(format, args...))
}

func (c *planner) note(format string, args ...any) {
	c.plan.Notes = append(c.plan.Notes, fmt.Sprintf(format, args...))
}

// Apply writes the plan into root. Every file must still be as the plan
// found it; a plan with blockers is refused.
func (p *Plan) Apply(root guestfs.FS) error {
	if len(p.Blockers) > 0 {
		return fmt.Errorf("%w: %s", ErrBlocked, strings.Join(p.Blockers, "; "))
	}
	for _, e := range p.Edits {
		if e.Link != "" {
			if e.Kind == Create {
				if _, err := root.Lstat(e.Path); !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("/%s: %w", e.Path, ErrConflict)
				}
			} else if cur, err := root.ReadLink(e.Path); err != nil || cur != e.Link {
				return fmt.Errorf("/%s: %w", e.Path, ErrConflict)
			}
			continue
		}
		cur, err := root.ReadFile(e.Path)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reading /%s: %w", e.Path, err)
		}
		if (e.Kind == Create && exists) || (e.Kind != Create && (!exists || !bytes.Equal(cur, e.Before))) {
			return fmt.Errorf("/%s: %w", e.Path, ErrConflict)
		}
	}
	for _, e := range p.Edits {
		var err error
		switch e.Kind {
		case Remove:
			err = root.Remove(e.Path)
		case Create:
			if err = mkdirAll(root, path.Dir(e.Path), p.DirLabels); err != nil {
				break
			}
			if e.Link != "" {
				if err = root.Symlink(e.Link, e.Path); err == nil {
					err = label(root, e.Path, e.Label)
				}
				break
			}
			fallthrough
		default:
			mode := e.Mode
			if mode == 0 {
				mode = 0o644
			}
			if err = root.WriteFile(e.Path, e.After, mode); err == nil && e.Kind == Create {
				err = label(root, e.Path, e.Label)
			}
		}
		if err != nil {
			return fmt.Errorf("%s /%s: %w", e.Kind, e.Path, err)
		}
	}
	return nil
}

// mkdirAll creates dir and its missing parents (mode 0755, owner root),
// labelling them from labels.
func mkdirAll(root guestfs.FS, dir string, labels map[string]string) error {
	if dir == "." || dir == "" {
		return nil
	}
	if fi, err := root.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	}
	if err := mkdirAll(root, path.Dir(dir), labels); err != nil {
		return err
	}
	if err := root.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return label(root, dir, labels[dir])
}

// Diff renders the plan's edits as unified diffs, each preceded by a
// "# RULE: WHY" line.
func (p *Plan) Diff() string {
	var b strings.Builder
	for _, e := range p.Edits {
		fmt.Fprintf(&b, "# %s: %s\n", e.Rule, e.Why)
		b.WriteString(e.Diff())
	}
	return b.String()
}

// Diff renders the edit as a unified diff (from /dev/null for a created
// file, to /dev/null for a removed one); a binary file (an initrd) shows
// one line and its Summary instead.
func (e *Edit) Diff() string {
	from, to := "a/"+e.Path, "b/"+e.Path
	switch e.Kind {
	case Create:
		from = "/dev/null"
	case Remove:
		to = "/dev/null"
	}
	if e.Link != "" {
		return fmt.Sprintf("Symlink /%s -> %s (%s)\n", e.Path, e.Link, e.Kind)
	}
	if isText(e.Before) && isText(e.After) {
		return unifiedDiff(from, to, e.Before, e.After)
	}
	s := fmt.Sprintf("Binary file /%s (%s)\n", e.Path, e.Kind)
	if e.Summary != "" {
		s += e.Summary
		if !strings.HasSuffix(e.Summary, "\n") {
			s += "\n"
		}
	}
	return s
}

func unifiedDiff(from, to string, a, b []byte) string {
	s, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: diffLines(a), B: diffLines(b),
		FromFile: from, ToFile: to, Context: 3,
	})
	if err != nil {
		return fmt.Sprintf("(diff: %v)\n", err)
	}
	if s == "" {
		return fmt.Sprintf("--- %s\n+++ %s\n", from, to)
	}
	return s
}

// diffLines splits text into lines that keep their newline; a last line
// without one is marked as diff(1) marks it.
func diffLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		return lines[:len(lines)-1]
	}
	lines[len(lines)-1] += "\n\\ No newline at end of file\n"
	return lines
}

func isText(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}
