// Package proxy is the bastion's SSH front end: it accepts people's
// connections, authenticates them, finds out which instance they want
// (ProxyJump's direct-tcpip channel, or the target in the user name),
// connects to the instance with credentials from its provider, and splices
// the two SSH connections channel by channel.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/metrics"
	"bastion/sso"
	"bastion/upstream"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// errShutdown is the cause given to connections closed by Close.
var errShutdown = errors.New("bastion is shutting down")

// Rules is what a config reload replaces: who people are and what they may
// do. A Rules value is immutable once handed to the server.
type Rules struct {
	Auth   *auth.Authenticator
	Policy *auth.Policy
	Limits Limits
	// RevokeLive, when these rules replace others, closes the live
	// connections of people the new Auth no longer admits.
	RevokeLive bool
	// SessionControl are the groups whose members list and end every
	// live link (session_control.groups); others see only their own.
	SessionControl []string
	// SSO, if non-nil, lets keys no user lists log in through the
	// identity provider (sso.go).
	SSO *sso.Service
}

// Limits bound what connections and links may use. Zero values mean no
// limit.
//
// Words: a connection is a person's outer SSH connection to the bastion; a
// link is one upstream connection spliced to a person (one per ProxyJump
// channel, one per direct-mode connection, one per menu pick); a session is
// an SSH session channel.
type Limits struct {
	// IdleTimeout closes a link with no payload either way for this long.
	IdleTimeout time.Duration
	// MaxSession closes a link this long after it started.
	MaxSession time.Duration
	// MaxLinks bounds the links in total, and MaxLinksPerUser one
	// person's. Both count what a person holds open or is opening
	// upstream: every channel the bastion serves (a ProxyJump link, live
	// or with its inner login in progress, or the bastion's own session),
	// and at least one per authenticated connection, so that connections
	// carrying nothing yet are bounded too. A direct-mode connection is
	// one link.
	MaxLinks, MaxLinksPerUser int
	// MaxLinksPerConnection bounds the channels one connection has the
	// bastion serve at once, as OpenSSH's MaxSessions does.
	MaxLinksPerConnection int
	// MaxUnauthenticated bounds connections still in their handshake and
	// ProxyJump channels whose inner login is not complete (see
	// unauthTable).
	MaxUnauthenticated int
	// FailedAuthPerMinute is how many failed authentications a source
	// address may have per minute before its connections are delayed.
	FailedAuthPerMinute int
}

// Locks, and the order they are taken in: a goroutine holding one may take
// only those listed after it, never one before.
//
//  1. Server.mu: the listeners, the connections, the link counts (users,
//     links) and every conn's units.
//  2. conn.mu: one connection's authed, identity and links. SetRules,
//     endLinksForAudit and Shutdown take it under Server.mu, through
//     conn.authenticated and conn.liveLinks.
//  3. link.mu: one link's set of live sessions, and its writers' Add.
//     Shutdown takes it under both, through conn.notify and link.say.
//  4. Leaves, under which no other lock is taken: conn.idle.mu,
//     session.mu (a recording), unauthTable.mu, ssoPending.mu, penaltyBox.mu,
//     failureTracker.mu, certCache.mu, handshakeLog.mu, failureLog.mu,
//     and channelEnd.replying, which is held across the round trip of a
//     relayed request's reply and is never taken with another.
//
// No audit event is written (an audit write may fsync, and fails closed)
// and no network write is made while Server.mu or conn.mu is held: their
// critical sections copy what they need and let go first. link.mu is held
// only to start the goroutines that write to sessions, not for the writes.

