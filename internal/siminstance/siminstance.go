// Package siminstance runs an in-process SSH server that behaves like a small
// Linux instance. `bastion demo` starts one per simulated Lightsail or EC2
// instance, so that the whole path (bastion, upstream credentials, upstream
// SSH) can be tried on a laptop without an AWS account.
//
// It is a demo on the person's own machine, not a sandbox: every session runs
// as the current OS user, in their home directory, with their files. An
// Instance therefore listens on loopback only and admits only public-key
// logins that Options.Authorize approves (see TrustCA and AcceptKeys).
//
// What it serves, modelled on OpenSSH's sshd:
//
//   - "session" channels (RFC 4254 §6): pty-req, window-change, env (LANG and
//     LC_* only), shell, exec, subsystem "sftp" (when an sftp-server binary is
//     installed), and signal; exit-status or exit-signal, then EOF, then close.
//   - "direct-tcpip" channels (RFC 4254 §7.2), so that `ssh -L` and ProxyJump
//     through the instance work.
//   - "tcpip-forward" and "cancel-tcpip-forward" (`ssh -R`, RFC 4254 §7.1),
//     listening on loopback only as sshd with "GatewayPorts no" does, at
//     most 16 per connection.
//   - "auth-agent-req@openssh.com" (`ssh -A`): a private SSH_AUTH_SOCK whose
//     connections reach the client's agent over auth-agent@openssh.com
//     channels.
//
// Other global requests are refused. Options.Users lists the OS users an
// instance has; a login as another is refused.
package siminstance

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Timeouts, fixed for the demo.
const (
	// handshakeTimeout bounds the SSH handshake, authentication included.
	handshakeTimeout = 10 * time.Second
	// dialTimeout bounds the TCP dial of a direct-tcpip channel.
	dialTimeout = 10 * time.Second
	// drainTimeout is how long output is still relayed after a session's
	// process has exited: enough to empty a pipe or pty buffer, short enough
	// that a background child holding the output open cannot keep the
	// channel alive.
	drainTimeout = time.Second
)

// serverVersion is the identification string sent to clients (RFC 4253 §4.2).
const serverVersion = "SSH-2.0-bastion_siminstance"

// extFingerprint is the ssh.Permissions extension carrying the SHA256
// fingerprint of the key a connection logged in with.
const extFingerprint = "pubkey-fp"

// sourceAddressOption is the certificate critical option restricting the
// client addresses a certificate may be used from (PROTOCOL.certkeys).
const sourceAddressOption = "source-address"

// errInstanceClosed is the cause of every cancellation made by Close.
var errInstanceClosed = errors.New("siminstance: instance closed")

// Options configures an Instance. Only Authorize is required.
type Options struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.11:2022". The host
	// must be a loopback address or "localhost". If empty, "127.0.0.1:0" (a
	// free port) is used. It is ignored when Listener is set.
	Addr string

	// Listener, if not nil, is the loopback TCP listener to serve on instead
	// of listening on Addr; the Instance owns it from then on and closes it.
	Listener net.Listener

	// Users are the OS users the instance has: a login as any other user
	// is refused, as sshd refuses an invalid user. Sessions run as the
	// current OS user whichever of them logged in. If empty, every user
	// name is accepted.
	Users []string

	// HostKey is the instance's host key. If nil, a new ed25519 key is
	// generated.
	HostKey ssh.Signer

	// Authorize decides a login from the user name and the presented key,
	// which may be an *ssh.Certificate. It returns nil to admit. It is called
	// when the client offers the key and again once the client has proven it
	// holds the private key, so it must be safe for concurrent use. Start
	// fails if it is nil.
	Authorize func(user string, key ssh.PublicKey) error

	// Name is the instance name shown in the shell prompt (user@Name) and
	// exported to sessions as BASTION_DEMO_INSTANCE, e.g. "web-1". If empty,
	// "instance" is used.
	Name string

	// Logger receives connection and session events. If nil, nothing is
	// logged.
	Logger *zap.Logger
}

