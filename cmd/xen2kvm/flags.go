package main

import (
	"path/filepath"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/pipeline"
)

// parseDiskMaps parses the --disk-map OLD=NEW values of inspect and
// migrate; NEW is made absolute.
func parseDiskMaps(vals []string) ([]pipeline.PathMap, error) {
	var maps []pipeline.PathMap
	for _, v := range vals {
		m, err := config.ParsePathMap(v)
		if err != nil {
			return nil, usagef("--%v (e.g. --disk-map /var/lib/xen/images=/srv/import)", err)
		}
		if m.New, err = filepath.Abs(m.New); err != nil {
			return nil, err
		}
		maps = append(maps, m)
	}
	return maps, nil
}
