package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit codes of the CLI contract.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// commands holds the constructors of the subcommands; each subcommand's
// file registers its own in an init function.
var commands []func() *cobra.Command

func register(newCmd func() *cobra.Command) { commands = append(commands, newCmd) }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "xen2kvm",
		Short: "Migrate RHEL 5 era Xen guests to KVM",
		Long: `xen2kvm migrates guests from RHEL 5 era Xen hosts to KVM.

It reads Xen domain configs (xm files from /etc/xen, xl.cfg, xend SXP,
libvirt XML) and the guests' disk images, converts the drivers inside the
guest (Xen PV block/net/console to virtio and ttyS0), converts the disk
formats (qcow2 or sparse raw) and proves the result boots under KVM.

The source disks are only ever opened read-only; no helper VM, no root and
none of the guest's own binaries are needed.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{err}
	})
	for _, newCmd := range commands {
		root.AddCommand(newCmd())
	}
	return root
}

// typeUsageErrors makes every argument error of root's commands a
// usageError, cobra's own help and completion commands included: they are
// added here rather than by Execute (after SetOut, since the completion
// command keeps the writer it finds).
func typeUsageErrors(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var wrap func(*cobra.Command)
	wrap = func(c *cobra.Command) {
		if c.Args != nil {
			c.Args = wrapArgs(c.Args)
		}
		for _, sub := range c.Commands() {
			wrap(sub)
		}
	}
	for _, c := range root.Commands() {
		wrap(c)
	}
}

// run executes the CLI with args and returns the process exit status.
func run(ctx context.Context, args []string) int {
	return runWith(ctx, args, os.Stdout, os.Stderr)
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	typeUsageErrors(root)
	// The one error cobra's Find returns is an unknown command.
	_, _, err := root.Find(args)
	if err != nil {
		err = usageError{err}
	} else {
		err = root.ExecuteContext(ctx)
	}
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// SIGINT or SIGTERM: the cancellation surfaces from wherever the
		// work was ("listing extents: context canceled"); say what it is.
		fmt.Fprintf(stderr, "xen2kvm: error: interrupted\n")
		fmt.Fprintf(stderr, "xen2kvm: hint: nothing that looks complete was left; run the command again to start afresh\n")
		return exitFail
	}
	fmt.Fprintf(stderr, "xen2kvm: error: %v\n", err)
	var h hinter
	if errors.As(err, &h) && h.Hint() != "" {
		fmt.Fprintf(stderr, "xen2kvm: hint: %s\n", h.Hint())
	}
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitFail
}
