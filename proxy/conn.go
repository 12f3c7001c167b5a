package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/upstream"
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
	sc, chans, reqs, err := c.srv.serverHandshake(c.nc, c.serverConfig())
	slot.release()
	// A connection, not each key an agent offers, is one failed
	// authentication for throttling; a login clears the address.
	perMinute := c.srv.currentRules().Limits.FailedAuthPerMinute
	if err != nil {
		if c.rejected > 0 {
			c.srv.failures.fail(host, perMinute)
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
	c.log.Info("connection_authenticated", zap.String("login", audit.Clip(sc.User())), zap.String("key_fingerprint", c.identity.KeyFingerprint))
	method := "publickey"
	if c.identity.CertKeyID != "" {
		method = "user_certificate"
	}
	c.audit(audit.Event{Type: audit.TypeAuthSuccess, Method: method, Login: audit.Clip(sc.User()), CertKeyID: c.identity.CertKeyID})
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
// certificates of configured users only.
func (c *conn) serverConfig() *ssh.ServerConfig {
	rules := c.srv.currentRules()
	cfg := &ssh.ServerConfig{
		Config:        sshConfig(c.srv.Ciphers),
		MaxAuthTries:  c.srv.MaxAuthTries,
		ServerVersion: "SSH-2.0-bastion",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			id, err := rules.Auth.Authenticate(key, meta.RemoteAddr())
			if err != nil {
				reason := auth.FailureReason(err)
				c.srv.Metrics.AuthFailure(reason)
				c.rejected++
				c.audit(audit.Event{Type: audit.TypeAuthFailure, Method: "publickey", Login: audit.Clip(meta.User()),
					KeyFingerprint: ssh.FingerprintSHA256(key), Reason: reason, Error: audit.Clip(err.Error())})
				return nil, err
			}
			perms := &ssh.Permissions{ExtraData: map[any]any{identityKey{}: id}}
			if id.NoTouchRequired {
				// x/crypto then accepts a security key's signature
				// without the user-presence flag, as sshd does.
				perms.Extensions = map[string]string{"no-touch-required": ""}
			}
			return perms, nil
		},
	}
	if cfg.MaxAuthTries == 0 {
		cfg.MaxAuthTries = 6
	}
	cfg.AddHostKey(c.srv.HostKey)
	return cfg
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
	}
	if err := c.srv.Audit.Emit(e); err != nil {
		c.auditFailed.Store(true)
		c.srv.auditFailed(err)
		return err
	}
	return nil
}

// errLoginTooLong refuses a login name longer than upstream.MaxNameLen.
var errLoginTooLong = fmt.Errorf("login name is longer than %d bytes", upstream.MaxNameLen)

// parseDirectUser splits a direct-mode login "osuser+target" (or
// "osuser#target"). '+' and '#' survive the command lines of ssh, scp, sftp
// and rsync, unlike ':' or '@'. ok is false for a login without either (a
// ProxyJump login). A login of either kind longer than upstream.MaxNameLen
// is refused with errLoginTooLong, so that the target part is within the
// cap too.
func parseDirectUser(login string) (osUser, typed string, ok bool, err error) {
	if len(login) > upstream.MaxNameLen {
		return "", "", false, errLoginTooLong
	}
	i := strings.IndexAny(login, "+#")
	if i < 0 {
		return "", "", false, nil
	}
	return login[:i], login[i+1:], true, nil
}

// serveJump serves a ProxyJump connection: each direct-tcpip channel to a
// target's port 22 gets its own inner SSH server and upstream connection.
func (c *conn) serveJump(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	start := time.Now()
	c.idle.mu.Lock()
	c.idle.last, c.idle.own, c.idle.wake = start, map[ssh.Channel]struct{}{}, make(chan struct{}, 1)
	c.idle.mu.Unlock()
	// The watcher ends with the connection's channels (c.ctx ends only
	// after c.wg is done).
	watching, stopWatching := context.WithCancel(c.ctx)
	defer stopWatching()
	c.wg.Go(func() { c.watchLimits(watching, start) })
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for req := range reqs {
			// keepalive@openssh.com and the like: a failure reply is
			// what OpenSSH servers send too.
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case chanDirectTCPIP:
			hold, ok := c.holdJump(nc)
			if !ok {
				continue
			}
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer hold.release()
				c.jump(nc, hold)
			}()
		case chanSession:
			if !c.holdOwn(nc) {
				continue
			}
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer c.srv.releaseChannel(c)
				c.ownSession(nc)
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "bastion: unsupported channel type "+audit.Clip(nc.ChannelType()))
		}
	}
	c.auditRefusals()
}

