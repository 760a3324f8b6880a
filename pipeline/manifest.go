package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// Manifest is a batch of guests to migrate, read from a YAML file:
//
//	defaults:                 # optional; every key may be overridden per guest
//	  output: /srv/kvm        # each guest is written to OUTPUT/NAME/
//	  format: qcow2           # qcow2 | raw
//	  disk_map:               # prefix rewrites, as --disk-map
//	    /var/lib/xen/images: /srv/import/images
//	  boot_check: true
//	guests:
//	  - config: /srv/import/etc-xen/web01
//	  - config: /srv/import/etc-xen/db02
//	    format: raw
//	    output: /srv/kvm-db
//	  - config: /srv/import/etc-xen/old01     # only Xen kernels installed:
//	    kernel_rpm: rpms/kernel-2.6.18-419.el5.x86_64.rpm
//	  - config: /srv/import/etc-xen/win2k8     # Windows: stage virtio-win
//	    virtio_win: /srv/iso/virtio-win.iso
//	  - config: ssh://root@xen01/web02        # read off the Xen host
//	  - config: app03                         # with source_host: ssh://root@xen02,
//	    source_host: ssh://root@xen02         # the same as ssh://root@xen02/app03
//
// Relative paths (config, output, the NEW side of disk_map) are relative
// to the manifest's folder. A guest's disk_map replaces the defaults' one.
// A config that is an ssh:// URL names a guest on a Xen host; with a
// source_host (usually in defaults), a config without a / is the name of
// a guest on that host.
type Manifest struct {
	Path   string      // the manifest file
	Guests []GuestSpec // in manifest order
}

// GuestSpec is one guest of a Manifest, with the defaults applied.
type GuestSpec struct {
	Config    string    // absolute path of the Xen config
	Output    string    // absolute folder; the guest goes to Output/NAME
	Format    string    // qcow2 | raw
	DiskMap   []PathMap // in manifest order
	BootCheck bool
	KernelRPM string // absolute path, or ""
	// VirtioWin is the virtio-win ISO or folder to stage for a Windows
	// guest (absolute path, or "").
	VirtioWin string
	// AllowDrift: flagged first-boot drift is a warning (allow_drift).
	AllowDrift bool
	// To are the libvirt URIs the guest may be delivered to (none: write
	// images into Output); with several, the batch places it on one.
	To []string
	// Pool is the storage pool on the destination ("" means default).
	Pool string
	Line int // line of the entry in the manifest
}

// ManifestError is a problem in a manifest, with the line it is on.
type ManifestError struct {
	File string
	Line int
	Msg  string
}

func (e *ManifestError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// LoadManifest reads and checks the manifest at path.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	return ParseManifest(data, path)
}

// ParseManifest parses manifest data read from path; relative paths are
// resolved against path's folder. Every problem found is reported, each
// naming its line.
func ParseManifest(data []byte, path string) (*Manifest, error) {
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	p := &manifestParser{file: path, base: base}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := yamlErrorLine(err)
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, fmt.Sprintf("line %d: ", line))
		return nil, &ManifestError{File: path, Line: line, Msg: msg}
	}
	m := &Manifest{Path: path}
	if len(doc.Content) == 0 {
		return nil, &ManifestError{File: path, Msg: "empty manifest: it needs a guests list"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &ManifestError{File: path, Line: root.Line, Msg: "the manifest must be a mapping with defaults and guests"}
	}
	defaults := guestFields{format: "qcow2", bootCheck: true}
	var guests *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "defaults":
			if v.Kind != yaml.MappingNode {
				p.errorf(v, "defaults must be a mapping")
				continue
			}
			p.fields(v, &defaults, false)
		case "guests":
			guests = v
		default:
			p.errorf(k, "unknown key %q (want defaults or guests)", k.Value)
		}
	}
	switch {
	case guests == nil:
		p.errs = append(p.errs, &ManifestError{File: path, Line: root.Line, Msg: "no guests list"})
	case guests.Kind != yaml.SequenceNode:
		p.errorf(guests, "guests must be a list")
	default:
		seen := map[string]int{}
		for _, g := range guests.Content {
			if g.Kind != yaml.MappingNode {
				p.errorf(g, "a guest must be a mapping with at least config")
				continue
			}
			f := defaults
			f.config = ""
			p.fields(g, &f, true)
			if f.config == "" {
				p.errorf(g, "guest without config")
				continue
			}
			if !p.source(&f) {
				continue
			}
			if f.output == "" {
				p.errorf(g, "guest %s has no output (set it in defaults or on the guest)", f.config)
				continue
			}
			key := f.config + "\x00" + f.output
			if first, dup := seen[key]; dup {
				p.errorf(g, "guest %s into %s is already listed on line %d", f.config, f.output, first)
				continue
			}
			seen[key] = g.Line
			m.Guests = append(m.Guests, GuestSpec{Config: f.config, Output: f.output, Format: f.format,
				DiskMap: f.diskMap, BootCheck: f.bootCheck, AllowDrift: f.allowDrift, KernelRPM: f.kernelRPM, VirtioWin: f.virtioWin, To: f.to, Pool: f.pool, Line: g.Line})
		}
		if len(guests.Content) == 0 {
			p.errorf(guests, "the guests list is empty")
		}
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return m, nil
}

