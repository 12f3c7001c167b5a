package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
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

	// Set once the handshake is done.
	sc       *ssh.ServerConn
	identity auth.Identity
	log      *zap.Logger
	// wg tracks the goroutines serving this connection's channels.
	wg sync.WaitGroup
}

// serve runs the connection to its end.
func (c *conn) serve() {
	defer c.srv.forgetConn(c)
	defer c.cancel(nil)
	defer c.nc.Close()
	c.log = c.srv.log().With(zap.String("conn_id", c.id), zap.String("remote_addr", c.nc.RemoteAddr().String()))
	stop := context.AfterFunc(c.ctx, func() { c.nc.Close() })
	defer stop()

	c.nc.SetDeadline(time.Now().Add(c.srv.handshakeTimeout()))
	sc, chans, reqs, err := ssh.NewServerConn(c.nc, c.serverConfig())
	if err != nil {
		c.log.Debug("handshake_failed", zap.Error(err))
		return
	}
	c.nc.SetDeadline(time.Time{})
	c.sc = sc
	c.identity = sc.Permissions.ExtraData[identityKey{}].(auth.Identity)
	c.log = c.log.With(zap.String("user", c.identity.User))
	c.log.Info("connection_authenticated", zap.String("login", sc.User()), zap.String("key_fingerprint", c.identity.KeyFingerprint))
	method := "publickey"
	if c.identity.CertKeyID != "" {
		method = "user_certificate"
	}
	c.audit(audit.Event{Type: audit.TypeAuthSuccess, Method: method})

	if osUser, typed, ok := parseDirectUser(sc.User()); ok {
		c.serveDirect(chans, reqs, osUser, typed)
	} else {
		c.serveJump(chans, reqs)
	}
	c.wg.Wait()
}

// serverConfig is the outer server's configuration: public keys and user
// certificates of configured users only.
func (c *conn) serverConfig() *ssh.ServerConfig {
	rules := c.srv.currentRules()
	cfg := &ssh.ServerConfig{
		Config:        sshConfig(),
		MaxAuthTries:  c.srv.MaxAuthTries,
		ServerVersion: "SSH-2.0-bastion",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			id, err := rules.Auth.Authenticate(key, meta.RemoteAddr())
			if err != nil {
				c.audit(audit.Event{Type: audit.TypeAuthFailure, Method: "publickey", KeyFingerprint: ssh.FingerprintSHA256(key), Error: err.Error()})
				return nil, err
			}
			return &ssh.Permissions{ExtraData: map[any]any{identityKey{}: id}}, nil
		},
	}
	if cfg.MaxAuthTries == 0 {
		cfg.MaxAuthTries = 6
	}
	cfg.AddHostKey(c.srv.HostKey)
	return cfg
}

// audit writes an event with the connection's fields filled in.
func (c *conn) audit(e audit.Event) {
	e.SessionID = c.id
	e.RemoteAddr = c.nc.RemoteAddr().String()
	if e.User == "" {
		e.User = c.identity.User
	}
	if e.KeyFingerprint == "" {
		e.KeyFingerprint = c.identity.KeyFingerprint
	}
	if err := c.srv.Audit.Emit(e); err != nil {
		c.srv.log().Error("audit_write_failed", zap.Error(err))
	}
}

// parseDirectUser splits a direct-mode login "osuser+target" (or
// "osuser#target"). '+' and '#' survive the command lines of ssh, scp, sftp
// and rsync, unlike ':' or '@'.
func parseDirectUser(login string) (osUser, typed string, ok bool) {
	i := strings.IndexAny(login, "+#")
	if i < 0 {
		return "", "", false
	}
	return login[:i], login[i+1:], true
}

// serveJump serves a ProxyJump connection: each direct-tcpip channel to a
// target's port 22 gets its own inner SSH server and upstream connection.
func (c *conn) serveJump(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
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
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.jump(nc)
			}()
		case chanSession:
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.ownSession(nc)
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "bastion: unsupported channel type "+nc.ChannelType())
		}
	}
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
		c.audit(audit.Event{Type: audit.TypeTargetError, Typed: typed, Error: err.Error()})
		return target{}, &publicError{msg: "not a valid target name", err: err}
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.awsBackstop())
	defer cancel()
	t, err := c.srv.Resolver.Resolve(ctx, q)
	if err != nil {
		c.audit(audit.Event{Type: audit.TypeTargetError, Typed: typed, Error: err.Error()})
		c.log.Info("resolve_failed", zap.String("typed", typed), zap.Error(err))
		return target{}, err
	}
	tg := target{typed: typed, Target: t}
	c.audit(audit.Event{Type: audit.TypeTargetResolved, Typed: typed, Target: t.String(), Provider: t.Provider, InstanceID: t.ID})
	if d := c.srv.currentRules().Policy.Reachable(c.identity, tg.forPolicy()); !d.Allow {
		c.audit(audit.Event{Type: audit.TypePolicyDenied, Typed: typed, Target: t.String(), Reason: d.Reason})
		return target{}, &publicError{msg: d.Reason}
	}
	return tg, nil
}

