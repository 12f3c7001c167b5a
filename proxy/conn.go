package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
)

// identityKey keys the auth.Identity in ssh.Permissions.ExtraData. x/crypto
// hands the connection the Permissions of the key that authenticated, so
// the identity cannot be confused with another key merely offered.
type identityKey struct{}

// conn is one person's connection to the bastion.
type conn struct {
	srv *Server
	nc  net.Conn
	id  string
	// ctx is cancelled, with a cause, when the connection must end.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// Set once the handshake is done, before authed.
	sc       *ssh.ServerConn
	identity auth.Identity
	log      *zap.Logger
	// wg tracks the goroutines serving this connection's channels.
	wg sync.WaitGroup
	// rejected counts the keys refused during the handshake (only the
	// handshake goroutine touches it).
	rejected int
	// host is the source address, the unit of the per-source limits.
	host string
	// readWatch, with SSO, is nc as the SSH library reads it (sso.go).
	readWatch *readWatch
	// ssoKey is the fingerprint of the key held partial for an SSO login
	// (only the handshake goroutine touches it).
	ssoKey string
	// units counts the channels the bastion serves for this connection
	// now (see Server.holdChannel); srv.mu protects it.
	units int
	// chanRefusals counts the channel opens refused by a limit.
	chanRefusals atomic.Int64
	// chans numbers the connection's channels for the audit log, across
	// all its links.
	chans atomic.Int32
	// auditFailed is set when one of the connection's audit events could
	// not be written.
	auditFailed atomic.Bool

	mu sync.Mutex // protects authed and links
	// authed is set once identity is.
	authed bool
	links  map[*link]struct{}

	// idle is what the connection's own limits watch (watchLimits).
	idle idleState
}

// authenticated returns the person's identity once they have logged in.
func (c *conn) authenticated() (auth.Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.identity, c.authed
}

// liveLinks returns the connection's links now.
func (c *conn) liveLinks() []*link {
	c.mu.Lock()
	defer c.mu.Unlock()
	links := make([]*link, 0, len(c.links))
	for l := range c.links {
		links = append(links, l)
	}
	return links
}

// notify tells every session of the connection msg, on its stderr.
func (c *conn) notify(msg string) {
	for _, l := range c.liveLinks() {
		l.say(msg, 0)
	}
}

// revoke closes the connection of a person whose access a reload took
// away, telling their sessions why.
func (c *conn) revoke() {
	const msg = "your access was revoked; closing"
	for _, l := range c.liveLinks() {
		l.end("", msg)
	}
	c.audit(audit.Event{Type: audit.TypeSessionRevoked, Reason: msg})
	c.cancel(errors.New(msg))
}