// Server is an SSH bastion. Set the fields, call SetRules, then Serve.
// Fields must not change after Serve is called.
type Server struct {
	// HostKey is the bastion's own host key. Required.
	HostKey ssh.Signer
	// HostCA signs the per-target host certificates that the inner servers
	// present, so that one @cert-authority line trusts every target.
	// Required.
	HostCA ssh.Signer
	// Resolver finds targets and their providers. Required.
	Resolver *upstream.Resolver
	// Logger receives operational logs. If nil, nothing is logged.
	Logger *zap.Logger
	// Audit receives audit events. If nil, none are written.
	Audit *audit.Logger
	// AuditFailOpen lets people go on when their audit events or
	// recordings cannot be written (audit.on_failure: continue); each
	// failure is still logged, rate-limited, and counted. If false, the
	// default, the bastion fails closed: a connection or link whose
	// events cannot be written is refused, live links are ended, and a
	// session whose recording cannot be written is refused or ended, each
	// with a one-line reason (audit/SCHEMA.md, "Durability").
	AuditFailOpen bool
	// MinFreeSpace refuses new links while the file system of the audit
	// log or of Recording.Dir has fewer bytes free. If zero, there is no
	// check.
	MinFreeSpace int64

	// HandshakeTimeout bounds a person's SSH handshake and authentication,
	// and the upstream's. If zero, 10s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds the TCP connect to an instance. If zero, 10s.
	DialTimeout time.Duration
	// AWSTimeout bounds target resolution and credential calls. If zero,
	// 10s.
	AWSTimeout time.Duration
	// MaxAuthTries is the number of authentication attempts per connection.
	// If zero, 6.
	MaxAuthTries int
	// Ciphers are the ciphers offered to people (outer and inner legs),
	// in x/crypto's names. If empty, DefaultServerCiphers for each
	// client's software version.
	Ciphers []string
	// Metrics receives counters and timings. If nil, none are kept.
	Metrics *metrics.Metrics
	// Recording configures session recordings. The zero value records
	// nothing.
	Recording Recording
	// Fleet is what the server shares with the other replicas. The zero
	// value keeps the registry of live links in memory, for this replica.
	Fleet Fleet

	rules atomic.Pointer[Rules]
	// live is the registry of this replica's live links (sessions.go).
	live liveRegistry

	initOnce sync.Once
	innerKey ssh.Signer
	certs    *certCache

	// unauth holds the slots of connections in their handshake and of
	// jump channels in their inner login.
	unauth unauthTable
	// penalties lowers the unauthenticated share of addresses whose
	// handshakes keep timing out, and ranks addresses for shedding.
	penalties *penaltyBox
	// failures throttles addresses with many failed authentications.
	failures *failureTracker
	// penaltyWrites holds a token per failed authentication being written
	// to Fleet.Penalties (fleetlimits.go).
	penaltyWrites chan struct{}
	// countWrites holds a token per per-user count being written to
	// Fleet.Counts (fleetlimits.go).
	countWrites chan struct{}
	// hsLog rate-limits the log lines of failed handshakes.
	hsLog handshakeLog
	// ssoWait bounds the SSO logins waiting for approval.
	ssoWait ssoPending

	// writeLog rate-limits the logging of audit and recording write
	// failures; auditAlarm (alarmIdle, …) and bg run endLinksForAudit.
	writeLog   failureLog
	auditAlarm atomic.Int32
	bg         sync.WaitGroup

	// mu protects listeners, conns, users, links, closed and every conn's
	// units.
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	// users counts links per user, as Limits.MaxLinksPerUser counts them
	// (every authenticated connection counts max(1, its units)); links is
	// their sum.
	users map[string]int
	links int
	// peers are the connections of other replicas (peer.go).
	peers  map[net.Conn]struct{}
	closed bool
	connWG sync.WaitGroup // one per tracked conn
}