type guestFields struct {
	config, output, format, kernelRPM string
	virtioWin                         string
	sourceHost                        string // an ssh:// host URL
	configNode                        *yaml.Node
	diskMap                           []PathMap
	bootCheck, allowDrift             bool
	to                                []string
	pool                              string
}

type manifestParser struct {
	file string
	base string
	errs []error
}

func (p *manifestParser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &ManifestError{File: p.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (p *manifestParser) path(s string) string {
	if s == "" || filepath.IsAbs(s) {
		return filepath.Clean(s)
	}
	return filepath.Join(p.base, s)
}

// fields reads the keys of a defaults or guest mapping into f.
func (p *manifestParser) fields(n *yaml.Node, f *guestFields, guest bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "config":
			if !guest {
				p.errorf(k, "config belongs on a guest, not in defaults")
			} else if s, ok := p.str(k, v); ok {
				f.config, f.configNode = s, v
			}
		case "source_host":
			if s, ok := p.str(k, v); ok {
				u, err := xenhost.ParseURL(s)
				switch {
				case err != nil:
					p.errorf(v, "source_host: %v", err)
				case u.Name != "":
					p.errorf(v, "source_host %s names a guest: give the host alone, ssh://[USER@]HOST[:PORT]", s)
				default:
					f.sourceHost = u.String()
				}
			}
		case "output":
			if s, ok := p.str(k, v); ok {
				f.output = p.path(s)
			}
		case "format":
			if s, ok := p.str(k, v); ok {
				if s != "qcow2" && s != "raw" {
					p.errorf(v, "format %q: want qcow2 or raw", s)
				}
				f.format = s
			}
		case "kernel_rpm":
			if !guest {
				p.errorf(k, "kernel_rpm belongs on a guest, not in defaults")
			} else if s, ok := p.str(k, v); ok {
				f.kernelRPM = p.path(s)
			}
		case "virtio_win":
			if s, ok := p.str(k, v); ok {
				f.virtioWin = p.path(s)
			}
		case "to":
			// One URI or a list of them.
			f.to = nil
			switch v.Kind {
			case yaml.ScalarNode:
				if s, ok := p.str(k, v); ok {
					f.to = []string{s}
				}
			case yaml.SequenceNode:
				for _, u := range v.Content {
					if s, ok := p.str(k, u); ok {
						f.to = append(f.to, s)
					}
				}
				if len(v.Content) == 0 {
					p.errorf(v, "to must name at least one libvirt URI")
				}
			default:
				p.errorf(v, "to must be a libvirt URI or a list of them")
			}
		case "pool":
			if s, ok := p.str(k, v); ok {
				f.pool = s
			}
		case "boot_check":
			var b bool
			if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
				p.errorf(v, "boot_check must be true or false")
			}
			f.bootCheck = b
		case "allow_drift":
			var b bool
			if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
				p.errorf(v, "allow_drift must be true or false")
			}
			f.allowDrift = b
		case "disk_map":
			f.diskMap = nil
			if v.Kind != yaml.MappingNode {
				p.errorf(v, "disk_map must be a mapping of OLD: NEW path prefixes")
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				o, nw := v.Content[j], v.Content[j+1]
				if o.Kind != yaml.ScalarNode || nw.Kind != yaml.ScalarNode || o.Value == "" || nw.Value == "" {
					p.errorf(o, "disk_map entries are OLD: NEW path prefixes")
					continue
				}
				f.diskMap = append(f.diskMap, PathMap{Old: filepath.Clean(o.Value), New: p.path(nw.Value)})
			}
		default:
			want := "output, format, disk_map, boot_check, to, pool, source_host, allow_drift or virtio_win"
			if guest {
				want = "config, kernel_rpm, " + want
			}
			p.errorf(k, "unknown key %q (want %s)", k.Value, want)
		}
	}
}

// source resolves a guest's config: an ssh:// URL is kept (checked); a
// bare name (no /) with a source_host is that guest on the host;
// anything else is a path relative to the manifest.
func (p *manifestParser) source(f *guestFields) bool {
	switch {
	case xenhost.IsURL(f.config):
		u, err := xenhost.ParseURL(f.config)
		if err != nil {
			p.errorf(f.configNode, "config: %v", err)
			return false
		}
		if u.Name == "" {
			p.errorf(f.configNode, "config %s names a host, not a guest: ssh://HOST/NAME", f.config)
			return false
		}
		f.config = u.String()
	case f.sourceHost != "" && !strings.Contains(f.config, "/"):
		u, _ := xenhost.ParseURL(f.sourceHost)
		if err := config.CheckName(f.config); err != nil {
			p.errorf(f.configNode, "config %q on %s: %v", f.config, f.sourceHost, err)
			return false
		}
		f.config = u.Guest(f.config).String()
	default:
		f.config = p.path(f.config)
	}
	return true
}

func (p *manifestParser) str(k, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
		p.errorf(v, "%s must be a non-empty string", k.Value)
		return "", false
	}
	return v.Value, true
}

// yamlErrorLine digs the line number out of a yaml syntax error.
func yamlErrorLine(err error) int {
	msg := err.Error()
	i := strings.Index(msg, "line ")
	if i < 0 {
		return 0
	}
	rest := msg[i+5:]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(rest[:j])
	return n
}
