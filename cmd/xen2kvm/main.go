// Command xen2kvm migrates guests from RHEL 5 era Xen hosts to KVM.
//
// It reads Xen domain configs and the guests' disk images, converts the
// guests' drivers and disk formats, writes a KVM guest (disk images, libvirt
// XML and a QEMU launch script) and proves the result boots.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
