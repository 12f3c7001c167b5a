package awsfake

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// DefaultSerialConsoleTeardown is how long AWS keeps a serial console
// session after its connection ends before it allows a new one.
const DefaultSerialConsoleTeardown = 30 * time.Second

// SerialConsolePort is the user name suffix of the serial console endpoint
// ("<instance-id>.port0"): the only serial port AWS offers.
const SerialConsolePort = "port0"

// The documented errors of SendSerialConsoleSSHPublicKey (EC2 Instance
// Connect API Reference), with the text AWS documents for each.
const (
	msgSerialAccessDisabled = "Your account is not authorized to use the EC2 Serial Console. To authorize your account, run the EnableSerialConsoleAccess API. For more information, see EnableSerialConsoleAccess in the Amazon EC2 API Reference."
	msgSerialTypeInvalid    = "The instance type is not supported for connecting via the serial console. Only Nitro instance types are currently supported."
	msgSerialSessionLimit   = "The instance currently has 1 active serial console session. Only 1 session is supported at a time."
	msgSerialStateInvalid   = "Unable to connect because the instance is not in a valid state. Connecting to a stopped or terminated instance is not supported. If the instance is stopped, start your instance, and try to connect again."
)

// serialInstanceIDPattern is SendSerialConsoleSSHPublicKey's InstanceId
// constraint (10 to 32 characters, checked apart).
var serialInstanceIDPattern = regexp.MustCompile(`^i-[a-f0-9]+$`)

// xenFamilies are instance families built on the Xen hypervisor rather than
// Nitro: they have no serial console.
var xenFamilies = []string{"a1", "c1", "c3", "c4", "d2", "g2", "g3", "h1", "i2", "i3", "m1", "m2", "m3", "m4", "p2", "p3", "r3", "r4", "t1", "t2", "x1", "x1e"}

// isNitro reports whether instanceType is Nitro-based. i3.metal is the
// one bare-metal exception of a Xen family.
func isNitro(instanceType string) bool {
	family, size, _ := strings.Cut(instanceType, ".")
	return !slices.Contains(xenFamilies, family) || size == "metal"
}

// serialState is the serial console state of the account.
type serialState struct {
	// mu protects access and sessions. It is never held with Server.mu.
	mu sync.Mutex
	// access is whether serial console access is enabled, by region;
	// it is disabled unless SetSerialConsoleAccess enabled it, as on a
	// new AWS account.
	access map[string]bool
	// sessions are the serial console sessions by instance id.
	sessions map[string]*serialSession
}

// serialSession is one instance's serial console session: started by a
// key push, connected by an SSH login with that key, and ended some time
// after the connection closes.
type serialSession struct {
	key ssh.PublicKey
	// keyExpires ends the key's use for a login.
	keyExpires time.Time
	// connected is set while an SSH connection holds the session.
	connected bool
	// endsAt is when a closed session stops counting; zero until its
	// connection ended.
	endsAt time.Time
}

// open reports whether the session still counts against the instance's
// one-session limit at now.
func (ss *serialSession) open(now time.Time) bool {
	switch {
	case ss.connected:
		return true
	case !ss.endsAt.IsZero():
		return now.Before(ss.endsAt)
	}
	return now.Before(ss.keyExpires)
}

// SetSerialConsoleAccess enables or disables serial console access for the
// account in region, as EC2's EnableSerialConsoleAccess and
// DisableSerialConsoleAccess do. It is disabled until enabled.
func (s *Server) SetSerialConsoleAccess(region string, enabled bool) {
	s.serialConsole.mu.Lock()
	defer s.serialConsole.mu.Unlock()
	if s.serialConsole.access == nil {
		s.serialConsole.access = map[string]bool{}
	}
	s.serialConsole.access[region] = enabled
}

// SerialConsoleConnected reports whether instanceID's serial console
// session is held by an SSH connection now.
func (s *Server) SerialConsoleConnected(instanceID string) bool {
	s.serialConsole.mu.Lock()
	defer s.serialConsole.mu.Unlock()
	ss := s.serialConsole.sessions[instanceID]
	return ss != nil && ss.connected
}

