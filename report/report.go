// Package report holds what xen2kvm says about a migration: per guest the
// source config summary, each disk with its size and copy estimate, the
// planned in-guest edits as unified diffs, the target KVM definition,
// warnings, blockers and, after a real run, validation and boot results.
// The same model is written as text, JSON or one self-contained HTML page.
// It also renders what xen2kvm inspect finds (Inspection), as text or JSON.
//
//	g := &report.Guest{Name: "web01", ...}
//	report.WriteText(os.Stdout, g)
//	report.WriteHTML(f, g) // html/template, inline CSS, no external resources
package report

import (
	"encoding/json"
	"io"
	"time"
)

// Status is where a guest's migration stands.
type Status string

const (
	StatusPlanned  Status = "planned"  // dry run: nothing was written
	StatusBlocked  Status = "blocked"  // the conversion cannot proceed
	StatusMigrated Status = "migrated" // output written and validated
	StatusFailed   Status = "failed"   // an error stopped the migration
)

// Guest is the report of one guest.
type Guest struct {
	Name   string `json:"name"`
	Config string `json:"config"` // the Xen config file
	Status Status `json:"status"`
	DryRun bool   `json:"dry_run"`
	// Error is why the migration failed, when it did.
	Error string `json:"error,omitempty"`

	Source Source `json:"source"`
	// Host is the Xen host the guest was read from over SSH, or nil for
	// a local config.
	Host *SourceHost `json:"host,omitempty"`
	// Warm is the account of a warm migration (--warm), nil for a cold
	// one.
	Warm  *Warm  `json:"warm,omitempty"`
	OS    *OS    `json:"os,omitempty"`
	Disks []Disk `json:"disks"`
	Edits []Edit `json:"edits"`
	// TargetXML is the libvirt domain XML of the KVM guest.
	TargetXML string `json:"target_xml,omitempty"`
	// OutDir is where the output is (or would be) written.
	OutDir string `json:"outdir,omitempty"`
	// Files are the output files, relative to OutDir.
	Files []string `json:"files,omitempty"`

	Warnings []string `json:"warnings"`
	Blockers []string `json:"blockers"`
	// Notes say what was decided without an edit inside the guest.
	Notes []string `json:"notes,omitempty"`

	Validation []Check `json:"validation,omitempty"`
	Boot       *Boot   `json:"boot,omitempty"`
	// Destination is the libvirt host the guest was delivered to (migrate
	// --to), when it was.
	Destination *Destination `json:"destination,omitempty"`

	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// SourceHost is the Xen host a guest was read from over SSH.
type SourceHost struct {
	URL        string `json:"url"`                   // ssh://root@xen01/web01
	Address    string `json:"address"`               // xen01:22
	ConfigFrom string `json:"config_from,omitempty"` // xm list -l web01 | xm create --dryrun /etc/xen/web01 | sftp /etc/xen/web01
	State      string `json:"state,omitempty"`       // xm's state flags when xm listed it
	BytesRead  int64  `json:"bytes_read"`            // disk data read over the network
	Reconnects int    `json:"reconnects"`            // dropped connections re-established
}

// Warm is a warm migration: pass 1 copied the disks while the guest ran,
// pass 2 moved the blocks that changed after it stopped.
type Warm struct {
	BlockSize  int64  `json:"block_size"`
	HashMethod string `json:"hash_method"` // auto | python | dd
	// Hash is the block hash both passes used, md5 or sha1 (the faster on
	// the host); empty in a dry run.
	Hash string `json:"hash,omitempty"`
	// HashHelpers is how many helpers hashed each disk at once on the
	// host (one a host CPU, up to a bound shared by the disks).
	HashHelpers int `json:"hash_helpers,omitempty"`
	// Resumed: pass 1 was done by an earlier run.
	Resumed bool     `json:"resumed,omitempty"`
	Pass1   WarmPass `json:"pass1"`
	Pass2   WarmPass `json:"pass2"`
	// ShutdownBy says who stopped the guest: "xen2kvm" (xm shutdown -w,
	// --shutdown-source), "user" (xen2kvm waited) or "" (it was off).
	ShutdownBy string    `json:"shutdown_by,omitempty"`
	Stopped    time.Time `json:"stopped"` // when the guest was seen stopped
	// OutputFromPasses counts the disks whose output image the passes
	// wrote (pass 1 wrote it, pass 2 patched it) and the conversion only
	// patched, with PatchedBytes of its changes: those disks were not
	// copied again while the guest was down.
	OutputFromPasses int   `json:"output_from_passes"`
	PatchedBytes     int64 `json:"patched_bytes"`
	// PlannedBytes (a dry run) is what pass 1 would read at most: the
	// disks' sizes (blocks the host hashes as zeros are not moved), in
	// Pass1.Blocks blocks, into Folder.
	PlannedBytes int64  `json:"planned_bytes,omitempty"`
	Folder       string `json:"folder,omitempty"`
	// DowntimeSeconds runs from Stopped to the converted guest being
	// ready (checked, booted, written).
	DowntimeSeconds float64 `json:"downtime_seconds"`
}

// WarmPass is one pass over the guest's disks.
type WarmPass struct {
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	Seconds       float64   `json:"seconds"`
	BytesRead     int64     `json:"bytes_read"`               // moved over the network
	Blocks        int64     `json:"blocks"`                   // of all disks
	ChangedBlocks int64     `json:"changed_blocks,omitempty"` // pass 2: hashes that differed
	ZeroBlocks    int64     `json:"zero_blocks,omitempty"`    // pass 2: changed to zeros, punched without a read
}

// Source summarises the Xen domain config.
type Source struct {
	File         string `json:"file"`
	Format       string `json:"format"`         // xm | xl | sxp | libvirt
	Type         string `json:"type"`           // pv | hvm
	MemoryMiB    int64  `json:"memory_mib"`     // at boot
	MaxMemoryMiB int64  `json:"max_memory_mib"` // ceiling
	VCPUs        int    `json:"vcpus"`
	Bootloader   string `json:"bootloader,omitempty"`
	Kernel       string `json:"kernel,omitempty"`
	NICs         []NIC  `json:"nics,omitempty"`
}

// NIC is a network interface, as on Xen and on KVM.
type NIC struct {
	MAC      string `json:"mac"`
	Bridge   string `json:"bridge,omitempty"`
	Model    string `json:"model,omitempty"`     // Xen side
	NewModel string `json:"new_model,omitempty"` // KVM side
	// NewMAC is the KVM NIC's MAC address and MACFrom where it comes
	// from: the Xen config, a HWADDR of the guest's, or made by xen2kvm.
	NewMAC  string `json:"new_mac,omitempty"`
	MACFrom string `json:"mac_from,omitempty"`
}

// OS is what inspection found inside the guest.
type OS struct {
	Distro  string `json:"distro,omitempty"`
	Version string `json:"version,omitempty"`
	Arch    string `json:"arch,omitempty"`
	// Kernel is the kernel the KVM guest will boot.
	Kernel string `json:"kernel,omitempty"`
	Virtio bool   `json:"virtio"`
	// Details are further findings, one a line (for Windows: host name,
	// control set, boot configuration, clock, drivers).
	Details []string `json:"details,omitempty"`
	// Windows is what Windows inspection found (convert.Windows), for
	// readers of the JSON.
	Windows any `json:"windows,omitempty"`
}

// Disk is one disk of the guest.
type Disk struct {
	Source       string `json:"source"`                  // path in the Xen config
	Path         string `json:"path"`                    // path read, after --disk-map
	Backend      string `json:"backend,omitempty"`       // file | phy | tap:aio | ...
	SourceFormat string `json:"source_format,omitempty"` // as detected
	Target       string `json:"target"`                  // Xen device, e.g. xvda
	NewTarget    string `json:"new_target"`              // KVM device, e.g. vda
	Bus          string `json:"bus,omitempty"`           // virtio | ide
	Device       string `json:"device,omitempty"`        // disk | cdrom

	VirtualSize int64  `json:"virtual_size"`
	Allocated   int64  `json:"allocated"` // bytes holding data in the source
	Format      string `json:"format"`    // target format
	Output      string `json:"output,omitempty"`

	EstimatedSize        int64   `json:"estimated_size"`
	EstimatedCopySeconds float64 `json:"estimated_copy_seconds"`
	// CopySeconds is the measured copy time, after a real run.
	CopySeconds float64 `json:"copy_seconds,omitempty"`
	// OutputSize is the size of the written image, after a real run.
	OutputSize int64 `json:"output_size,omitempty"`
	// BytesRead is the data read from the Xen host over SSH.
	BytesRead int64 `json:"bytes_read,omitempty"`
	// HostZeroBytes is how much of the disk the host's zero map
	// (--host-zero-map) found all zeros: never read over SSH.
	HostZeroBytes int64 `json:"host_zero_bytes,omitempty"`
}

// Edit is one planned or applied change inside the guest.
type Edit struct {
	Path string `json:"path"`
	Rule string `json:"rule,omitempty"`
	Why  string `json:"why,omitempty"`
	// Diff is a unified diff of the change (for binary files such as an
	// initrd, a summary of what is added).
	Diff string `json:"diff"`
}

// Check is one validation step over the written output.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Warning is something found that does not fail the check (damage
	// in the source the migration carried over as it was).
	Warning string `json:"warning,omitempty"`
}

