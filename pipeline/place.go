package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/libvirtdst"
)

// placer places the guests of a batch on one of several libvirt
// destinations: the one with the most free memory whose pool still has
// room for the guest's disks, counting what guests placed on it and
// still being migrated will take.
type placer struct {
	mu       sync.Mutex
	reserved map[string]reservation // by URI
}

type reservation struct{ mem, disk int64 }

// candidate is one destination as the placer sees it.
type candidate struct {
	URI       string
	FreeMem   int64 // bytes
	PoolAvail int64 // bytes
	Err       error // could not be asked
}

// errNoRoom: no destination has room for the guest.
var errNoRoom = errors.New("no destination has room for the guest")

// choose picks the candidate with the most free memory that has room for
// mem and disk bytes; it explains the choice.
func choose(cands []candidate, mem, disk int64) (string, string, error) {
	var ok []candidate
	var why []string
	for _, c := range cands {
		switch {
		case c.Err != nil:
			why = append(why, fmt.Sprintf("%s: %v", c.URI, c.Err))
		case c.PoolAvail < disk:
			why = append(why, fmt.Sprintf("%s: pool has %d MiB available, the guest needs %d MiB", c.URI, c.PoolAvail>>20, disk>>20))
		case c.FreeMem < mem:
			why = append(why, fmt.Sprintf("%s: %d MiB free memory, the guest has %d MiB", c.URI, c.FreeMem>>20, mem>>20))
		default:
			ok = append(ok, c)
		}
	}
	if len(ok) == 0 {
		return "", "", fmt.Errorf("%w: %s", errNoRoom, strings.Join(why, "; "))
	}
	sort.SliceStable(ok, func(i, j int) bool { return ok[i].FreeMem > ok[j].FreeMem })
	best := ok[0]
	msg := fmt.Sprintf("placed on %s: most free memory (%d MiB, pool %d MiB available) of %d destinations with room", best.URI, best.FreeMem>>20, best.PoolAvail>>20, len(ok))
	if len(why) > 0 {
		msg += "; left out: " + strings.Join(why, "; ")
	}
	return best.URI, msg, nil
}

// place asks every destination and picks one for a guest of d, reserving
// its memory and disk there until release is called.
func (p *placer) place(ctx context.Context, uris []string, pool string, d *config.Domain, maps []PathMap) (uri, why string, release func(), err error) {
	mem := max(d.MemoryMiB, 0) << 20
	disk := sourceAllocated(d, maps)
	cands := make([]candidate, len(uris))
	var wg sync.WaitGroup
	for i, u := range uris {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cands[i] = probe(ctx, u, pool)
		}()
	}
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reserved == nil {
		p.reserved = map[string]reservation{}
	}
	for i := range cands {
		r := p.reserved[cands[i].URI]
		cands[i].FreeMem -= r.mem
		cands[i].PoolAvail -= r.disk
	}
	uri, why, err = choose(cands, mem, disk)
	if err != nil {
		return "", "", nil, err
	}
	r := p.reserved[uri]
	p.reserved[uri] = reservation{r.mem + mem, r.disk + disk}
	return uri, why, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		r := p.reserved[uri]
		p.reserved[uri] = reservation{r.mem - mem, r.disk - disk}
	}, nil
}

// probe reads a destination's free memory and its pool's free space.
func probe(ctx context.Context, uri, pool string) candidate {
	c := candidate{URI: uri}
	if pool == "" {
		pool = "default"
	}
	conn, err := libvirtdst.Connect(ctx, uri)
	if err != nil {
		c.Err = err
		return c
	}
	defer conn.Close()
	mem, err := conn.FreeMemory()
	if err != nil {
		c.Err = err
		return c
	}
	pi, err := conn.Pool(pool)
	if err != nil {
		c.Err = err
		return c
	}
	c.FreeMem, c.PoolAvail = int64(mem), int64(pi.Available)
	return c
}

// sourceAllocated is what the guest's source disks take on disk (their
// allocated blocks): about what its volumes will take.
func sourceAllocated(d *config.Domain, maps []PathMap) int64 {
	var n int64
	for _, dk := range d.Disks {
		if dk.Device == "cdrom" || dk.Source == "" {
			continue
		}
		fi, err := os.Stat(config.MapPath(dk.Source, maps))
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
	}
	return n
}