// sendSerialConsoleSSHPublicKey implements EC2 Instance Connect
// SendSerialConsoleSSHPublicKey: after validating the input as AWS does, it
// starts the instance's serial console session, whose key the endpoint
// (StartSerialConsole) admits for Options.PushedKeyTTL. A second session
// while one is open is refused with SerialConsoleSessionLimitExceededException.
func (s *Server) sendSerialConsoleSSHPublicKey(req *request) (any, error) {
	var in struct {
		InstanceID   string `json:"InstanceId"`
		SerialPort   *int   `json:"SerialPort"`
		SSHPublicKey string `json:"SSHPublicKey"`
	}
	if err := decodeJSONInput(req, &in); err != nil {
		return nil, err
	}
	if n := len(in.InstanceID); n < 10 || n > 32 || !serialInstanceIDPattern.MatchString(in.InstanceID) {
		return nil, eicInvalidArgs("Invalid instance ID: %q", in.InstanceID)
	}
	if in.SerialPort != nil && *in.SerialPort != 0 {
		return nil, eicInvalidArgs("Invalid serial port %d: only port 0 is supported", *in.SerialPort)
	}
	if n := len(in.SSHPublicKey); n < 80 || n > 4096 {
		return nil, eicInvalidArgs("SSH public key length %d is not between 80 and 4096 characters", n)
	}
	key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(in.SSHPublicKey))
	if err != nil || len(bytes.TrimSpace(rest)) > 0 {
		return nil, eicInvalidArgs("Invalid SSH public key")
	}
	if !slices.Contains(eicKeyTypes, key.Type()) {
		return nil, eicInvalidArgs("Unsupported SSH public key type %s; use ssh-rsa, ssh-ed25519 or ecdsa-sha2-nistp*", key.Type())
	}
	e, ok := s.ec2Instance(req.region, in.InstanceID)
	if !ok {
		return nil, &apiError{http.StatusBadRequest, "EC2InstanceNotFoundException", fmt.Sprintf("Instance %s not found", in.InstanceID)}
	}
	now := s.now()
	s.serialConsole.mu.Lock()
	defer s.serialConsole.mu.Unlock()
	switch ss := s.serialConsole.sessions[in.InstanceID]; {
	case !s.serialConsole.access[req.region]:
		return nil, &apiError{http.StatusBadRequest, "SerialConsoleAccessDisabledException", msgSerialAccessDisabled}
	case e.in.State != "running":
		return nil, &apiError{http.StatusBadRequest, "EC2InstanceStateInvalidException", msgSerialStateInvalid}
	case !isNitro(e.in.InstanceType):
		return nil, &apiError{http.StatusBadRequest, "EC2InstanceTypeInvalidException", msgSerialTypeInvalid}
	case ss != nil && ss.open(now):
		return nil, &apiError{http.StatusBadRequest, "SerialConsoleSessionLimitExceededException", msgSerialSessionLimit}
	}
	if s.serialConsole.sessions == nil {
		s.serialConsole.sessions = map[string]*serialSession{}
	}
	s.serialConsole.sessions[in.InstanceID] = &serialSession{key: key, keyExpires: now.Add(s.opts.PushedKeyTTL)}
	return struct {
		RequestID string `json:"RequestId"`
		Success   bool   `json:"Success"`
	}{req.requestID, true}, nil
}

// SerialConsoleOptions configures a serial console endpoint.
type SerialConsoleOptions struct {
	// Listener is the loopback listener to serve on; the endpoint owns
	// it. If nil, one on 127.0.0.1 with a free port.
	Listener net.Listener
	// Region is the region whose instances the endpoint serves, as each
	// region has its own endpoint; if empty, DefaultRegion.
	Region string
	// HostKey is the endpoint's host key; if nil, a new ed25519 key.
	HostKey ssh.Signer
	// Logger receives one entry per connection; if nil, nothing is
	// logged.
	Logger *zap.Logger
}

// SerialConsole is a running serial console SSH endpoint: what AWS serves
// at serial-console.ec2-instance-connect.<region>.aws:22. It admits
// "<instance-id>.port0" with the key last pushed for the instance with
// SendSerialConsoleSSHPublicKey, for the key's lifetime, one connection per
// pushed key, and gives a console on the instance's ttyS0: a login prompt
// that echoes what is typed and, once a user name is given, a small shell
// (echo, hostname, whoami, uname, exit). Its methods are safe for
// concurrent use.
type SerialConsole struct {
	s       *Server
	region  string
	ln      net.Listener
	hostKey ssh.Signer
	log     *zap.Logger
	cfg     *ssh.ServerConfig

	// wg tracks the serving goroutine and each connection's.
	wg sync.WaitGroup
	// mu protects conns and closed.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// serialConsoleHandshake bounds a connection's SSH handshake.
const serialConsoleHandshake = 10 * time.Second

// StartSerialConsole starts a serial console endpoint for the server's
// instances in opts.Region. Close it when done.
func (s *Server) StartSerialConsole(opts SerialConsoleOptions) (*SerialConsole, error) {
	hostKey := opts.HostKey
	if hostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating serial console host key: %w", err)
		}
		if hostKey, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("generating serial console host key: %w", err)
		}
	}
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("listening for the serial console: %w", err)
		}
	}
	c := &SerialConsole{s: s, region: opts.Region, ln: ln, hostKey: hostKey, log: opts.Logger, conns: map[net.Conn]struct{}{}}
	if c.region == "" {
		c.region = DefaultRegion
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.cfg = &ssh.ServerConfig{PublicKeyCallback: c.checkKey, ServerVersion: "SSH-2.0-AWS_SerialConsole_fake"}
	c.cfg.AddHostKey(hostKey)
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

// Addr returns the endpoint's host:port.
func (c *SerialConsole) Addr() string { return c.ln.Addr().String() }

// HostKey returns the endpoint's public host key.
func (c *SerialConsole) HostKey() ssh.PublicKey { return c.hostKey.PublicKey() }

// Close stops the endpoint, closes its connections and waits for them.
func (c *SerialConsole) Close() error {
	c.mu.Lock()
	c.closed = true
	err := c.ln.Close()
	for nc := range c.conns {
		nc.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return err
}

func (c *SerialConsole) serve() {
	defer c.wg.Done()
	for {
		nc, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			nc.Close()
			return
		}
		c.conns[nc] = struct{}{}
		c.wg.Add(1)
		c.mu.Unlock()
		go func() {
			defer c.wg.Done()
			defer func() {
				c.mu.Lock()
				delete(c.conns, nc)
				c.mu.Unlock()
				nc.Close()
			}()
			c.handle(nc)
		}()
	}
}

// errSerialDenied refuses a login the endpoint does not admit.
var errSerialDenied = errors.New("serial console: permission denied")

// instanceOf returns the instance id of a login name "<id>.port0".
func instanceOf(user string) (string, bool) {
	id, port, ok := strings.Cut(user, ".")
	return id, ok && port == SerialConsolePort && serialInstanceIDPattern.MatchString(id)
}

// checkKey admits key for "<id>.port0" if it is the unexpired, unused key
// of the instance's session.
func (c *SerialConsole) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	id, ok := instanceOf(meta.User())
	if !ok {
		return nil, errSerialDenied
	}
	if _, ok := c.s.ec2Instance(c.region, id); !ok {
		return nil, errSerialDenied
	}
	now := c.s.now()
	c.s.serialConsole.mu.Lock()
	defer c.s.serialConsole.mu.Unlock()
	ss := c.s.serialConsole.sessions[id]
	if ss == nil || ss.connected || !ss.endsAt.IsZero() || !now.Before(ss.keyExpires) || !bytes.Equal(ss.key.Marshal(), key.Marshal()) {
		return nil, errSerialDenied
	}
	return &ssh.Permissions{Extensions: map[string]string{"instance": id, "key": string(key.Marshal())}}, nil
}