// target is a resolved target with the name the person typed.
type target struct {
	typed string
	upstream.Target
}

func (t target) forPolicy() auth.Target {
	return auth.Target{Provider: t.Provider, Name: t.Name, ID: t.ID, Region: t.Region, Tags: t.Tags}
}

// resolve parses and resolves a typed target name and checks that the
// person may reach it at all.
func (c *conn) resolve(typed string) (target, error) {
	q, err := upstream.ParseQuery(typed)
	if err != nil {
		c.audit(audit.Event{Type: audit.TypeTargetError, Typed: audit.Clip(typed), Error: audit.Clip(err.Error())})
		msg := "not a valid target name"
		if errors.Is(err, upstream.ErrNameTooLong) {
			msg = upstream.ErrNameTooLong.Error()
		}
		return target{}, &publicError{msg: msg, err: err}
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.awsBackstop())
	defer cancel()
	t, err := c.srv.Resolver.Resolve(ctx, q)
	if err != nil {
		c.audit(audit.Event{Type: audit.TypeTargetError, Typed: typed, Error: audit.Clip(err.Error())})
		c.log.Info("resolve_failed", zap.String("typed", typed), clippedError(err))
		return target{}, err
	}
	tg := target{typed: typed, Target: t}
	c.audit(audit.Event{Type: audit.TypeTargetResolved, Typed: typed, Target: t.String(), Provider: t.Provider, InstanceID: t.ID})
	// Reachable means some policy matches; a login also needs an OS user
	// that one of them allows.
	rules := c.srv.currentRules()
	id := rules.Auth.Current(c.identity)
	d := rules.Policy.Reachable(id, tg.forPolicy())
	if d.Allow && len(rules.Policy.OSUsers(id, tg.forPolicy())) == 0 {
		d = auth.Decision{Reason: fmt.Sprintf("no policy lets %s log in to %s as any OS user", id.User, t.Name)}
	}
	if !d.Allow {
		c.srv.Metrics.PolicyDenial("target")
		c.audit(audit.Event{Type: audit.TypePolicyDenied, Typed: typed, Target: t.String(), Reason: d.Reason})
		return target{}, &publicError{msg: d.Reason}
	}
	return tg, nil
}

