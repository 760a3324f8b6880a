package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// isCobraUsageError tells whether err is one of cobra's own errors about
// how a command was called (unknown command or flag, wrong argument count).
// Cobra returns these as plain errors, so the message is all there is.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument", "if any flags in the group"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return true
		}
	}
	return false
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