// claim marks id's session connected, unless another connection took it
// first or it expired during the handshake.
func (c *SerialConsole) claim(id string, key []byte) bool {
	now := c.s.now()
	c.s.serialConsole.mu.Lock()
	defer c.s.serialConsole.mu.Unlock()
	ss := c.s.serialConsole.sessions[id]
	if ss == nil || ss.connected || !ss.endsAt.IsZero() || !now.Before(ss.keyExpires) || !bytes.Equal(ss.key.Marshal(), key) {
		return false
	}
	ss.connected = true
	return true
}

// release ends id's session: it stops counting after the teardown.
func (c *SerialConsole) release(id string) {
	now := c.s.now()
	c.s.serialConsole.mu.Lock()
	defer c.s.serialConsole.mu.Unlock()
	if ss := c.s.serialConsole.sessions[id]; ss != nil && ss.connected {
		ss.connected = false
		ss.endsAt = now.Add(c.s.opts.SerialConsoleTeardown)
	}
}

// handle serves one connection: the handshake, the claim of the session,
// then the console.
func (c *SerialConsole) handle(nc net.Conn) {
	nc.SetDeadline(time.Now().Add(serialConsoleHandshake))
	sc, chans, reqs, err := ssh.NewServerConn(nc, c.cfg)
	if err != nil {
		c.log.Debug("serial_console_handshake_failed", zap.Error(err))
		return
	}
	nc.SetDeadline(time.Time{})
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	id, key := sc.Permissions.Extensions["instance"], sc.Permissions.Extensions["key"]
	if !c.claim(id, []byte(key)) {
		for nch := range chans {
			nch.Reject(ssh.Prohibited, msgSerialSessionLimit)
		}
		return
	}
	defer c.release(id)
	e, _ := c.s.ec2Instance(c.region, id)
	name := e.in.Tags["Name"]
	if name == "" {
		name = id
	}
	c.log.Debug("serial_console_connected", zap.String("instance", id))
	var wg sync.WaitGroup
	defer wg.Wait()
	started := false
	for nch := range chans {
		if nch.ChannelType() != "session" || started {
			nch.Reject(ssh.Prohibited, "the serial console serves one session")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		started = true
		wg.Add(1)
		// The connection stays until the client ends it, as sshd's
		// does after its session: the client sends the disconnect.
		go func() {
			defer wg.Done()
			serveConsole(ch, chReqs, name, func() { c.release(id) })
		}()
	}
}

// serveConsole answers a session channel's requests (pty-req, env,
// window-change and shell; no exec or subsystem: a serial port has
// neither) and runs the console once the shell starts. When the console
// ends it calls ended, then closes the channel: the session's teardown
// has begun by the time the client sees the close.
func serveConsole(ch ssh.Channel, reqs <-chan *ssh.Request, name string, ended func()) {
	defer ch.Close()
	defer ended()
	shell := make(chan struct{})
	var once sync.Once
	go func() {
		for req := range reqs {
			ok := false
			switch req.Type {
			case "pty-req", "env", "window-change":
				ok = true
			case "shell":
				ok = true
				once.Do(func() { close(shell) })
			}
			if req.WantReply {
				req.Reply(ok, nil)
			}
		}
		once.Do(func() { close(shell) })
	}()
	<-shell
	(&ttyS0{w: ch, name: name}).run(ch)
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
}
