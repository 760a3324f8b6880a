package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestLibvirtHost(t *testing.T) {
	for uri, want := range map[string]string{
		"qemu:///system":                         "localhost",
		"qemu+unix:///system?socket=/tmp/s":      "localhost",
		"qemu+ssh://root@KVM01/system":           "kvm01",
		"qemu+ssh://admin@kvm01:2222/system":     "kvm01",
		"qemu+tls://kvm02.example.com/system":    "kvm02.example.com",
		"qemu+tcp://[fd00::1]:16509/system":      "fd00::1",
		"qemu+ssh://root@127.0.0.1/system":       "localhost",
		"qemu+ssh://root@kvm01/session?keyfile=": "kvm01",
	} {
		if got := libvirtHost(uri); got != want {
			t.Errorf("libvirtHost(%q) = %q, want %q", uri, got, want)
		}
	}
}

// Five guests for one host (through different URIs) with two slots: two
// upload, three wait, and each release lets exactly one more in; a guest
// for another host is not held up, and a waiter whose context ends gives
// up with its error.
func TestHostSlotsBound(t *testing.T) {
	waited := make(chan string, 10)
	s := newHostSlots(2)
	s.onWait = func(host string) { waited <- host }

	var mu sync.Mutex
	active, most := 0, 0
	acquired := make(chan int, 5)
	done := make([]chan struct{}, 5)
	var wg sync.WaitGroup
	uris := []string{"qemu+ssh://root@kvm01/system", "qemu+ssh://kvm01:22/system", "qemu+ssh://root@kvm01/session", "qemu+tls://KVM01/system", "qemu+ssh://root@kvm01/system"}
	for i, uri := range uris {
		done[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := s.acquire(context.Background(), uri, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			active++
			most = max(most, active)
			mu.Unlock()
			acquired <- i
			<-done[i]
			mu.Lock()
			active--
			mu.Unlock()
			release()
		}()
	}
	// Two get a slot, three wait.
	var in []int
	for len(in) < 2 {
		in = append(in, <-acquired)
	}
	for range 3 {
		if h := <-waited; h != "kvm01" {
			t.Errorf("a guest waits for host %q", h)
		}
	}
	if taken, waiting := s.state("kvm01"); taken != 2 || waiting != 3 {
		t.Fatalf("kvm01: %d slots taken, %d waiting; want 2, 3", taken, waiting)
	}
	// Another host has its own slots.
	other, err := s.acquire(context.Background(), "qemu+ssh://root@kvm02/system", nil)
	if err != nil {
		t.Fatal(err)
	}
	other()
	// A waiter whose context ends gives up.
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error)
	go func() {
		_, err := s.acquire(ctx, "qemu+ssh://kvm01/system", nil)
		gaveUp <- err
	}()
	<-waited
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled wait: %v", err)
	}
	// Each release lets one more in.
	for got := 2; got < 5; got++ {
		close(done[in[0]])
		in = append(in[1:], <-acquired)
		if taken, _ := s.state("kvm01"); taken > 2 {
			t.Fatalf("%d slots of kvm01 taken", taken)
		}
	}
	for _, i := range in {
		close(done[i])
	}
	wg.Wait()
	if most != 2 {
		t.Errorf("at most %d guests held kvm01's slots at once, want 2", most)
	}
	if taken, waiting := s.state("kvm01"); taken != 0 || waiting != 0 {
		t.Errorf("after all: %d slots taken, %d waiting", taken, waiting)
	}
}
