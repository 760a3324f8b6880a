// Package initrd reads, edits and writes Linux initial ramdisks (newc cpio
// archives, plain or compressed with gzip, zstd, xz, lzma or bzip2, one
// after the other, an early microcode cpio first) and rebuilds the
// initrds of RHEL 4/5 (mkinitrd's nash script) and RHEL 6 (dracut) so
// that they load extra kernel modules, such as the virtio drivers a guest
// needs on KVM.
//
// Everything in an archive that is not edited (device nodes, symlinks,
// hard links, owners, modes, times) is written back as it was.
//
//	img, err := initrd.Read(data)
//	if err != nil { ... }
//	script, err := img.ReadFile("init")
//	...
//	img.WriteFile("lib/virtio.ko", ko, 0o644)
//	out, err := img.Bytes()
package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
	"github.com/xen2kvm/xen2kvm/guestfs"
)

// ErrFormat is returned for data that is not a newc cpio archive, plain or
// gzip-compressed.
var ErrFormat = errors.New("not a newc cpio initrd")

// maxSize bounds an uncompressed initrd (RHEL 4-6 initrds are at most
// tens of MiB).
const maxSize = 256 << 20

// Compression names how an image is compressed.
type Compression string

const (
	Gzip  Compression = "gzip"
	Zstd  Compression = "zstd"
	XZ    Compression = "xz"
	LZMA  Compression = "lzma"
	Bzip2 Compression = "bzip2"
	None  Compression = "none"
)

// Image is an initrd held in memory.
type Image struct {
	// Compression is how the main archive is compressed.
	Compression Compression
	// prefix holds the uncompressed archives before a compressed one
	// (the early microcode cpio dracut puts first), written back byte
	// for byte.
	prefix  []byte
	entries []entry
	nextIno uint64
}

type entry struct {
	info cpio.Info
	data []byte
}

// Read parses an initrd: one or more newc archives, each plain or
// compressed (gzip, zstd, xz, lzma, bzip2), as the kernel unpacks them
// one after the other, a later member replacing an earlier one of its
// name. Plain archives before a compressed one are kept as they are and
// not listed.
func Read(data []byte) (*Image, error) {
	im := &Image{Compression: None}
	pos := 0
	var raws [][]byte
	for {
		pos = skipZeros(data, pos)
		if pos >= len(data) || !isNewc(data[pos:]) {
			break
		}
		n, err := checkNewc(data[pos:])
		if err != nil {
			return nil, err
		}
		raws = append(raws, data[pos:pos+n])
		pos += n
	}
	if pos < len(data) {
		c, raw, err := decompress(data[pos:])
		if err != nil {
			return nil, err
		}
		im.Compression = c
		im.prefix = data[:pos]
		raws = nil
		for p := 0; ; {
			p = skipZeros(raw, p)
			if p >= len(raw) {
				break
			}
			if !isNewc(raw[p:]) {
				return nil, fmt.Errorf("%w: %s data at offset %d is not a newc archive", ErrFormat, c, p)
			}
			n, err := checkNewc(raw[p:])
			if err != nil {
				return nil, err
			}
			raws = append(raws, raw[p:p+n])
			p += n
		}
	}
	for _, raw := range raws {
		if err := im.readArchive(raw); err != nil {
			return nil, err
		}
	}
	if len(im.entries) == 0 {
		return nil, fmt.Errorf("%w: empty archive", ErrFormat)
	}
	// A name given twice is extracted twice by the kernel, the later
	// member replacing the earlier: keep the later one only.
	last := map[string]int{}
	for i, e := range im.entries {
		last[e.info.Name] = i
	}
	if len(last) < len(im.entries) {
		kept := im.entries[:0]
		for i, e := range im.entries {
			if last[e.info.Name] == i {
				kept = append(kept, e)
			}
		}
		im.entries = kept
	}
	return im, nil
}

func isNewc(b []byte) bool {
	return bytes.HasPrefix(b, []byte("070701")) || bytes.HasPrefix(b, []byte("070702"))
}

// skipZeros skips the NUL padding the kernel allows between archives.
func skipZeros(b []byte, pos int) int {
	for pos < len(b) && b[pos] == 0 {
		pos++
	}
	return pos
}

