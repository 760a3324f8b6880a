package xenhost

import (
	"bufio"
	"io"
	"net"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTP request sizes. Every server takes reads of 32 KiB; an OpenSSH
// sftp-server that announces limits@openssh.com (OpenSSH 8.6 and later)
// takes reads of up to 255 KiB, which cuts the number of requests, and of
// the SSH packets that carry them, by eight. OpenSSH 4.3 (RHEL 5) has no
// such extension and gets 32 KiB reads.
const (
	sftpPacket      = 32 << 10
	sftpLargePacket = 255 << 10
	// sftpInFlight bounds the requests in flight per ReadAt call.
	sftpInFlight = 64
	// readBuffer is how much of the SSH stream is read at once: one
	// read(2) and one wake-up per buffer rather than per packet.
	readBuffer = 256 << 10
)

// startSFTP starts the SFTP subsystem on cl.
func startSFTP(cl *ssh.Client) (*sftp.Client, error) {
	sc, err := newSFTPSession(cl, sftpPacket)
	if err != nil {
		return nil, err
	}
	if _, ok := sc.HasExtension("limits@openssh.com"); ok {
		// Start again with larger reads: pkg/sftp's request size is
		// fixed when the client is made.
		sc.Close()
		return newSFTPSession(cl, sftpLargePacket)
	}
	return sc, nil
}

func newSFTPSession(cl *ssh.Client, packet int) (*sftp.Client, error) {
	s, err := cl.NewSession()
	if err != nil {
		return nil, err
	}
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		return nil, err
	}
	sc, err := sftp.NewClientPipe(bufio.NewReaderSize(r, readBuffer), &sessionCloser{WriteCloser: w, s: s},
		sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(sftpInFlight), sftp.MaxPacketUnchecked(packet))
	if err != nil {
		s.Close()
		return nil, err
	}
	return sc, nil
}

// sessionCloser closes the SSH session when the SFTP client closes its
// end.
type sessionCloser struct {
	io.WriteCloser
	s *ssh.Session
}

func (c *sessionCloser) Close() error {
	err := c.WriteCloser.Close()
	c.s.Close()
	return err
}

// bufferedConn reads a network connection through a large buffer, so a
// stream of 32 KiB SSH packets costs one read(2) per buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func newBufferedConn(c net.Conn) *bufferedConn {
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer)}
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