// connectUpstream authorizes a login as osUser, fetches credentials and
// connects to the target. The returned guard enforces the policy on the
// spliced connection.
func (c *conn) connectUpstream(t target, osUser, mode string) (*upstreamConn, *policyGuard, error) {
	rules := c.srv.currentRules()
	base := auth.Request{Identity: c.identity, Target: t.forPolicy(), OSUser: osUser}
	ev := audit.Event{Mode: mode, Typed: t.typed, Target: t.String(), Provider: t.Provider, InstanceID: t.ID, OSUser: osUser}
	if d := rules.Policy.Authorize(base); !d.Allow {
		ev.Type, ev.Reason = audit.TypePolicyDenied, d.Reason
		c.audit(ev)
		return nil, nil, &publicError{msg: d.Reason}
	}
	p := c.srv.Resolver.Provider(t.Provider)
	if p == nil {
		return nil, nil, fmt.Errorf("provider %q is not configured", t.Provider)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.awsBackstop())
	creds, err := p.Credentials(ctx, t.Target, osUser)
	cancel()
	if err != nil {
		ev.Type, ev.Error = audit.TypeUpstreamError, err.Error()
		var ue *upstream.Error
		if errors.As(err, &ue) {
			ev.RequestID = ue.RequestID
		}
		c.audit(ev)
		c.log.Info("credentials_failed", zap.String("target", t.String()), zap.Error(err))
		return nil, nil, err
	}
	ev.RequestID = creds.RequestID
	ev.UpstreamAddr = creds.Addr
	up, err := dialUpstream(c.ctx, creds, c.srv.dialTimeout(), c.srv.handshakeTimeout())
	if err != nil {
		ev.Type, ev.Error = audit.TypeUpstreamError, err.Error()
		c.audit(ev)
		c.log.Info("upstream_failed", zap.String("target", t.String()), zap.String("addr", creds.Addr), zap.Error(err))
		return nil, nil, err
	}
	ev.Type = audit.TypeUpstreamOpen
	c.audit(ev)
	c.log.Info("upstream_connected", zap.String("target", t.String()), zap.String("addr", creds.Addr), zap.String("os_user", osUser))
	g := &policyGuard{policy: rules.Policy, base: base, typed: t.typed, denied: func(capability, reason string) {
		e := ev
		e.Type, e.Capability, e.Reason, e.RequestID, e.Error = audit.TypePolicyDenied, capability, reason, "", ""
		c.audit(e)
	}}
	return up, g, nil
}

// jump serves one direct-tcpip channel: if it asks for a target's SSH port,
// an inner SSH server runs on it, presenting a host certificate for the
// typed name and admitting the person without a second signature (the outer
// connection already proved who they are). The inner login name is the OS
// user; the upstream connection is made during the inner authentication so
// that any failure reaches the person as a banner line.
func (c *conn) jump(nc ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bastion: malformed direct-tcpip request")
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
		c.log.Error("host_cert_failed", zap.Error(err))
		nc.Reject(ssh.ConnectionFailed, "bastion: internal error")
		return
	}
	ch, chReqs, err := nc.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(chReqs)
	defer ch.Close()

	var up *upstreamConn
	var g *policyGuard
	var osUser string
	cfg := &ssh.ServerConfig{
		Config:        sshConfig(),
		ServerVersion: "SSH-2.0-bastion",
		NoClientAuth:  true,
		NoClientAuthCallback: func(meta ssh.ConnMetadata) (*ssh.Permissions, error) {
			if up != nil {
				return &ssh.Permissions{}, nil
			}
			osUser = meta.User()
			u, gd, err := c.connectUpstream(t, osUser, "jump")
			if err != nil {
				return nil, &ssh.BannerError{Err: err, Message: fmt.Sprintf("bastion: %s: %s\r\n", t.typed, publicMessage(err))}
			}
			up, g = u, gd
			return &ssh.Permissions{}, nil
		},
	}
	cfg.AddHostKey(signer)

	// The inner handshake includes the upstream connection, so its
	// deadline covers the person's part plus each upstream step's own.
	deadline := 2*c.srv.handshakeTimeout() + c.srv.awsBackstop() + c.srv.dialTimeout()
	timer := time.AfterFunc(deadline, func() { ch.Close() })
	isc, ichans, ireqs, err := ssh.NewServerConn(&chanConn{Channel: ch, local: c.nc.LocalAddr(), remote: c.nc.RemoteAddr()}, cfg)
	timer.Stop()
	if err != nil {
		if up != nil {
			up.conn.Close()
		}
		c.log.Debug("inner_handshake_failed", zap.String("typed", t.typed), zap.Error(err))
		return
	}
	c.runLink(peer{conn: isc, chans: ichans, reqs: ireqs}, up, g, t, osUser, "jump")
}

// runLink splices the person's side and the upstream until both end.
func (c *conn) runLink(person peer, up *upstreamConn, g *policyGuard, t target, osUser, mode string) {
	start := time.Now()
	log := c.log.With(zap.String("target", t.String()), zap.String("os_user", osUser))
	splice(c.ctx, person, up.peer, g, log)
	c.audit(audit.Event{Type: audit.TypeSessionEnd, Mode: mode, Typed: t.typed, Target: t.String(), Provider: t.Provider,
		InstanceID: t.ID, OSUser: osUser, UpstreamAddr: up.addr, DurationMS: time.Since(start).Milliseconds()})
	log.Info("link_closed", zap.Duration("duration", time.Since(start)))
}

// serveDirect serves a connection whose login names the target: the outer
// connection itself is the person's side of the splice.
func (c *conn) serveDirect(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, osUser, typed string) {
	t, err := c.resolve(typed)
	var up *upstreamConn
	var g *policyGuard
	if err == nil {
		if osUser == "" {
			err = &publicError{msg: "no OS user given; log in as user+" + typed}
		} else {
			up, g, err = c.connectUpstream(t, osUser, "direct")
		}
	}
	if err != nil {
		c.refuse(chans, reqs, fmt.Sprintf("bastion: %s: %s", typed, publicMessage(err)))
		return
	}
	c.runLink(peer{conn: c.sc, chans: chans, reqs: reqs}, up, g, t, osUser, "direct")
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