// Boot is the result of the boot check.
type Boot struct {
	Ran     bool    `json:"ran"`
	OK      bool    `json:"ok"`
	Accel   string  `json:"accel,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	// Skipped says why the boot check did not run.
	Skipped string `json:"skipped,omitempty"`
	Detail  string `json:"detail,omitempty"`

	// Reboots counts the reboots the guest made on its own during its
	// first boot (an SELinux relabel, a repairing fsck).
	Reboots int `json:"reboots"`
	// Shutdown is how the guest was stopped: "powerdown" (it powered off
	// after the ACPI power button), "quit" or "kill" (it did not: its
	// filesystems were not cleanly unmounted).
	Shutdown string `json:"shutdown,omitempty"`
	// Findings are the problems the guest printed on its serial console.
	Findings []Finding `json:"findings,omitempty"`
	// Network is the proof that the guest's network answers.
	Network *NetworkProof `json:"network,omitempty"`
	// Drift is what the first boot changed on the guest's own disk.
	Drift *Drift `json:"drift,omitempty"`
	// Warnings are problems that did not fail the check.
	Warnings []string `json:"warnings,omitempty"`
}

// Finding is a line of the guest's serial console reporting a problem.
type Finding struct {
	Kind    string  `json:"kind"` // failed, panic, root, fsck, read-only, oops, respawn
	Line    int     `json:"line"` // in the serial log, from 1
	Seconds float64 `json:"seconds"`
	Text    string  `json:"text"`
}

// NetworkProof tells whether, and how, the guest's network answered.
type NetworkProof struct {
	OK bool `json:"ok"`
	// Proof is the one that held: "tcp" (an answer on the port), "arp"
	// or "icmp" (an answer in the packet capture).
	Proof   string `json:"proof,omitempty"`
	Detail  string `json:"detail"`
	MAC     string `json:"mac,omitempty"`
	GuestIP string `json:"guest_ip,omitempty"`
	Port    int    `json:"port,omitempty"`
	// Config is where the guest's address came from ("static
	// 192.168.122.50/24 from etc/sysconfig/network-scripts/ifcfg-eth0",
	// "dhcp").
	Config string `json:"config,omitempty"`
}

// Drift is what the guest's first boot changed in its /etc and /boot
// (and which logs it wrote), read back from the boot's overlay.
type Drift struct {
	// Dirs are the folders compared file by file.
	Dirs  []string    `json:"dirs"`
	Files []DriftFile `json:"files"`
	// Flagged counts the files whose change means a broken conversion.
	Flagged int `json:"flagged"`
	// Allowed: flagged drift was only a warning (--allow-drift).
	Allowed bool `json:"allowed,omitempty"`
	// Error says why the drift could not be read.
	Error string `json:"error,omitempty"`
}

// DriftFile is one file the first boot created, changed or removed.
type DriftFile struct {
	Path   string `json:"path"`
	Change string `json:"change"` // created, changed, removed
	// Flag says why this change means a broken conversion ("" when it
	// does not).
	Flag string `json:"flag,omitempty"`
	// Diff is a unified diff for text files under the compared folders,
	// a one-line summary otherwise.
	Diff string `json:"diff,omitempty"`
}

// Destination is where a guest was delivered through libvirt.
type Destination struct {
	URI        string   `json:"uri"`
	Pool       string   `json:"pool"`
	DomainType string   `json:"domain_type"` // kvm | qemu
	Volumes    []string `json:"volumes"`
	// Recovered are volumes an interrupted earlier run left, replaced.
	Recovered []string `json:"recovered,omitempty"`
	// Replaced are existing volumes replaced because of --force.
	Replaced []string `json:"replaced,omitempty"`
	// Shared are volumes other guests may use too (the virtio-win ISO):
	// not the guest's own, never deleted with it.
	Shared  []SharedVolume `json:"shared,omitempty"`
	Defined bool           `json:"defined"`
	Started bool           `json:"started"`
	// Placement says why this destination was picked (batch with several).
	Placement string `json:"placement,omitempty"`
}

// SharedVolume is a volume of the pool that guests share.
type SharedVolume struct {
	Name string `json:"name"`
	// Uploaded: this run uploaded it; otherwise it was there and reused.
	Uploaded bool `json:"uploaded"`
}

// WriteJSON writes the guests as indented JSON: one object for one
// guest, an array for several.
func WriteJSON(w io.Writer, guests ...*Guest) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(guests) == 1 {
		return enc.Encode(guests[0])
	}
	if guests == nil {
		guests = []*Guest{}
	}
	return enc.Encode(guests)
}
