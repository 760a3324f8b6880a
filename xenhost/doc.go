// Package xenhost reads Xen guests straight off a RHEL 5 era Xen host over
// SSH: the guests' configs from the Xen toolstack (xm list, xm list -l,
// xm create --dryrun, or the config file over SFTP) and their disks over
// SFTP, read-only, with nothing installed or written on the host.
//
//	u, err := xenhost.ParseURL("ssh://root@xen01/web01")
//	h, err := xenhost.Dial(ctx, u, xenhost.Options{AcceptNewHostKey: false})
//	if err != nil {
//		return err // errors.Is(err, xenhost.ErrUnknownHostKey): the message has the fingerprint
//	}
//	defer h.Close()
//	g, err := h.Guest(ctx, u.Name) // g.Domain is the config.Domain
//	if err := g.CheckNotRunning(u.Host); err != nil {
//		return err // *xenhost.RunningError
//	}
//	if _, err := h.CheckDisksIdle(ctx, g); err != nil {
//		return err // *xenhost.DiskInUseError: a process on the host writes a disk
//	}
//	disk, err := h.OpenDisk(ctx, g.Domain.Disks[0].Source) // a read-only block device
//
// Authentication uses the keys an admin's ssh would: --identity files (or
// ~/.ssh/id_*), the ssh-agent, and a password only when a prompt is given.
// Host keys are checked against known_hosts. The legacy algorithms
// OpenSSH 4.3 needs (diffie-hellman-group14-sha1 and group1-sha1 key
// exchange, ssh-rsa and ssh-dss host keys), and aes128-cbc and 3des-cbc
// for a host configured without the CTR ciphers 4.3 has, are offered
// after the modern ones, so only hosts that have nothing better use them,
// and a warning names them.
//
// Disks are read in concurrent SFTP requests (255 KiB each where the
// server announces limits@openssh.com, else 32 KiB) over the in-process
// client, or, with Options.OpenSSH, over the system's ssh -s HOST sftp,
// which also gives SSH compression (Options.Compression). SFTP cannot say
// where a file's holes are, so they are read as zeros; the copy drops
// zero blocks before writing.
//
// A dropped connection is re-established and the reads that failed are
// retried (reads are idempotent), a bounded number of times; a host that
// is gone fails with a *ConnError (ErrUnreachable).
package xenhost