// readArchive adds the members of one newc archive (checked by
// checkNewc) to the image.
func (im *Image) readArchive(raw []byte) error {
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	for {
		r, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading cpio: %w", err)
		}
		if r.Info.Name == cpio.Trailer {
			break
		}
		if r.Info.FileSize > uint64(len(raw)) {
			return fmt.Errorf("%w: member %s claims %d bytes, more than the archive", ErrFormat, r.Info.Name, r.Info.FileSize)
		}
		b := make([]byte, r.Info.FileSize)
		if r.Info.FileSize > 0 {
			if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
				return fmt.Errorf("reading cpio member %s: %w", r.Info.Name, err)
			}
		}
		im.entries = append(im.entries, entry{info: r.Info, data: b})
		im.nextIno = max(im.nextIno, r.Info.Ino+1)
	}
	return nil
}

// checkNewc walks the newc headers and checks that every name and file
// fits in the archive, so that a damaged header cannot make the reader
// allocate more than the archive holds. It returns the archive's length,
// through its trailer (all of raw when it has none).
func checkNewc(raw []byte) (int, error) {
	const hdrLen = 110
	pos := 0
	for pos < len(raw) {
		if len(raw)-pos < hdrLen {
			return 0, fmt.Errorf("%w: truncated header at offset %d", ErrFormat, pos)
		}
		h := raw[pos : pos+hdrLen]
		if string(h[:6]) != "070701" && string(h[:6]) != "070702" {
			return 0, fmt.Errorf("%w: bad magic at offset %d", ErrFormat, pos)
		}
		field := func(i int) (int, error) {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			return int(v), err
		}
		size, err1 := field(6)
		nameLen, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil {
			return 0, fmt.Errorf("%w: bad header at offset %d: %w", ErrFormat, pos, err)
		}
		nameEnd := pos + hdrLen + nameLen
		if nameLen == 0 || nameEnd > len(raw) {
			return 0, fmt.Errorf("%w: name of %d bytes at offset %d does not fit", ErrFormat, nameLen, pos)
		}
		name := string(raw[pos+hdrLen : nameEnd-1])
		data := (nameEnd + 3) &^ 3
		if size > len(raw)-min(data, len(raw)) {
			return 0, fmt.Errorf("%w: member %s claims %d bytes, more than the archive", ErrFormat, name, size)
		}
		if name == cpio.Trailer {
			return min((data+size+3)&^3, len(raw)), nil
		}
		pos = (data + size + 3) &^ 3
	}
	return len(raw), nil
}

func clean(name string) string {
	return cpio.Normalize(name)
}

// resolveDir follows the symlinks among the parent directories of name
// (lib -> usr/lib in a merged-/usr initramfs), not its last component.
func (im *Image) resolveDir(name string) string {
	name = clean(name)
	for hops := 0; hops < 40; hops++ {
		parts := strings.Split(name, "/")
		moved := false
		for i := 1; i < len(parts); i++ {
			dir := strings.Join(parts[:i], "/")
			j := im.find(dir)
			if j < 0 || im.entries[j].info.Mode&cpio.S_IFMT != cpio.S_IFLNK {
				continue
			}
			t := string(im.entries[j].data)
			if !strings.HasPrefix(t, "/") {
				t = path.Join(path.Dir(dir), t)
			}
			name = clean(path.Join(clean(t), strings.Join(parts[i:], "/")))
			moved = true
			break
		}
		if !moved {
			return name
		}
	}
	return name
}

func (im *Image) find(name string) int {
	name = clean(name)
	for i := len(im.entries) - 1; i >= 0; i-- {
		if im.entries[i].info.Name == name {
			return i
		}
	}
	return -1
}

// Names lists the members in archive order.
func (im *Image) Names() []string {
	out := make([]string, 0, len(im.entries))
	for _, e := range im.entries {
		out = append(out, e.info.Name)
	}
	return out
}

// Member describes one archive member.
type Member struct {
	Name       string
	Mode       fs.FileMode
	UID, GID   uint64
	NLink      uint64
	Ino        uint64
	Rmajor     uint64 // device numbers of device nodes
	Rminor     uint64
	Size       uint64
	LinkTarget string // for symlinks
}

