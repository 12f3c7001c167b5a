package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"

	"bastion/upstream"
)

// kexAlgorithms is the key exchange preference on every leg: the hybrid
// post-quantum exchange first, so that OpenSSH ≥ 9.9 uses it (and OpenSSH
// 10 does not warn), then curve25519 for older clients.
var kexAlgorithms = []string{
	ssh.KeyExchangeMLKEM768X25519,
	ssh.KeyExchangeCurve25519,
	ssh.KeyExchangeECDHP256,
	ssh.KeyExchangeECDHP384,
	ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDH14SHA256,
	ssh.KeyExchangeDH16SHA512,
}

// hasAESGCM reports whether this CPU runs AES-GCM in hardware (AES-NI and
// carry-less multiply, or their arm64 counterparts), where Go's AES-GCM is
// several times faster than its chacha20-poly1305@openssh.com, which has no
// assembly for the SSH construction.
var hasAESGCM = (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL)

// DefaultServerCiphers returns the ciphers the bastion offers a client
// whose identification line (RFC 4253 §4.2) names the software version
// software, when the configuration names none. The client's preference
// decides among what is offered, and OpenSSH prefers chacha20-poly1305,
// then AES-CTR, both several times slower here than AES-GCM; so with
// AES-GCM in hardware, OpenSSH 6.2 and later (which all have it) are
// offered only AES-GCM. Every other client (PuTTY, paramiko, libssh2,
// asyncssh, x/crypto, and OpenSSH before 6.2) is offered the broad set,
// AEAD first: paramiko before 3.5 and libssh2 before 1.11 have neither
// AES-GCM nor chacha20-poly1305. Without AES-GCM in hardware, x/crypto's
// defaults, for everyone.
func DefaultServerCiphers(software string) []string {
	if !hasAESGCM {
		return nil
	}
	if isOpenSSHWithGCM(software) {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}
}

// upstreamCiphers is the preference of the bastion as a client: the
// instance's sshd picks the first it supports, so AES-GCM first where the
// CPU has it.
func upstreamCiphers() []string {
	if hasAESGCM {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}
	}
	return nil
}

// macAlgorithms are the MACs offered on every leg (outer, inner and
// upstream): x/crypto's defaults without hmac-sha1 and hmac-sha1-96. The
// SHA-2 ones, encrypt-then-MAC first, are in every OpenSSH since 5.9 (the
// ETM forms since 6.2), so a stock sshd upstream agrees on one; with the
// AEAD ciphers preferred on every leg no MAC is used at all.
var macAlgorithms = []string{
	ssh.HMACSHA256ETM,
	ssh.HMACSHA512ETM,
	ssh.HMACSHA256,
	ssh.HMACSHA512,
}

// sshConfig returns the algorithm settings shared by every leg: the key
// exchanges, the MACs, and ciphers (nil: x/crypto's defaults).
func sshConfig(ciphers []string) ssh.Config {
	return ssh.Config{KeyExchanges: kexAlgorithms, Ciphers: ciphers, MACs: macAlgorithms}
}

// publicError is an error with the sentence to show the person.
type publicError struct {
	msg string
	err error
}

func (e *publicError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

func (e *publicError) Unwrap() error { return e.err }

// publicMessage returns the sentence to show the person for err.
func publicMessage(err error) string {
	var pe *publicError
	if errors.As(err, &pe) {
		return pe.msg
	}
	return upstream.PublicMessage(err)
}

// upstreamConn is an established, authenticated connection to an instance.
type upstreamConn struct {
	peer
	addr string
}

// dialUpstream connects to the instance (over creds.Dial, or TCP to
// creds.Addr), verifies the host key and logs in. The dial and the
// handshake each have their deadline; cancelling ctx aborts both.
func dialUpstream(ctx context.Context, creds *upstream.Credentials, dialTimeout, handshakeTimeout time.Duration) (*upstreamConn, error) {
	nc, err := dialTransport(ctx, creds, dialTimeout)
	if err != nil {
		return nil, &publicError{msg: dialFailure(creds.Addr, err, dialTimeout), err: err}
	}
	// x/crypto/ssh ignores contexts; close the connection on cancel and
	// bound the handshake with a deadline.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if err := nc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		// A provider's transport without deadlines is closed at the
		// deadline instead.
		t := time.AfterFunc(handshakeTimeout, func() { nc.Close() })
		defer t.Stop()
	}
	cfg := &ssh.ClientConfig{
		Config:            sshConfig(upstreamCiphers()),
		User:              creds.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(creds.Signer)},
		HostKeyCallback:   creds.HostKeyCallback,
		HostKeyAlgorithms: creds.HostKeyAlgorithms,
		ClientVersion:     "SSH-2.0-bastion",
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, creds.Addr, cfg)
	if err != nil {
		nc.Close()
		return nil, &publicError{msg: handshakeFailure(err, handshakeTimeout), err: fmt.Errorf("ssh handshake with %s: %w", creds.Addr, err)}
	}
	nc.SetDeadline(time.Time{})
	return &upstreamConn{peer: peer{conn: c, chans: chans, reqs: reqs}, addr: creds.Addr}, nil
}

// dialTransport opens the connection the upstream SSH handshake runs over:
// the provider's own (creds.Dial) or TCP to creds.Addr, within timeout and
// until ctx is done. A Dial hook that does not return in time is given up
// on; the connection it returns later is closed.
func dialTransport(ctx context.Context, creds *upstream.Credentials, timeout time.Duration) (net.Conn, error) {
	if creds.Dial == nil {
		d := net.Dialer{Timeout: timeout}
		return d.DialContext(ctx, "tcp", creds.Addr)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type dialed struct {
		nc  net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		nc, err := creds.Dial(ctx)
		done <- dialed{nc, err}
	}()
	select {
	case d := <-done:
		switch {
		case d.err != nil:
			if d.nc != nil {
				d.nc.Close()
			}
			return nil, fmt.Errorf("dialing %s with the provider's transport: %w", creds.Addr, d.err)
		case d.nc == nil:
			return nil, fmt.Errorf("dialing %s with the provider's transport: %w", creds.Addr, errNoTransport)
		}
		return d.nc, nil
	case <-ctx.Done():
		go func() {
			if d := <-done; d.nc != nil {
				d.nc.Close()
			}
		}()
		return nil, fmt.Errorf("dialing %s with the provider's transport: %w", creds.Addr, ctx.Err())
	}
}

// errNoTransport is a Dial hook's nil connection with a nil error.
var errNoTransport = errors.New("the dial hook returned no connection")

func dialFailure(addr string, err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("upstream %s did not answer in %s", addr, timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("upstream %s refused the connection", addr)
	case errors.Is(err, context.Canceled):
		return "connection cancelled"
	}
	return fmt.Sprintf("upstream %s is unreachable", addr)
}

func handshakeFailure(err error, timeout time.Duration) string {
	var ue *upstream.Error
	var he *upstream.HostKeyMismatchError
	var ne net.Error
	switch {
	case errors.As(err, &ue):
		return ue.Public
	case errors.As(err, &he):
		return upstream.PublicMessage(err)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("upstream did not complete the SSH handshake in %s", timeout)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return "upstream refused the bastion's credentials"
	}
	return "SSH handshake with upstream failed"
}