// Instance is a running simulated instance. Its methods are safe for
// concurrent use.
type Instance struct {
	name      string
	authorize func(user string, key ssh.PublicKey) error
	users     []string // OS users that may log in; empty: any
	hostKey   ssh.Signer
	log       *zap.Logger
	cfg       *ssh.ServerConfig
	ln        net.Listener
	account   account
	nextConn  atomic.Uint64

	// ctx is cancelled by Close; every connection closes when it is.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// wg counts the accept loop and one handler per connection. A handler
	// in turn waits for every goroutine of its connection before it returns.
	wg sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// account is the OS account sessions run as, and what they run.
type account struct {
	user  string // login name of the current OS user
	home  string // its home directory, the sessions' working directory
	shell string // /bin/bash if present, else /bin/sh
	path  string // PATH for sessions
}

// Start listens on opts.Addr and serves SSH connections until Close.
func Start(opts Options) (*Instance, error) {
	// A handed listener is the Instance's from here on, also on failure.
	fail := func(err error) (*Instance, error) {
		if opts.Listener != nil {
			opts.Listener.Close()
		}
		return nil, err
	}
	if opts.Authorize == nil {
		return fail(errors.New("siminstance: Options.Authorize is nil"))
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if opts.Listener != nil {
		addr = opts.Listener.Addr().String()
	}
	if err := checkLoopback(addr); err != nil {
		return fail(err)
	}
	hostKey := opts.HostKey
	if hostKey == nil {
		var err error
		if hostKey, err = newHostKey(); err != nil {
			return fail(err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	name := opts.Name
	if name == "" {
		name = "instance"
	}

	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("siminstance: listening on %s: %w", addr, err)
		}
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("siminstance: %s is not a loopback address", ln.Addr())
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	i := &Instance{
		name:      name,
		authorize: opts.Authorize,
		hostKey:   hostKey,
		log:       log.With(zap.String("instance", name), zap.String("listen_addr", ln.Addr().String())),
		ln:        ln,
		account:   currentAccount(),
		users:     opts.Users,
		ctx:       ctx,
		cancel:    cancel,
	}
	i.cfg = &ssh.ServerConfig{
		PublicKeyCallback:         i.checkKey,
		VerifiedPublicKeyCallback: i.recheckKey,
		AuthLogCallback:           i.logAuth,
		ServerVersion:             serverVersion,
	}
	i.cfg.AddHostKey(hostKey)

	i.wg.Go(i.serve)
	i.log.Info("instance_started", zap.String("host_key_fingerprint", ssh.FingerprintSHA256(hostKey.PublicKey())))
	return i, nil
}

// Addr returns the address the instance listens on, e.g. "127.0.0.11:2022".
func (i *Instance) Addr() string { return i.ln.Addr().String() }

// HostKey returns the public half of the instance's host key.
func (i *Instance) HostKey() ssh.PublicKey { return i.hostKey.PublicKey() }

// Close stops listening, closes every connection (killing the processes of
// their sessions) and waits until every goroutine of the instance has
// returned. Calls after the first return the first call's result.
func (i *Instance) Close() error {
	i.closeOnce.Do(func() {
		i.cancel(errInstanceClosed)
		if err := i.ln.Close(); err != nil {
			i.closeErr = fmt.Errorf("siminstance: closing listener: %w", err)
		}
		i.wg.Wait()
		i.log.Info("instance_closed")
	})
	return i.closeErr
}

// serve accepts connections until the listener is closed.
func (i *Instance) serve() {
	var backoff time.Duration
	for {
		nc, err := i.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || i.ctx.Err() != nil {
				return
			}
			// Like net/http: a failed Accept (EMFILE, …) is retried after
			// a growing pause rather than ending the instance.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			i.log.Warn("accept_failed", zap.Error(err), zap.Duration("retry_in", backoff))
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-i.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		id := i.nextConn.Add(1)
		i.wg.Go(func() { i.handleConn(nc, id) })
	}
}

// checkKey is the ssh.ServerConfig PublicKeyCallback: it asks Authorize when
// the client offers a key.
func (i *Instance) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if len(i.users) > 0 && !slices.Contains(i.users, meta.User()) {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchUser, meta.User())
	}
	if err := i.authorize(meta.User(), key); err != nil {
		return nil, err
	}
	perms := &ssh.Permissions{Extensions: map[string]string{extFingerprint: ssh.FingerprintSHA256(key)}}
	if cert, ok := key.(*ssh.Certificate); ok {
		// x/crypto/ssh enforces source-address from the returned
		// permissions, as sshd does from the certificate.
		if addrs, ok := cert.CriticalOptions[sourceAddressOption]; ok {
			perms.CriticalOptions = map[string]string{sourceAddressOption: addrs}
		}
	}
	return perms, nil
}

// recheckKey is the ssh.ServerConfig VerifiedPublicKeyCallback: it asks
// Authorize again once the client has signed, as sshd runs
// AuthorizedKeysCommand again, so that a key removed in between is refused.
func (i *Instance) recheckKey(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	if err := i.authorize(meta.User(), key); err != nil {
		return nil, err
	}
	return perms, nil
}

// logAuth logs each authentication attempt.
func (i *Instance) logAuth(meta ssh.ConnMetadata, method string, err error) {
	if method == "none" {
		return // every client starts with "none" to learn the methods
	}
	i.log.Debug("auth_attempt",
		zap.String("user", meta.User()),
		zap.String("remote_addr", meta.RemoteAddr().String()),
		zap.String("method", method),
		zap.Error(err))
}

// checkLoopback returns an error unless the host of addr is "localhost" or a
// loopback IP address.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("siminstance: parsing address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("siminstance: address %q: host must be a loopback address", addr)
	}
	return nil
}

// newHostKey generates an ed25519 host key.
func newHostKey() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("siminstance: generating host key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("siminstance: generating host key: %w", err)
	}
	return signer, nil
}

// currentAccount describes the current OS user, falling back to the
// environment where the user database cannot be read.
func currentAccount() account {
	a := account{
		user:  os.Getenv("USER"),
		shell: "/bin/sh",
		path:  os.Getenv("PATH"),
	}
	a.home, _ = os.UserHomeDir()
	if u, err := user.Current(); err == nil {
		a.user = u.Username
		if u.HomeDir != "" {
			a.home = u.HomeDir
		}
	}
	if a.home == "" {
		a.home = "/"
	}
	if a.path == "" {
		a.path = "/usr/local/bin:/usr/bin:/bin"
	}
	if isExecutable("/bin/bash") {
		a.shell = "/bin/bash"
	}
	return a
}

// isExecutable reports whether path is a regular file someone may execute.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