// serve runs the connection to its end.
func (c *conn) serve() {
	defer c.srv.forgetConn(c)
	defer c.cancel(nil)
	defer c.nc.Close()
	start := time.Now()
	c.log = c.srv.log().With(zap.String("conn_id", c.id), zap.String("remote_addr", c.nc.RemoteAddr().String()))
	defer c.srv.Metrics.ConnectionOpened()()
	stop := context.AfterFunc(c.ctx, func() { c.nc.Close() })
	defer stop()

	c.audit(audit.Event{Type: audit.TypeConnectionAccepted})
	defer func() {
		e := audit.Event{Type: audit.TypeConnectionClosed, DurationMS: time.Since(start).Milliseconds()}
		if cause := context.Cause(c.ctx); cause != nil && cause != context.Canceled {
			e.Reason = cause.Error()
			if hf := (*handshakeError)(nil); errors.As(cause, &hf) {
				e.Error = hf.detail()
			}
		}
		c.audit(e)
	}()
	if !c.throttle() {
		return
	}
	host := c.host
	// Shedding runs on the newcomer's goroutine: it uses the logger as it
	// is now (serve replaces c.log once authenticated), and spares a
	// connection that has authenticated meanwhile (its slot is gone
	// either way).
	log := c.log
	slot, why := c.srv.holdUnauth(host, func(reason string) {
		if _, ok := c.authenticated(); ok {
			return
		}
		c.limitHitLog(log, "max_unauthenticated", reason)
		c.srv.Metrics.UnauthenticatedShed()
		c.cancel(errors.New(reason))
	})
	if slot == nil {
		c.limitHit("max_unauthenticated", why)
		return
	}
	defer slot.release()

	c.nc.SetDeadline(time.Now().Add(c.srv.handshakeTimeout()))
	cfg := c.serverConfig()
	var hc net.Conn = c.nc
	if c.readWatch != nil {
		hc = c.readWatch
	}
	sc, chans, reqs, err := c.srv.serverHandshake(hc, cfg)
	slot.release()
	// A connection, not each key an agent offers, is one failed
	// authentication for throttling; a login clears the address.
	perMinute := c.srv.currentRules().Limits.FailedAuthPerMinute
	if err != nil {
		if c.rejected > 0 {
			c.srv.failedAuth(host, perMinute)
		}
		c.srv.penalties.noLogin(host, errors.Is(err, os.ErrDeadlineExceeded))
		hf := classifyHandshake(err, c.rejected)
		c.srv.handshakeFailed(c.log, "outer", hf)
		c.cancel(hf)
		return
	}
	c.srv.failures.succeeded(host)
	c.srv.penalties.succeeded(host)
	c.nc.SetDeadline(time.Time{})
	c.mu.Lock()
	c.sc = sc
	c.identity = sc.Permissions.ExtraData[identityKey{}].(auth.Identity)
	c.authed = true
	c.mu.Unlock()
	c.log = c.log.With(zap.String("user", c.identity.User))
	if s := c.identity.SSO; s != nil {
		c.log = c.log.With(zap.String("subject", audit.Clip(s.Subject)))
	}
	c.log.Info("connection_authenticated", zap.String("login", audit.Clip(sc.User())), zap.String("key_fingerprint", c.identity.KeyFingerprint))
	c.audit(audit.Event{Type: audit.TypeAuthSuccess, Method: c.identity.Method(), Login: audit.Clip(sc.User()), CertKeyID: c.identity.CertKeyID})
	if c.auditFailed.Load() && !c.srv.AuditFailOpen {
		// The connection could not be audited from its start; only now
		// can the person be told why it goes no further.
		c.refuse(chans, reqs, "bastion: "+msgAuditRefused)
		return
	}

	if r := c.srv.admit(c); r != nil {
		c.limitHit(r.limit, r.msg)
		c.refuse(chans, reqs, "bastion: "+r.msg)
		return
	}
	defer c.srv.release(c)

	osUser, typed, direct, err := parseDirectUser(sc.User())
	switch {
	case err != nil:
		c.audit(audit.Event{Type: audit.TypeTargetError, Login: audit.Clip(sc.User()), Reason: err.Error()})
		c.refuse(chans, reqs, "bastion: "+err.Error())
	case direct:
		c.serveDirect(chans, reqs, osUser, typed)
	default:
		c.serveJump(chans, reqs)
	}
	c.wg.Wait()
}

