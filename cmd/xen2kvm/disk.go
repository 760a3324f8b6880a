package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/probe"
	"github.com/xen2kvm/xen2kvm/report"
)

func init() { register(newDiskCommand) }

func newDiskCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Convert and describe disk images",
		Long: `Convert and describe disk images on their own, outside a migration.

Images are detected by content: raw files and block devices, qcow2 (v2/v3,
compressed clusters, backing files), qcow v1 as RHEL 5's blktap writes it
for tap:qcow: disks, and VHD (fixed and dynamic, tap:vhd:). Sources are
only ever opened read-only.`,
	}
	cmd.AddCommand(newDiskConvertCommand(), newDiskInfoCommand())
	return cmd
}

func newDiskConvertCommand() *cobra.Command {
	var (
		format      string
		compress    bool
		workers     int
		clusterSize int
		prealloc    bool
		force       bool
	)
	cmd := &cobra.Command{
		Use:   "convert SRC DST",
		Short: "Copy a disk image into a new qcow2 or sparse raw image",
		Long: `Copy the disk image or block device SRC into a new image DST.

Only SRC's allocated data is read and clusters holding only zeros are not
written, so sparse images stay sparse. Chunks are copied by a pool of
workers with a fixed amount of memory, whatever the image size. DST is
written under a temporary name next to it, synced and renamed only when
complete: an interrupted or failed copy leaves no DST behind. An existing
DST is only replaced with --force. A progress bar is drawn when stderr is a
terminal.`,
		Example: `  # A blktap qcow disk to a qcow2 for KVM:
  xen2kvm disk convert /var/lib/xen/images/web01.qcow web01-vda.qcow2

  # An LV used as phy: disk, to a sparse raw file:
  xen2kvm disk convert -O raw /dev/VolGroup00/web01 web01-vda.raw`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != diskimg.OutputQCOW2 && format != diskimg.OutputRaw {
				return usagef("-O %q: the output format is qcow2 or raw", format)
			}
			if workers < 1 {
				return usagef("--workers %d: need at least 1", workers)
			}
			if clusterSize < 512 || clusterSize > 2<<20 || clusterSize&(clusterSize-1) != 0 {
				return usagef("--cluster-size %d: a power of two from 512 to 2097152", clusterSize)
			}
			src, dst := args[0], args[1]
			if err := diskimg.CheckOutputPath(dst); err != nil {
				return err // a device or FIFO: --force would not help
			}
			if _, err := os.Lstat(dst); err == nil && !force {
				return withHint(fmt.Errorf("%s already exists", dst), "pass --force to replace it (check the argument order: SRC first, then DST)")
			}
			img, err := diskimg.Open(src)
			if err != nil {
				return diskHint(err)
			}
			defer img.Close()
			con := newConsole(cmd.ErrOrStderr())
			key := "converting " + src
			var size int64
			start := time.Now()
			err = diskimg.Convert(cmd.Context(), img, dst, format,
				diskimg.WithProgress(func(done, total int64) { size = total; con.update(key, done, total, false) }),
				diskimg.WithWorkers(workers),
				diskimg.WithCompression(compress),
				diskimg.WithClusterSize(clusterSize),
				diskimg.WithPreallocation(prealloc))
			if err == nil {
				con.update(key, size, size, true)
			}
			con.done()
			if err != nil {
				return diskHint(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (%s, %s) -> %s (%s) in %s\n", src, img.Format(), humanBytes(img.Size()), dst, format, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&format, "output-format", "O", diskimg.OutputQCOW2, "output format: qcow2 or raw (sparse)")
	fl.BoolVarP(&compress, "compress", "c", false, "compress qcow2 clusters (zlib)")
	fl.IntVar(&workers, "workers", 8, "chunks copied at once")
	fl.IntVar(&clusterSize, "cluster-size", 64<<10, "qcow2 cluster size in bytes")
	fl.BoolVar(&prealloc, "preallocate", false, "preallocate the output (raw: the whole file; qcow2: its L2 tables)")
	fl.BoolVar(&force, "force", false, "replace DST if it exists")
	return cmd
}

// diskInfo is the output of disk info.
type diskInfo struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	// VirtualSize is the size the guest sees.
	VirtualSize int64 `json:"virtual_size"`
	// AllocatedBytes is how much of the virtual disk is mapped to data
	// (raw: SEEK_DATA; other formats: their allocation tables).
	AllocatedBytes int64 `json:"allocated_bytes"`
	// DiskUsage is the space the image file takes on its filesystem.
	DiskUsage   int64         `json:"disk_usage,omitempty"`
	BlockDevice bool          `json:"block_device,omitempty"`
	Backing     []diskBacking `json:"backing,omitempty"`
	Layout      *probe.Layout `json:"layout,omitempty"`
	LayoutError string        `json:"layout_error,omitempty"`
}

type diskBacking struct {
	Path   string `json:"path"`
	Format string `json:"format"`
}

func newDiskInfoCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info IMAGE",
		Short: "Show an image's format, sizes, partitions, LVs and filesystems",
		Long: `Show what a disk image or block device is and holds: its format (detected
from the content), virtual size, how much of it is allocated, its backing
chain, its partition table, the LVM logical volumes on it and the
filesystem type of each partition and LV. An image whose layout cannot be
read is shown as far as it can be, and the exit status is 1.`,
		Example: `  xen2kvm disk info /var/lib/xen/images/rhel5.img
  xen2kvm disk info --json web01.qcow2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := diskimg.Open(args[0])
			if err != nil {
				return diskHint(err)
			}
			defer img.Close()
			info, err := describeDisk(cmd, img)
			if err != nil {
				return diskHint(err)
			}
			if asJSON {
				b, err := json.MarshalIndent(info, "", "  ")
				if err != nil {
					return err
				}
				if _, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b); err != nil {
					return err
				}
			} else {
				writeDiskInfo(cmd.OutOrStdout(), info)
			}
			if info.LayoutError != "" {
				// What could be read is shown; the exit status says the
				// rest could not.
				return withHint(fmt.Errorf("%s: reading its partitions, LVM volumes and filesystems: %s", args[0], info.LayoutError),
					"the image is damaged or shorter than its partition table says (was it copied completely?)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func describeDisk(cmd *cobra.Command, img *diskimg.Image) (*diskInfo, error) {
	ext, err := img.Extents(cmd.Context())
	if err != nil {
		return nil, err
	}
	info := &diskInfo{Path: img.Path(), Format: img.Format(), VirtualSize: img.Size(), BlockDevice: img.BlockDevice()}
	for _, e := range ext {
		info.AllocatedBytes += e.Length
	}
	if st, err := os.Stat(img.Path()); err == nil && st.Mode().IsRegular() {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			info.DiskUsage = sys.Blocks * 512
		}
	}
	for b := img.Backing(); b != nil; b = b.Backing() {
		info.Backing = append(info.Backing, diskBacking{Path: b.Path(), Format: b.Format()})
	}
	// What the disk holds: a damaged table is reported, not fatal, since
	// the image itself was read fine.
	if info.Layout, err = probe.Disk(img); err != nil {
		info.LayoutError = err.Error()
	}
	return info, nil
}

func writeDiskInfo(w io.Writer, in *diskInfo) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "image:\t%s\n", in.Path)
	format := in.Format
	if in.BlockDevice {
		format += " (block device)"
	}
	fmt.Fprintf(tw, "format:\t%s\n", format)
	fmt.Fprintf(tw, "virtual size:\t%s (%d bytes)\n", humanBytes(in.VirtualSize), in.VirtualSize)
	fmt.Fprintf(tw, "allocated:\t%s (%d bytes)\n", humanBytes(in.AllocatedBytes), in.AllocatedBytes)
	if in.DiskUsage > 0 {
		fmt.Fprintf(tw, "disk usage:\t%s\n", humanBytes(in.DiskUsage))
	}
	for _, b := range in.Backing {
		fmt.Fprintf(tw, "backing file:\t%s (%s)\n", b.Path, b.Format)
	}
	tw.Flush()
	if in.LayoutError != "" {
		fmt.Fprintf(w, "layout: unreadable: %s\n", in.LayoutError)
		return
	}
	l := in.Layout
	if l == nil {
		return
	}
	if l.Content != nil {
		fmt.Fprintf(w, "partition table: none; whole disk: %s\n", contentText(*l.Content))
	}
	if l.Scheme != "" {
		fmt.Fprintf(w, "partition table: %s\n", l.Scheme)
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\ttype\tstart\tsize\tcontent")
		for _, p := range l.Partitions {
			c := contentText(p.Content)
			if p.Extended {
				c = "extended"
			}
			if p.Bootable {
				c += " (boot)"
			}
			if p.Missing > 0 {
				c += fmt.Sprintf(" (cut short: the image ends %s before the partition does)", humanBytes(p.Missing))
			}
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s\n", p.Number, p.Type, p.Start, humanBytes(p.Size), c)
		}
		tw.Flush()
	}
	if len(l.LVs) > 0 {
		fmt.Fprintln(w, "logical volumes:")
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		for _, lv := range l.LVs {
			c := contentText(lv.Content)
			if lv.Error != "" {
				c = "unreadable: " + lv.Error
			}
			fmt.Fprintf(tw, "  %s/%s\t%s\t%s\t%s\n", lv.VG, lv.Name, lv.Type, humanBytes(lv.Size), c)
		}
		tw.Flush()
	}
}

func contentText(c probe.Content) string {
	if c.Type == "" {
		return "-"
	}
	var b strings.Builder
	b.WriteString(c.Type)
	if c.Label != "" {
		fmt.Fprintf(&b, " label=%q", c.Label)
	}
	if c.UUID != "" {
		fmt.Fprintf(&b, " uuid=%s", c.UUID)
	}
	return b.String()
}

// humanBytes formats n with a binary unit, as the migration report does:
// "8.0 GiB".
func humanBytes(n int64) string { return report.Bytes(n) }
