package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// usageError marks errors in how the command was called (exit status 2).
// Cobra's own such errors are plain ones; they become usageErrors where
// they arise: flag errors through the root's FlagErrorFunc, argument
// counts through wrapArgs (which typeUsageErrors puts around every
// command's Args), unknown commands in runWith.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// wrapArgs turns an argument validator's failure into a usage error.
func wrapArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// hinter is implemented by errors that carry advice for the user, printed
// as "xen2kvm: hint: ..." under the error.
type hinter interface{ Hint() string }

// hintError adds advice to an error.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }
func (e *hintError) Hint() string  { return e.hint }

func withHint(err error, hint string) error { return &hintError{err, hint} }

// pipelineHint adds advice to the migration errors a user can act on.
func pipelineHint(err error) error {
	var h hinter
	switch {
	case err == nil || errors.As(err, &h):
		return err
	case errors.Is(err, pipeline.ErrNoQEMU):
		return withHint(err, "install qemu-system-x86 (apt-get install qemu-system-x86) or pass --no-boot-check")
	case errors.Is(err, pipeline.ErrBlocked):
		return withHint(err, "the report lists the blockers; --dry-run shows the whole plan without writing anything")
	case errors.Is(err, pipeline.ErrBoot):
		return withHint(err, "the serial console of the boot check is in the report; boot it yourself with xen2kvm boot OUTDIR --console")
	case errors.Is(err, xenhost.ErrUnreachable):
		return withHint(err, "check that the Xen host is up and that ssh reaches it; nothing complete was written, and re-running resumes (a batch skips the guests already done)")
	case errors.Is(err, xenhost.ErrAuth):
		return withHint(err, "give a key the host accepts with --identity FILE, load it into ssh-agent, or run from a terminal to type the password")
	case errors.As(err, new(*pipeline.DiskError)) && errors.Is(err, os.ErrNotExist):
		return withHint(err, "if the disk images moved off the Xen host, point at them with --disk-map OLD=NEW")
	}
	return err
}

// diskHint adds advice to the disk image errors a user can act on.
func diskHint(err error) error {
	switch {
	case errors.Is(err, diskimg.ErrEncrypted):
		return withHint(err, "decrypt the image with the tools that made it (qemu-img convert with its key), then convert the plain copy")
	case errors.Is(err, diskimg.ErrUnsupported):
		return withHint(err, "convert the image to raw or qcow2 with qemu-img first")
	case errors.Is(err, diskimg.ErrCorrupt):
		return withHint(err, "check the copy of the image (was it copied completely?) or run qemu-img check on it")
	}
	return err
}