// throttle delays a connection from an address with many recent failed
// authentications, and reports whether it may go on.
func (c *conn) throttle() bool {
	host := hostOf(c.nc.RemoteAddr())
	perMinute := c.srv.currentRules().Limits.FailedAuthPerMinute
	d, ok := c.srv.failures.delay(host, perMinute)
	if !ok {
		c.limitHit("failed_auth", "too many failed authentications from this address")
		return false
	}
	if d <= 0 {
		return true
	}
	defer c.srv.failures.done(host)
	c.srv.Metrics.LimitHit("failed_auth_delay")
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// limitHit audits and counts a limit that refuses or stops the connection
// or one of its channels.
func (c *conn) limitHit(limit, reason string) { c.limitHitLog(c.log, limit, reason) }

func (c *conn) limitHitLog(log *zap.Logger, limit, reason string) {
	c.srv.Metrics.LimitHit(limit)
	c.audit(audit.Event{Type: audit.TypeLimitExceeded, Limit: limit, Reason: reason})
	log.Info("limit_exceeded", zap.String("limit", limit))
}

// serverConfig is the outer server's configuration: public keys and user
// certificates of configured users and, with SSO, keys bound by an SSO
// login and the login itself for keys not bound yet (sso.go).
func (c *conn) serverConfig() *ssh.ServerConfig {
	rules := c.srv.currentRules()
	cfg := &ssh.ServerConfig{
		Config:        sshConfig(c.srv.Ciphers),
		MaxAuthTries:  c.srv.MaxAuthTries,
		ServerVersion: "SSH-2.0-bastion",
	}
	// after is the callback once a partial success was returned: no
	// second SSO candidate.
	after := c.publicKeyCallback(rules, false)
	cfg.PublicKeyCallback = c.publicKeyCallback(rules, rules.SSO != nil)
	if rules.SSO != nil {
		c.readWatch = newReadWatch(c.nc)
		var banner func(string) error
		cfg.PreAuthConnCallback = func(pc ssh.ServerPreAuthConn) { banner = pc.SendAuthBanner }
		cfg.VerifiedPublicKeyCallback = c.ssoVerified(rules, ssh.ServerAuthCallbacks{PublicKeyCallback: after},
			func(msg string) error { return banner(msg) })
	}
	if cfg.MaxAuthTries == 0 {
		cfg.MaxAuthTries = 6
	}
	cfg.AddHostKey(c.srv.HostKey)
	return cfg
}

// publicKeyCallback returns the outer server's PublicKeyCallback under
// rules: configured keys and certificates, keys bound by an SSO login and,
// with candidates, other plain keys as SSO candidates.
func (c *conn) publicKeyCallback(rules *Rules, candidates bool) func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
	return func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		id, err := rules.Auth.Authenticate(key, meta.RemoteAddr())
		if errors.Is(err, auth.ErrUnknownKey) && rules.SSO != nil {
			if bound, ok := c.boundIdentity(rules, key); ok {
				return permsFor(bound), nil
			}
			if _, isCert := key.(*ssh.Certificate); candidates && !isCert {
				return &ssh.Permissions{ExtraData: map[any]any{ssoCandidate{}: true}}, nil
			}
			if ssh.FingerprintSHA256(key) == c.ssoKey {
				// The key being logged in, offered again after its
				// partial success (x/crypto's client does): audited
				// once, in ssoVerified.
				return nil, errSSOPending
			}
		}
		if err != nil {
			reason := auth.FailureReason(err)
			c.srv.Metrics.AuthFailure(reason)
			c.rejected++
			c.audit(audit.Event{Type: audit.TypeAuthFailure, Method: "publickey", Login: audit.Clip(meta.User()),
				KeyFingerprint: ssh.FingerprintSHA256(key), Reason: reason, Error: audit.Clip(err.Error())})
			return nil, err
		}
		return permsFor(id), nil
	}
}

// audit writes an event with the connection's fields filled in. A write
// error is handed to the server (which counts it, logs it and, failing
// closed, ends live links) and returned.
func (c *conn) audit(e audit.Event) error {
	e.SessionID = c.id
	e.RemoteAddr = c.nc.RemoteAddr().String()
	if pa, ok := c.nc.(interface{ ProxyAddr() net.Addr }); ok && pa.ProxyAddr() != nil {
		e.ProxyAddr = pa.ProxyAddr().String()
	}
	if id, ok := c.authenticated(); ok {
		if e.User == "" {
			e.User = id.User
		}
		if e.KeyFingerprint == "" {
			e.KeyFingerprint = id.KeyFingerprint
		}
		if e.Subject == "" && id.SSO != nil {
			e.Subject = id.SSO.Subject
		}
	}
	if err := c.srv.Audit.Emit(e); err != nil {
		c.auditFailed.Store(true)
		c.srv.auditFailed(err)
		return err
	}
	return nil
}

// clippedError is err as a log field, cut by audit.Clip: errors quote
// names and logins that people type.
func clippedError(err error) zap.Field {
	return zap.String("error", audit.Clip(err.Error()))
}

// refuse tells the person why their direct-mode connection cannot go on:
// the message is the rejection of every channel they open. OpenSSH gives up
// after its first rejected session; the connection is closed after the
// handshake timeout in any case (ssh -N opens no channel at all).
func (c *conn) refuse(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, msg string) {
	go ssh.DiscardRequests(reqs)
	timer := time.AfterFunc(c.srv.handshakeTimeout(), func() { c.cancel(errors.New(msg)) })
	defer timer.Stop()
	for nc := range chans {
		nc.Reject(ssh.ConnectionFailed, msg)
	}
}