// Stat describes a member without following symlinks.
func (im *Image) Stat(name string) (Member, error) {
	i := im.find(im.resolveDir(name))
	if i < 0 {
		return Member{}, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	e := im.entries[i]
	m := Member{Name: e.info.Name, Mode: unixMode(e.info.Mode), UID: e.info.UID, GID: e.info.GID,
		NLink: e.info.NLink, Ino: e.info.Ino, Rmajor: e.info.Rmajor, Rminor: e.info.Rminor,
		Size: e.info.FileSize}
	if m.Mode&fs.ModeSymlink != 0 {
		m.LinkTarget = string(e.data)
	}
	return m, nil
}

func unixMode(m uint64) fs.FileMode { return guestfs.FileMode(uint32(m)) }

// ReadFile returns the content of a regular file, following symlinks
// inside the archive.
func (im *Image) ReadFile(name string) ([]byte, error) {
	name = clean(name)
	for hops := 0; hops < 40; hops++ {
		name = im.resolveDir(name)
		i := im.find(name)
		if i < 0 {
			return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
		}
		e := im.entries[i]
		switch e.info.Mode & cpio.S_IFMT {
		case cpio.S_IFREG:
			if e.info.FileSize == 0 && e.info.NLink > 1 {
				// newc stores a hard-linked file's data with its last name.
				for j := len(im.entries) - 1; j >= 0; j-- {
					o := im.entries[j]
					if o.info.Ino == e.info.Ino && o.info.Mode&cpio.S_IFMT == cpio.S_IFREG && len(o.data) > 0 {
						return slices.Clone(o.data), nil
					}
				}
			}
			return slices.Clone(e.data), nil
		case cpio.S_IFLNK:
			t := string(e.data)
			if strings.HasPrefix(t, "/") {
				name = clean(t)
			} else {
				name = clean(path.Join(path.Dir(name), t))
			}
		default:
			return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("not a regular file")}
		}
	}
	return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("too many levels of symbolic links")}
}

// WriteFile replaces the content of a regular file, keeping its metadata,
// or adds a new one (owner root, mode perm) after creating any missing
// parent directories.
func (im *Image) WriteFile(name string, data []byte, perm fs.FileMode) error {
	name = im.resolveDir(name)
	if i := im.find(name); i >= 0 {
		e := &im.entries[i]
		if e.info.Mode&cpio.S_IFMT != cpio.S_IFREG {
			return &fs.PathError{Op: "write", Path: name, Err: errors.New("not a regular file")}
		}
		if e.info.NLink > 1 {
			// Leave the other names with their old content: the edited
			// name becomes its own file.
			e.info.NLink = 1
			e.info.Ino = im.ino()
		}
		e.data = slices.Clone(data)
		e.info.FileSize = uint64(len(data))
		return nil
	}
	if err := im.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	im.entries = append(im.entries, entry{
		info: cpio.Info{Name: name, Mode: cpio.S_IFREG | uint64(perm.Perm()), NLink: 1, Ino: im.ino(),
			MTime: im.mtime(), FileSize: uint64(len(data))},
		data: slices.Clone(data),
	})
	return nil
}

// Remove removes a member (a directory only when nothing below it is left).
func (im *Image) Remove(name string) error {
	name = im.resolveDir(name)
	i := im.find(name)
	if i < 0 {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	for _, e := range im.entries {
		if strings.HasPrefix(e.info.Name, name+"/") {
			return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
		}
	}
	im.entries = slices.Delete(im.entries, i, i+1)
	return nil
}

func (im *Image) ino() uint64 {
	if im.nextIno == 0 {
		im.nextIno = 1
	}
	n := im.nextIno
	im.nextIno++
	return n
}

// mtime is the time new members get: the newest time already in the
// archive, so that rebuilding is reproducible.
func (im *Image) mtime() uint64 {
	var t uint64
	for _, e := range im.entries {
		t = max(t, e.info.MTime)
	}
	return t
}

func (im *Image) mkdirAll(dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	dir = im.resolveDir(dir)
	if i := im.find(dir); i >= 0 {
		if im.entries[i].info.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			// A symlinked directory (lib -> usr/lib) is fine too.
			if im.entries[i].info.Mode&cpio.S_IFMT == cpio.S_IFLNK {
				return nil
			}
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	}
	if err := im.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	im.entries = append(im.entries, entry{info: cpio.Info{Name: dir, Mode: cpio.S_IFDIR | 0o755, NLink: 2,
		Ino: im.ino(), MTime: im.mtime()}})
	return nil
}

// Bytes writes the image: any plain archives that came before the
// compressed one as they were, then all members in one archive,
// compressed as it was read.
func (im *Image) Bytes() ([]byte, error) {
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	for _, e := range im.entries {
		r := cpio.StaticRecord(e.data, e.info)
		if len(e.data) == 0 {
			r.ReaderAt = nil
		}
		if err := w.WriteRecord(r); err != nil {
			return nil, fmt.Errorf("writing cpio member %s: %w", e.info.Name, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("writing cpio trailer: %w", err)
	}
	out := bytes.NewBuffer(slices.Clone(im.prefix))
	if err := compress(out, im.Compression, raw.Bytes()); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
