package pipeline

import (
	"context"
	"net/url"
	"strings"
	"sync"
)

// defaultUploadsPerHost is how many guests of a batch upload their disks
// to one libvirt host at once when BatchOptions.UploadsPerHost is 0.
const defaultUploadsPerHost = 2

// hostSlots bounds how many guests upload their disks to one libvirt
// host at once, whatever --jobs allows: every upload writes the host's
// disks and costs its libvirtd a stream, and several at once can
// overload a host that also runs guests.
type hostSlots struct {
	n  int
	mu sync.Mutex
	by map[string]chan struct{} // by host
	// waiting counts the guests waiting for a slot, by host.
	waiting map[string]int
	// onWait, when set, is called as a guest starts to wait (tests).
	onWait func(host string)
}

func newHostSlots(n int) *hostSlots {
	return &hostSlots{n: max(n, 1), by: map[string]chan struct{}{}, waiting: map[string]int{}}
}

// libvirtHost is the host a libvirt URI reaches: its host name, or
// "localhost" for a local daemon (qemu:///system, qemu+unix://).
// Two URIs of one host (system and session, another user or port)
// share its disks and so its slots.
func libvirtHost(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	h := strings.ToLower(u.Hostname())
	if h == "" || h == "127.0.0.1" || h == "::1" {
		return "localhost"
	}
	return h
}

// acquire takes one of the host's slots for uri, waiting while they are
// all taken; release gives it back. It returns ctx's error when ctx ends
// first. wait, when not nil, is called once if the slot is not free at
// once.
func (s *hostSlots) acquire(ctx context.Context, uri string, wait func(host string)) (release func(), err error) {
	host := libvirtHost(uri)
	s.mu.Lock()
	ch, ok := s.by[host]
	if !ok {
		ch = make(chan struct{}, s.n)
		s.by[host] = ch
	}
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	default:
	}
	s.mu.Lock()
	s.waiting[host]++
	s.mu.Unlock()
	if wait != nil {
		wait(host)
	}
	if s.onWait != nil {
		s.onWait(host)
	}
	defer func() {
		s.mu.Lock()
		s.waiting[host]--
		s.mu.Unlock()
	}()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// state is how many slots of host are taken and how many guests wait.
func (s *hostSlots) state(host string) (taken, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by[host]), s.waiting[host]
}
