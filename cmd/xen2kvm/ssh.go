package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/xen2kvm/xen2kvm/xenhost"
)

// sshFlags are the flags of the commands that read ssh:// sources.
type sshFlags struct {
	identities   []string
	knownHosts   string
	acceptNewKey bool
	retries      int
	configDir    string
	client       string
	compression  bool
}

func (f *sshFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.identities, "identity", nil, "ssh:// sources: authenticate with the private key `FILE` (repeatable; default ~/.ssh/id_*, and the ssh-agent)")
	fl.StringVar(&f.knownHosts, "known-hosts", "", "ssh:// sources: check host keys against `FILE` (default ~/.ssh/known_hosts)")
	fl.BoolVar(&f.acceptNewKey, "accept-new-host-key", false, "ssh:// sources: add the key of a host not in known_hosts to it instead of refusing the host (a changed key is always refused)")
	fl.StringVar(&f.configDir, "host-config-dir", "/etc/xen", "ssh:// sources: the folder `DIR` on the Xen host that holds the xm domain configs")
	fl.IntVar(&f.retries, "ssh-retries", 5, "ssh:// sources: how many times a dropped connection is re-established before the guest fails")
	fl.StringVar(&f.client, "ssh-client", "", "ssh:// sources: read files and disks with `CLIENT`: go (built in; the default) or openssh (the system's ssh -s HOST sftp with the same known_hosts, identities or agent, and legacy algorithms; key or agent authentication only; the default with --ssh-compression)")
	fl.BoolVar(&f.compression, "ssh-compression", false, "ssh:// sources: compress the SSH stream (ssh -C; implies --ssh-client openssh). Pays on slow links for zero-heavy disks; on a fast network the host's CPU is the limit and it costs time (bench/README.md)")
}

// options are the xenhost options the flags give. A password or key
// passphrase is asked for only when stdin is a terminal; warnings go to
// stderr.
// check reports flags that do not go together.
func (f *sshFlags) check() error {
	switch f.client {
	case "", "go", "openssh":
	default:
		return usagef("--ssh-client %q: want go or openssh", f.client)
	}
	if f.compression && f.client == "go" {
		return usagef("--ssh-compression needs --ssh-client openssh: the built-in client has no compression")
	}
	return nil
}

func (f *sshFlags) options(cmd *cobra.Command) *xenhost.Options {
	stderr := cmd.ErrOrStderr()
	o := &xenhost.Options{
		Identities:       f.identities,
		KnownHosts:       f.knownHosts,
		AcceptNewHostKey: f.acceptNewKey,
		Retries:          f.retries,
		ConfigDir:        f.configDir,
		OpenSSH:          f.client == "openssh",
		Compression:      f.compression,
		Warn:             func(msg string) { fmt.Fprintf(stderr, "xen2kvm: warning: %s\n", msg) },
	}
	if in, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(in.Fd())) {
		o.Password = func(prompt string) (string, error) { return readPassword(in, stderr, prompt) }
	}
	return o
}

func readPassword(in *os.File, w io.Writer, prompt string) (string, error) {
	fmt.Fprint(w, prompt)
	b, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(w)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return string(b), nil
}