// connectUpstream authorizes a login as osUser, fetches credentials and
// connects to the target. The returned link enforces, on the spliced
// connection, the policy in force at each decision, and audits it.
func (c *conn) connectUpstream(t target, osUser, mode string) (*upstreamConn, *link, error) {
	rules := c.srv.currentRules()
	base := auth.Request{Identity: rules.Auth.Current(c.identity), Target: t.forPolicy(), OSUser: osUser}
	ev := audit.Event{Mode: mode, Typed: t.typed, Target: t.String(), Provider: t.Provider, InstanceID: t.ID, OSUser: audit.Clip(osUser)}
	// unaudited is set when one of the link's events could not be
	// written: failing closed, the link is refused.
	unaudited := false
	emit := func(e audit.Event) {
		if c.audit(withLinkFields(e, ev)) != nil && !c.srv.AuditFailOpen {
			unaudited = true
		}
	}
	if len(osUser) > upstream.MaxNameLen {
		// The inner login name is typed too; no policy matches it, and
		// the denial must not quote it whole.
		msg := fmt.Sprintf("OS user name is longer than %d bytes", upstream.MaxNameLen)
		c.srv.Metrics.PolicyDenial("login")
		emit(audit.Event{Type: audit.TypePolicyDenied, Reason: msg})
		return nil, nil, &publicError{msg: msg}
	}
	if d := rules.Policy.Authorize(base); !d.Allow {
		c.srv.Metrics.PolicyDenial("login")
		emit(audit.Event{Type: audit.TypePolicyDenied, Reason: d.Reason})
		return nil, nil, &publicError{msg: d.Reason}
	}
	emit(audit.Event{Type: audit.TypePolicyAllowed})
	if unaudited {
		return nil, nil, &publicError{msg: msgAuditRefused}
	}
	if why := c.srv.diskLow(); why != "" {
		c.srv.Metrics.LimitHit(limitMinFreeSpace)
		emit(audit.Event{Type: audit.TypeLimitExceeded, Limit: limitMinFreeSpace, Reason: msgDiskLow, Error: why})
		c.log.Warn("limit_exceeded", zap.String("limit", limitMinFreeSpace), zap.String("why", why))
		return nil, nil, &publicError{msg: msgDiskLow}
	}
	p := c.srv.Resolver.Provider(t.Provider)
	if p == nil {
		return nil, nil, fmt.Errorf("provider %q is not configured", t.Provider)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.awsBackstop())
	creds, err := p.Credentials(ctx, t.Target, osUser)
	cancel()
	if err != nil {
		e := audit.Event{Type: audit.TypeUpstreamError, Error: audit.Clip(err.Error())}
		var ue *upstream.Error
		if errors.As(err, &ue) {
			e.RequestID = ue.RequestID
		}
		emit(e)
		c.log.Info("credentials_failed", zap.String("target", t.String()), clippedError(err))
		return nil, nil, err
	}
	issued := audit.Event{Type: audit.TypeCredentialsIssued, RequestID: creds.RequestID, UpstreamAddr: creds.Addr}
	if !creds.Expires.IsZero() {
		exp := creds.Expires.UTC()
		issued.Expires = &exp
	}
	emit(issued)
	ev.UpstreamAddr = creds.Addr

	// Note the key the instance presented, for the audit log.
	var hostKey ssh.PublicKey
	verify := creds.HostKeyCallback
	checked := *creds
	checked.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := verify(host, remote, key)
		if err == nil {
			hostKey = key
		}
		return err
	}
	start := time.Now()
	up, err := dialUpstream(c.ctx, &checked, c.srv.dialTimeout(), c.srv.handshakeTimeout())
	c.srv.Metrics.UpstreamConnect(t.Provider, time.Since(start), err)
	if err != nil {
		e := audit.Event{Type: audit.TypeUpstreamError, UpstreamAddr: creds.Addr, Error: err.Error()}
		var he *upstream.HostKeyMismatchError
		if errors.As(err, &he) {
			e.Type, e.HostKeySource = audit.TypeHostKeyMismatch, creds.HostKeySource
		}
		emit(e)
		c.log.Info("upstream_failed", zap.String("target", t.String()), zap.String("addr", creds.Addr), clippedError(err))
		return nil, nil, err
	}
	if hostKey != nil {
		emit(audit.Event{Type: audit.TypeHostKeyVerified, UpstreamAddr: creds.Addr,
			HostKeyFingerprint: ssh.FingerprintSHA256(hostKey), HostKeySource: creds.HostKeySource})
	}
	emit(audit.Event{Type: audit.TypeUpstreamOpen, UpstreamAddr: creds.Addr})
	if unaudited {
		up.conn.Close()
		return nil, nil, &publicError{msg: msgAuditRefused}
	}
	c.log.Info("upstream_connected", zap.String("target", t.String()), zap.String("addr", creds.Addr), zap.String("os_user", osUser))
	l := newLink(c, nil, ev)
	l.policyGuard = &policyGuard{rules: c.srv.currentRules, base: base, typed: t.typed,
		denied: func(capability, reason string) {
			c.srv.Metrics.PolicyDenial(capability)
			l.audit(audit.Event{Type: audit.TypePolicyDenied, Capability: capability, Reason: reason})
		}}
	return up, l, nil
}

