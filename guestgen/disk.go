package guestgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Disks are laid out as RHEL 5's installer did: a 255-head, 63-sector
// geometry, the first partition at sector 63 and every partition ending
// on a cylinder boundary.
const (
	sectorSize = 512
	heads      = 255
	sectors    = 63
	cylinder   = heads * sectors // sectors per cylinder
)

type partition struct {
	Start, Size uint64 // in sectors
	Type        byte
	Boot        bool
}

// Offset and Bytes are the partition's place in the image, in bytes.
func (p partition) Offset() int64 { return int64(p.Start) * sectorSize }
func (p partition) Bytes() int64  { return int64(p.Size) * sectorSize }

// cylinderPartitions splits a disk into partitions of the given numbers
// of cylinders, the first starting at sector 63; n <= 0 takes the rest.
func cylinderPartitions(diskBytes int64, cyls []int, types []byte) ([]partition, error) {
	total := int(diskBytes / sectorSize / cylinder)
	var parts []partition
	c := 0
	for i, n := range cyls {
		if n <= 0 {
			n = total - c
		}
		if n <= 0 || c+n > total {
			return nil, fmt.Errorf("a %d MiB disk has no room for partition %d", diskBytes>>20, i+1)
		}
		start := uint64(c * cylinder)
		if c == 0 {
			start = sectors
		}
		parts = append(parts, partition{Start: start, Size: uint64((c+n)*cylinder) - start, Type: types[i], Boot: i == 0})
		c += n
	}
	return parts, nil
}

// chs encodes an LBA as an MBR CHS triple, capped at 1023/254/63.
func chs(lba uint64) [3]byte {
	c := lba / cylinder
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	if c > 1023 {
		c, h, s = 1023, heads-1, sectors
	}
	return [3]byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// mbr builds a master boot record with no boot code.
func mbr(signature uint32, parts []partition) []byte {
	b := make([]byte, sectorSize)
	binary.LittleEndian.PutUint32(b[440:], signature)
	for i, p := range parts {
		e := b[446+16*i:]
		if p.Boot {
			e[0] = 0x80
		}
		first, last := chs(p.Start), chs(p.Start+p.Size-1)
		copy(e[1:4], first[:])
		e[4] = p.Type
		copy(e[5:8], last[:])
		binary.LittleEndian.PutUint32(e[8:], uint32(p.Start))
		binary.LittleEndian.PutUint32(e[12:], uint32(p.Size))
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

// createImage makes a sparse image file of the given size with an MBR.
func createImage(path string, size int64, signature uint32, parts []partition) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteAt(mbr(signature, parts), 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeAt(path string, off int64, data []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, off); err != nil {
		f.Close()
		return fmt.Errorf("writing %s at %d: %w", path, off, err)
	}
	return f.Close()
}

// ext3 describes a filesystem mke2fs makes inside an image.
type ext3 struct {
	Offset, Size int64 // bytes
	Label, UUID  string
	BlockSize    int    // 0: mke2fs's choice
	Tree         string // contents (mke2fs -d)
	// Immutable files get the immutable flag (chattr +i): not even root
	// can remove them.
	Immutable []string
	// Type is ext3 (when empty) or ext4; Conf is the mke2fs.conf to use
	// (RHEL 5's defaults when empty); InodeSize is 128 when 0.
	Type      string
	Conf      string
	InodeSize int
}

// mke2fsConf gives mke2fs the defaults of RHEL 5's e2fsprogs whatever the
// host's /etc/mke2fs.conf says.
const mke2fsConf = `[defaults]
	base_features = sparse_super,filetype,resize_inode,dir_index,ext_attr
	blocksize = 4096
	inode_size = 128
	inode_ratio = 8192
[fs_types]
	ext3 = {
		features = has_journal
	}
	small = {
		blocksize = 1024
		inode_ratio = 4096
	}
`

// mkext3 runs mke2fs to make an ext3 filesystem, as RHEL 5 made them
// (128-byte inodes), at an offset inside an existing image file.
func mkext3(ctx context.Context, img string, fs ext3) error {
	typ, conf, isize := fs.Type, fs.Conf, fs.InodeSize
	if typ == "" {
		typ = "ext3"
	}
	if conf == "" {
		conf = mke2fsConf
	}
	if isize == 0 {
		isize = 128
	}
	args := []string{"-F", "-q", "-t", typ, "-I", strconv.Itoa(isize), "-L", fs.Label, "-U", fs.UUID,
		"-E", fmt.Sprintf("offset=%d,nodiscard,root_owner=0:0,hash_seed=%s", fs.Offset, fs.UUID),
		"-d", fs.Tree}
	if fs.BlockSize != 0 {
		args = append(args, "-b", strconv.Itoa(fs.BlockSize))
	}
	args = append(args, img, strconv.FormatInt(fs.Size/1024, 10)+"k")
	cmd := exec.CommandContext(ctx, "mke2fs", args...)
	confFile := filepath.Join(filepath.Dir(fs.Tree), "mke2fs.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return err
	}
	cmd.Env = append(os.Environ(), "MKE2FS_CONFIG="+confFile, "E2FSPROGS_FAKE_TIME=1257000000")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mke2fs %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	var script strings.Builder
	for _, f := range fs.Immutable {
		fmt.Fprintf(&script, "sif \"/%s\" flags 0x10\n", f) // EXT2_IMMUTABLE_FL
	}
	if script.Len() > 0 {
		if err := debugfs(ctx, img, fs, "flags.debugfs", script.String()); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 {
		return chownRoot(ctx, img, fs)
	}
	return nil
}

// debugfs runs a debugfs -w script on the filesystem fs in img.
func debugfs(ctx context.Context, img string, fs ext3, name, script string) error {
	cmdFile := filepath.Join(filepath.Dir(fs.Tree), name)
	if err := os.WriteFile(cmdFile, []byte(script), 0o644); err != nil {
		return err
	}
	target := fmt.Sprintf("%s?offset=%d", img, fs.Offset)
	cmd := exec.CommandContext(ctx, "debugfs", "-w", "-f", cmdFile, target)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("debugfs -w -f %s %s: %w: %s", cmdFile, target, err, bytes.TrimSpace(out))
	}
	return nil
}

// chownRoot gives every file of a filesystem made by a user other than
// root to root, as a guest's files are: mke2fs -d copies the owner.
func chownRoot(ctx context.Context, img string, fs ext3) error {
	var script strings.Builder
	err := filepath.WalkDir(fs.Tree, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(fs.Tree, p)
		if err != nil || rel == "." {
			return err
		}
		fmt.Fprintf(&script, "sif \"/%s\" uid 0\nsif \"/%s\" gid 0\n", rel, rel)
		return nil
	})
	if err != nil {
		return err
	}
	return debugfs(ctx, img, fs, "chown.debugfs", script.String())
}

// swapHeader is a version 1 Linux swap signature for a swap area of the
// given size.
func swapHeader(size int64, uuid [16]byte) []byte {
	const page = 4096
	b := make([]byte, page)
	binary.LittleEndian.PutUint32(b[1024:], 1)                   // version
	binary.LittleEndian.PutUint32(b[1028:], uint32(size/page-1)) // last page
	copy(b[1036:], uuid[:])
	copy(b[page-10:], "SWAPSPACE2")
	return b
}