// SetRules installs the authenticator, policy and limits used for new
// connections and for every later decision on live ones, except that a
// link keeps the idle_timeout and max_session in force when it began. With
// r.RevokeLive, live connections of people r.Auth no longer admits are
// closed with a message.
func (s *Server) SetRules(r *Rules) {
	s.rules.Store(r)
	if !r.RevokeLive {
		return
	}
	s.mu.Lock()
	var revoked []*conn
	for c := range s.conns {
		if id, ok := c.authenticated(); ok && !r.Auth.Admits(id) {
			revoked = append(revoked, c)
		}
	}
	s.mu.Unlock()
	// Each revocation gives its message a moment to leave; do them
	// together rather than one after another.
	var wg sync.WaitGroup
	for _, c := range revoked {
		wg.Go(c.revoke)
	}
	wg.Wait()
}

func (s *Server) currentRules() *Rules { return s.rules.Load() }

func (s *Server) log() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (s *Server) handshakeTimeout() time.Duration {
	return orDefault(s.HandshakeTimeout, 10*time.Second)
}
func (s *Server) dialTimeout() time.Duration { return orDefault(s.DialTimeout, 10*time.Second) }
func (s *Server) awsTimeout() time.Duration  { return orDefault(s.AWSTimeout, 10*time.Second) }

// awsBackstop bounds a provider call from the proxy's side. Providers
// enforce AWSTimeout themselves and then say which AWS operation timed out;
// the backstop, a little longer, only catches a provider that does not.
func (s *Server) awsBackstop() time.Duration { return s.awsTimeout() + 2*time.Second }

// init prepares the inner host key and certificate cache. The inner
// servers use the outer host key as their key; what differs per target is
// the certificate.
func (s *Server) init() {
	s.initOnce.Do(func() {
		s.innerKey = s.HostKey
		s.certs = newCertCache(s.HostCA, s.innerKey)
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.users = map[string]int{}
		s.penalties = newPenaltyBox(time.Now)
		s.unauth.score = s.penalties.score
		s.failures = newFailureTracker(time.Now)
		s.penaltyWrites = make(chan struct{}, maxPenaltyWrites)
		s.countWrites = make(chan struct{}, maxCountWrites)
	})
}

// Serve accepts connections on l until Shutdown or Close. It always returns
// a non-nil error; after Shutdown or Close, ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if s.HostKey == nil || s.HostCA == nil || s.Resolver == nil || s.currentRules() == nil {
		return errors.New("proxy: HostKey, HostCA, Resolver and rules are required")
	}
	return s.acceptLoop(l, func(nc net.Conn) {
		c := s.newConn(nc)
		if c == nil {
			nc.Close()
			return
		}
		go c.serve()
	})
}

