package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// CheckDisks looks up the source of every disk, after rewriting its path
// with maps, and records in Disk.Exists whether it is there. A missing
// disk (or one that cannot be looked at) adds a warning; it is not an
// error, since a config is often read away from its Xen host. Empty
// CD-ROM drives are skipped.
func (d *Domain) CheckDisks(maps []PathMap) {
	for i := range d.Disks {
		disk := &d.Disks[i]
		if disk.Source == "" {
			continue
		}
		p := MapPath(disk.Source, maps)
		where := p
		if p != disk.Source {
			where = fmt.Sprintf("%s (mapped from %s)", p, disk.Source)
		}
		_, err := os.Stat(p)
		exists := err == nil
		disk.Exists = &exists
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			d.warnf("disk %s: %s does not exist", disk.Target, where)
		default:
			d.warnf("disk %s: %s cannot be checked: %v", disk.Target, where, err)
		}
	}
}