// jump serves one direct-tcpip channel: if it asks for a target's SSH port,
// an inner SSH server runs on it, presenting a host certificate for the
// typed name and admitting the person without a second signature (the outer
// connection already proved who they are). The inner login name is the OS
// user; the upstream connection is made during the inner authentication so
// that any failure reaches the person as a banner line.
//
// The order is what keeps a stranger's names away from the host CA:
//
//  1. The typed name is capped at upstream.MaxNameLen, resolved, and the
//     person must be allowed to log in to the target as some OS user;
//     otherwise the channel-open is refused with the reason, before it is
//     accepted. So a certificate is signed, cached and presented only for
//     a real target this person may reach, and a non-target never gets an
//     inner key exchange.
//  2. Only then is the certificate signed and the channel accepted.
//  3. The provider's prefetch (credentials that do not depend on the OS
//     user) runs concurrently with the person's inner handshake, as
//     before; the slow AWS call still overlaps the key exchange. It is safe
//     to start before the OS user is known because nothing it fetches is
//     used unless the inner authentication's Authorize, taken against the
//     policy in force at that moment, allows the login (connectUpstream);
//     the check in step 1 is a precondition, not the grant.
//
// hold is the channel's place under the limits; its unauthenticated slot
// is given back once the inner login completes.
func (c *conn) jump(nc ssh.NewChannel, hold *pendingJump) {
	defer c.jumpStarted()()
	var p tcpipChannel
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bastion: malformed direct-tcpip request")
		return
	}
	if len(p.Host) > upstream.MaxNameLen {
		c.audit(audit.Event{Type: audit.TypeTargetError, Typed: audit.Clip(p.Host), Reason: upstream.ErrNameTooLong.Error()})
		nc.Reject(ssh.ConnectionFailed, "bastion: "+upstream.ErrNameTooLong.Error())
		return
	}
	if p.Port != 22 {
		nc.Reject(ssh.Prohibited, fmt.Sprintf("bastion: %s: only port 22 (SSH) of a target can be reached through the bastion", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))))
		return
	}
	t, err := c.resolve(p.Host)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("bastion: %s: %s", p.Host, publicMessage(err)))
		return
	}
	signer, err := c.srv.certs.signer(p.Host)
	if err != nil {
		c.log.Error("host_cert_failed", clippedError(err))
		nc.Reject(ssh.ConnectionFailed, "bastion: internal error")
		return
	}
	if pf, ok := c.srv.Resolver.Provider(t.Provider).(upstream.Prefetcher); ok {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			ctx, cancel := context.WithTimeout(c.ctx, c.srv.awsBackstop())
			defer cancel()
			pf.Prefetch(ctx, t.Target)
		}()
	}

	ch, chReqs, err := hold.accept(nc)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(chReqs)
	defer ch.Close()

	var up *upstreamConn
	var l *link
	cfg := &ssh.ServerConfig{
		Config:        sshConfig(c.srv.Ciphers),
		ServerVersion: "SSH-2.0-bastion",
		NoClientAuth:  true,
		NoClientAuthCallback: func(meta ssh.ConnMetadata) (*ssh.Permissions, error) {
			if up != nil {
				return &ssh.Permissions{}, nil
			}
			u, lk, err := c.connectUpstream(t, meta.User(), "jump")
			if err != nil {
				return nil, &ssh.BannerError{Err: err, Message: fmt.Sprintf("bastion: %s: %s\r\n", p.Host, publicMessage(err))}
			}
			up, l = u, lk
			return &ssh.Permissions{}, nil
		},
	}
	// The plain key too, as sshd offers its key beside a HostCertificate:
	// a client with the @cert-authority line picks the certificate, one
	// without a CA for it (PuTTY, paramiko, asyncssh with the key pinned)
	// the key. AddHostKey keeps one key per format, and these differ.
	cfg.AddHostKey(signer)
	cfg.AddHostKey(c.srv.innerKey)
	c.innerPublicKey(cfg, p.Host)

	// The inner handshake includes the upstream connection, so its
	// deadline covers the person's part plus each upstream step's own.
	deadline := 2*c.srv.handshakeTimeout() + c.srv.awsBackstop() + c.srv.dialTimeout()
	timer := time.AfterFunc(deadline, func() { ch.Close() })
	isc, ichans, ireqs, err := c.srv.serverHandshake(&chanConn{Channel: ch, local: c.nc.LocalAddr(), remote: c.nc.RemoteAddr()}, cfg)
	timer.Stop()
	hold.loggedIn()
	if err != nil {
		if up != nil {
			up.conn.Close()
			l.cancel(nil)
		}
		c.srv.handshakeFailed(c.log.With(zap.String("typed", audit.Clip(p.Host))), "inner", classifyHandshake(err, 0))
		return
	}
	c.runLink(l, func() { splice(l.ctx, peer{conn: isc, chans: ichans, reqs: ireqs}, up.peer, l, l.logger()) })
}

// errInnerRefused answers every inner login attempt after one was refused:
// the reason went to the person, and the audit log, once.
var errInnerRefused = errors.New("inner login already refused")

