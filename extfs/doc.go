// Package extfs reads and edits ext2, ext3 and ext4 filesystems directly on
// a block device (diskimg.Device): an image, a partition, an LVM volume or a
// copy-on-write overlay. Nothing is mounted and no guest binary runs.
//
// Reading follows io/fs: *FS implements fs.FS, fs.ReadFileFS, fs.ReadDirFS
// and fs.StatFS, and FileInfo.Sys returns a *guestfs.Stat. Editing is done
// with explicit methods (WriteFile, Mkdir, Symlink, Rename, Remove, Chmod,
// Chown, Chtimes, SetXattr, RemoveXattr); each call either completes or leaves the device as it was
// (changes are staged in memory and written at the end of the call; only a
// device failing during that final write can leave part of a call done).
//
//	fsys, err := extfs.Open(dev)
//	if err != nil {
//		return err
//	}
//	defer fsys.Close()
//	fstab, err := fsys.ReadFile("etc/fstab")
//	...
//	err = fsys.WriteFile("etc/fstab", newFstab, 0o644)
//
// Extended attributes (security.selinux labels, user.*, trusted.*,
// system.*) are read and written in the inode (after i_extra_isize) and in
// an attribute block, which is copied before a change when other inodes
// share it (ListXattr, GetXattr, SetXattr, RemoveXattr; none follows a
// final symlink). Values stored in separate inodes (ea_inode) are refused.
//
// Supported on-disk formats: block maps (direct, indirect, double and triple
// indirect) and extent trees, linear and htree directories, 128- and
// 256-byte inodes, 32- and 64-bit group descriptors, flex_bg, uninit_bg
// (group descriptor checksums are kept), huge_file, dir_nlink and
// extra_isize. Filesystems with metadata_csum, bigalloc, inline_data,
// encryption or quota can be opened only with ReadOnly: Open refuses them
// for writing before anything is written.
//
// A filesystem whose journal needs recovery is replayed first: into the
// device when writable, into memory only when opened ReadOnly, so a
// read-only open never writes. A journal that cannot be replayed (external
// journal, fast commits) makes Open fail with ErrNeedsRecovery (a
// *RecoveryError with a Hint). A writable open also finishes the orphan
// list (files deleted or truncated while open at a crash), as a mount does.
//
// New directory entries go into the htree leaf the index names; a full leaf
// is split, a full root grows a second index level and full index nodes
// are split. Only when the index cannot grow further is it dropped (the
// directory stays valid as a linear one).
//
// Writes do not go through the journal (like e2fsprogs): the filesystem is
// consistent after each call returns. Errors for a full filesystem satisfy
// errors.Is(err, syscall.ENOSPC).
package extfs