// acceptLoop tracks l among the server's listeners (closed by Shutdown and
// Close) and hands every connection it accepts to handle, until l fails or
// the server closes (ErrServerClosed). Out of file descriptors and the
// like, it backs off as net/http does.
func (s *Server) acceptLoop(l net.Listener, handle func(net.Conn)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log().Warn("accept_failed", zap.Error(err), zap.Duration("retry_in", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		handle(nc)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// newConn registers a connection, or returns nil when the server is closed.
func (s *Server) newConn(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &conn{srv: s, nc: nc, id: newID(), host: hostOf(nc.RemoteAddr()), ctx: ctx, cancel: cancel}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return c
}

// holdUnauth takes an unauthenticated slot for host under the current
// limits, or returns nil and the reason it is refused. onShed closes what
// holds the slot if a newcomer takes its place.
func (s *Server) holdUnauth(host string, onShed func(reason string)) (*unauthSlot, string) {
	max := s.currentRules().Limits.MaxUnauthenticated
	share := perSourceUnauth(max)
	if s.penalties.penalized(host) {
		share = penalizedShare(share)
	}
	return s.unauth.hold(host, max, share, onShed)
}

// refusal is a limit that refuses a connection or a channel: its name (the
// audit event's limit) and the sentence the person is told.
type refusal struct {
	limit, msg string
}

// admit counts an authenticated connection against the link limits (as
// one link until it carries more), or returns why it is refused.
func (s *Server) admit(c *conn) *refusal {
	lim := s.currentRules().Limits
	s.mu.Lock()
	if r := s.linkRoomLocked(lim, c.identity.User); r != nil {
		s.mu.Unlock()
		return r
	}
	s.users[c.identity.User]++
	s.links++
	s.mu.Unlock()
	if r := s.admitFleet(c, lim.MaxLinksPerUser); r != nil {
		s.release(c)
		return r
	}
	return nil
}

// linkRoomLocked returns why user may not have one more link, or nil.
func (s *Server) linkRoomLocked(lim Limits, user string) *refusal {
	switch {
	case lim.MaxLinks > 0 && s.links >= lim.MaxLinks:
		return &refusal{"max_links", fmt.Sprintf("the bastion is at its limit of %d links; try again later", lim.MaxLinks)}
	case lim.MaxLinksPerUser > 0 && s.users[user] >= lim.MaxLinksPerUser:
		return &refusal{"max_links_per_user", fmt.Sprintf("%s already has %d links open, the most allowed", user, lim.MaxLinksPerUser)}
	}
	return nil
}

// release undoes admit.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	s.dropLinkLocked(c.identity.User)
	s.mu.Unlock()
	s.userChanged(c.identity.User)
}

func (s *Server) dropLinkLocked(user string) {
	s.links--
	if s.users[user]--; s.users[user] <= 0 {
		delete(s.users, user)
	}
}

// holdChannel counts a channel that c asks the bastion to serve (a
// ProxyJump link or an own session) against the link limits, or returns why
// it is refused. The connection's first channel is the link admit already
// counted. A nil result must be given back with releaseChannel.
func (s *Server) holdChannel(c *conn) *refusal {
	lim := s.currentRules().Limits
	s.mu.Lock()
	if n := lim.MaxLinksPerConnection; n > 0 && c.units >= n {
		s.mu.Unlock()
		return &refusal{"max_links_per_connection", fmt.Sprintf("this connection already has %d links open, the most allowed; open another connection", n)}
	}
	counted := c.units >= 1
	if counted {
		if r := s.linkRoomLocked(lim, c.identity.User); r != nil {
			s.mu.Unlock()
			return r
		}
		s.users[c.identity.User]++
		s.links++
	}
	c.units++
	s.mu.Unlock()
	if counted {
		if r := s.admitFleet(c, lim.MaxLinksPerUser); r != nil {
			s.releaseChannel(c)
			return r
		}
	}
	return nil
}

// releaseChannel undoes holdChannel.
func (s *Server) releaseChannel(c *conn) {
	s.mu.Lock()
	c.units--
	dropped := c.units >= 1
	if dropped {
		s.dropLinkLocked(c.identity.User)
	}
	s.mu.Unlock()
	if dropped {
		s.userChanged(c.identity.User)
	}
}

func (s *Server) forgetConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

// closeListeners stops accepting.
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for nc := range s.peers {
		nc.Close()
	}
}

// Shutdown stops accepting connections and waits for the live ones to end.
// When ctx is done first, it closes them with ctx's cause and returns
// ctx.Err() once they are gone.
//
// Every live session is told once, on its stderr, that the bastion is going
// away and by when.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closeListeners()
	msg := "the bastion is shutting down; please reconnect"
	if d, ok := ctx.Deadline(); ok {
		msg = fmt.Sprintf("the bastion is shutting down; this session will be closed in %s", time.Until(d).Round(time.Second))
	}
	s.mu.Lock()
	for c := range s.conns {
		c.notify(msg)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.bg.Wait()
		return nil
	case <-ctx.Done():
		s.closeConns(context.Cause(ctx))
		<-done
		s.bg.Wait()
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.init()
	s.closeListeners()
	s.closeConns(errShutdown)
	s.connWG.Wait()
	s.bg.Wait()
	return nil
}

func (s *Server) closeConns(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.cancel(cause)
	}
}

// ActiveConns returns the number of live connections.
func (s *Server) ActiveConns() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