// innerPublicKey lets the inner server of a jump to typed also admit
// publickey, with one of the person's own keys, as what it is: the same
// login as none, on the same path and audit. paramiko's usual
// connect(sock=..., pkey=...) tries publickey and nothing else; OpenSSH
// tries none first, and so signs nothing twice. Once a login attempt was
// refused (no such target, policy, upstream), later ones get
// errInnerRefused, so that a client going on to its keys neither repeats
// the upstream connection nor sees the reason again.
func (c *conn) innerPublicKey(cfg *ssh.ServerConfig, typed string) {
	admit := cfg.NoClientAuthCallback
	var refused bool
	cfg.NoClientAuthCallback = func(meta ssh.ConnMetadata) (*ssh.Permissions, error) {
		if refused {
			return nil, errInnerRefused
		}
		perms, err := admit(meta)
		refused = err != nil
		return perms, err
	}
	cfg.PublicKeyCallback = func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if refused {
			return nil, errInnerRefused
		}
		if err := c.ownKey(key); err != nil {
			c.audit(audit.Event{Type: audit.TypeAuthFailure, Method: "publickey", Mode: "jump", Typed: typed, Login: meta.User(),
				KeyFingerprint: ssh.FingerprintSHA256(key), Reason: auth.FailureReason(err), Error: err.Error()})
			c.log.Info("inner_key_refused", zap.String("typed", audit.Clip(typed)), zap.String("key_fingerprint", ssh.FingerprintSHA256(key)), zap.Error(err))
			return nil, err
		}
		return cfg.NoClientAuthCallback(meta)
	}
}

// errNotOwnKey refuses, on an inner login, a key of another user.
var errNotOwnKey = errors.New("inner login with a key that is not the person's own")

// ownKey returns nil when key is one of the person's own, by the rules in
// force now: the key that authenticated the outer connection (for a
// certificate, the certificate's key), or any key or certificate that
// authenticates as the same user.
func (c *conn) ownKey(key ssh.PublicKey) error {
	a := c.srv.currentRules().Auth
	id, err := a.Authenticate(key, c.nc.RemoteAddr())
	if err == nil {
		if id.User != c.identity.User {
			return errNotOwnKey
		}
		return nil
	}
	if _, isCert := key.(*ssh.Certificate); !isCert && ssh.FingerprintSHA256(key) == c.identity.KeyFingerprint && a.Admits(c.identity) {
		return nil
	}
	return err
}

// clippedError is err as a log field, cut by audit.Clip: errors quote
// names and logins that people type.
func clippedError(err error) zap.Field {
	return zap.String("error", audit.Clip(err.Error()))
}

// runLink runs relay, which splices the person's side and the upstream
// until both end or l.ctx is done (a limit, a revocation, a drain
// deadline), with the link tracked, counted, watched by its limits and
// audited at its end.
func (c *conn) runLink(l *link, relay func()) {
	c.trackLink(l)
	defer c.untrackLink(l)
	defer c.srv.Metrics.LinkOpened()()
	stopLimits := l.runLimits()
	relay()
	stopLimits()
	l.writers.Wait()
	l.endAudit()
}

// trackLink and untrackLink keep the connection's set of live links, which
// drains and revocations tell.
func (c *conn) trackLink(l *link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.links == nil {
		c.links = map[*link]struct{}{}
	}
	c.links[l] = struct{}{}
}

func (c *conn) untrackLink(l *link) {
	c.mu.Lock()
	delete(c.links, l)
	c.mu.Unlock()
	c.touch()
	c.wakeWatcher()
}

// serveDirect serves a connection whose login names the target: the outer
// connection itself is the person's side of the splice.
func (c *conn) serveDirect(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, osUser, typed string) {
	t, err := c.resolve(typed)
	var up *upstreamConn
	var l *link
	if err == nil {
		if osUser == "" {
			err = &publicError{msg: "no OS user given; log in as user+" + typed}
		} else {
			up, l, err = c.connectUpstream(t, osUser, "direct")
		}
	}
	if err != nil {
		c.refuse(chans, reqs, fmt.Sprintf("bastion: %s: %s", typed, publicMessage(err)))
		return
	}
	c.runLink(l, func() { splice(l.ctx, peer{conn: c.sc, chans: chans, reqs: reqs}, up.peer, l, l.logger()) })
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
