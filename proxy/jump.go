package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/upstream"
)

// serveJump serves a ProxyJump connection: each direct-tcpip channel to a
// target's port 22 gets its own inner SSH server and upstream connection.
func (c *conn) serveJump(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	start := time.Now()
	c.idle.mu.Lock()
	c.idle.last, c.idle.own = start, map[ssh.Channel]struct{}{}
	c.idle.mu.Unlock()
	// The watcher ends with the connection's channels, before c.wg is
	// waited for (endForLimit adds to it).
	defer c.watchLimits(start)()
	// One loop takes the channel opens and the global requests
	// (keepalive@openssh.com and the like), which get the failure reply
	// OpenSSH servers send too: no goroutine of its own per connection.
	for reqs != nil || chans != nil {
		var (
			nc ssh.NewChannel
			ok bool
		)
		select {
		case req, ok := <-reqs:
			if !ok {
				reqs = nil
			} else if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		case nc, ok = <-chans:
			if !ok {
				chans = nil
				continue
			}
		}
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
	if c.rdpForward(nc, hold) {
		return
	}
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
