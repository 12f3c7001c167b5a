package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/sso"
)

// SSO logins (issue 14), on the outer connection:
//
//  1. PublicKeyCallback: a plain key no user lists is looked up in the
//     binding store. Bound (and not expired), the binding is the identity:
//     the login is as silent as a configured key's. Unbound, the key is
//     accepted as a candidate (ssoCandidate in the Permissions), so that
//     the client goes on to sign with it.
//  2. VerifiedPublicKeyCallback: x/crypto calls it only once the client
//     has signed with that very key. A candidate gets a banner for clients
//     that will not do keyboard-interactive (OpenSSH in BatchMode) and a
//     PartialSuccessError whose Next offers keyboard-interactive, through a
//     closure holding that key, and publickey again, so that a configured
//     key the client offers next still logs in fully.
//  3. The keyboard-interactive callback runs the device flow: one
//     challenge with no prompt whose instruction shows the URI and the
//     code, then the bastion polls the provider itself, the handshake's
//     deadline extended up to the code's expiry (at most sso.MaxLoginWait).
//     Approved, the key is bound and the login succeeds with the identity.
//
// x/crypto does not treat a BannerError wrapping a PartialSuccessError as
// a partial success (it type-asserts the error itself), so the banner of
// step 2 is sent on its own, through the connection's ServerPreAuthConn,
// just before the partial success is returned.

// ssoCandidate marks, in the Permissions PublicKeyCallback returns, a key
// that may log in through SSO once it has signed.
type ssoCandidate struct{}

// msgSSOBatch is the banner of a key that must log in first: it reaches a
// client that cannot answer keyboard-interactive (BatchMode).
const msgSSOBatch = "bastion: this key is not logged in; run 'ssh <bastion> login' once, interactively\r\n"

// ssoLookupTimeout bounds a binding store lookup during authentication.
const ssoLookupTimeout = 3 * time.Second

// ssoPending bounds the SSO logins waiting for their approval, in all and
// per source address. The zero value is ready to use.
type ssoPending struct {
	mu       sync.Mutex // protects total and bySource
	total    int
	bySource map[string]int
}

// acquire takes a slot for a login from host, or says which bound is
// reached.
func (p *ssoPending) acquire(host string, max, perSource int) (release func(), why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bySource == nil {
		p.bySource = map[string]int{}
	}
	switch {
	case max > 0 && p.total >= max:
		return nil, "too many logins are waiting for approval"
	case perSource > 0 && p.bySource[host] >= perSource:
		return nil, "too many logins from your address are waiting for approval"
	}
	p.total++
	p.bySource[host]++
	return sync.OnceFunc(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.total--
		if p.bySource[host]--; p.bySource[host] <= 0 {
			delete(p.bySource, host)
		}
	}), ""
}

// permsFor returns the Permissions carrying id.
func permsFor(id auth.Identity) *ssh.Permissions {
	perms := &ssh.Permissions{ExtraData: map[any]any{identityKey{}: id}}
	if id.NoTouchRequired {
		// x/crypto then accepts a security key's signature without the
		// user-presence flag, as sshd does.
		perms.Extensions = map[string]string{"no-touch-required": ""}
	}
	return perms
}

// boundIdentity returns the identity a live binding of key gives, by the
// rules r: none for a certificate, an unbound or expired key, or a binding
// the rules refuse now (sso off, another issuer, a configured name without
// merging).
func (c *conn) boundIdentity(r *Rules, key ssh.PublicKey) (auth.Identity, bool) {
	if r.SSO == nil {
		return auth.Identity{}, false
	}
	if _, isCert := key.(*ssh.Certificate); isCert {
		return auth.Identity{}, false
	}
	fp := ssh.FingerprintSHA256(key)
	ctx, cancel := context.WithTimeout(c.ctx, ssoLookupTimeout)
	defer cancel()
	b, ok, err := r.SSO.Store.Binding(ctx, fp)
	if err != nil {
		// Debug: a stranger offering many keys while the store is down
		// must not flood the log (the fleet store's health says it).
		c.log.Debug("sso_binding_lookup_failed", zap.String("key_fingerprint", fp), zap.Error(err))
		c.srv.ssoStoreFailed("sso_binding_get", err)
		return auth.Identity{}, false
	}
	if !ok || !time.Now().Before(b.Expires) {
		return auth.Identity{}, false
	}
	id, err := r.Auth.Bound(fp, b.Username, auth.SSO{Issuer: b.Issuer, Subject: b.Subject, Email: b.Email, Groups: b.Groups, Expires: b.Expires})
	if err != nil {
		c.log.Info("sso_binding_refused", zap.String("key_fingerprint", fp), zap.Error(err))
		return auth.Identity{}, false
	}
	return id, true
}

// ssoVerified is the VerifiedPublicKeyCallback of a server with SSO: a
// candidate key that has signed gets the partial success of step 2; any
// other key's Permissions go through.
func (c *conn) ssoVerified(r *Rules, next ssh.ServerAuthCallbacks, banner func(string) error) func(ssh.ConnMetadata, ssh.PublicKey, *ssh.Permissions, string) (*ssh.Permissions, error) {
	return func(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
		if perms == nil || perms.ExtraData[ssoCandidate{}] == nil {
			return perms, nil
		}
		// Counted as a refused key until the login succeeds: a client
		// that gives up here (BatchMode) failed to authenticate.
		c.rejected++
		c.ssoKey = ssh.FingerprintSHA256(key)
		c.audit(audit.Event{Type: audit.TypeAuthFailure, Method: "publickey", Login: audit.Clip(meta.User()),
			KeyFingerprint: ssh.FingerprintSHA256(key), Reason: "unknown_key", Error: "not bound; sso login offered"})
		if banner != nil {
			if err := banner(msgSSOBatch); err != nil {
				return nil, err
			}
		}
		n := next
		n.KeyboardInteractiveCallback = c.ssoLogin(r, key)
		return nil, &ssh.PartialSuccessError{Next: n}
	}
}

// ssoLogin returns the keyboard-interactive callback that logs key in
// through the provider: tried once per connection; a refusal is a banner.
func (c *conn) ssoLogin(r *Rules, key ssh.PublicKey) func(ssh.ConnMetadata, ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
	var tried bool
	return func(meta ssh.ConnMetadata, challenge ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
		if tried {
			return nil, errors.New("sso login already attempted on this connection")
		}
		tried = true
		id, err := c.runSSOLogin(r, key, challenge)
		if err != nil {
			ref := sso.AsRefusal(err)
			return nil, &ssh.BannerError{Err: ref, Message: ref.Message() + "\r\n"}
		}
		return permsFor(id), nil
	}
}

// runSSOLogin runs one device-flow login for key and binds it. Every
// refusal is audited (sso_denied) and logged here.
func (c *conn) runSSOLogin(r *Rules, key ssh.PublicKey, challenge ssh.KeyboardInteractiveChallenge) (auth.Identity, error) {
	svc := r.SSO
	fp := ssh.FingerprintSHA256(key)
	denied := func(err error, acct *sso.Account) error {
		ref := sso.AsRefusal(err)
		e := audit.Event{Type: audit.TypeSSODenied, Reason: ref.Label, Issuer: svc.Issuer(), KeyFingerprint: fp, Error: audit.Clip(ref.Error())}
		if acct != nil {
			e.Subject, e.User = acct.Subject, acct.Username
		}
		c.audit(e)
		c.srv.Metrics.SSOLogin(ref.Label)
		c.log.Info("sso_denied", zap.String("reason", ref.Label), zap.String("key_fingerprint", fp), clippedError(ref))
		return ref
	}
	release, why := c.srv.ssoWait.acquire(c.host, svc.MaxPending, svc.MaxPendingPerSource)
	if release == nil {
		c.limitHit("sso_pending", why)
		return auth.Identity{}, denied(&sso.Refusal{Label: sso.LabelLimit, Reason: why}, nil)
	}
	defer release()

	dev, err := svc.Start(c.ctx)
	if err != nil {
		return auth.Identity{}, denied(err, nil)
	}
	// The person has until the code expires; the handshake's deadline
	// gives them that, and the rest of the handshake its own after.
	wait := time.Until(dev.Expiry)
	c.nc.SetDeadline(time.Now().Add(wait + c.srv.handshakeTimeout()))
	defer c.nc.SetDeadline(time.Now().Add(c.srv.handshakeTimeout()))
	if _, err := challenge("", dev.Prompt(), nil, nil); err != nil {
		return auth.Identity{}, denied(&sso.Refusal{Label: sso.LabelExpired, Reason: "the client went away", Err: err}, nil)
	}
	wctx, wcancel := context.WithCancelCause(c.ctx)
	stop := c.watchPeer(wcancel)
	acct, err := svc.Finish(wctx, dev)
	stop()
	if err != nil && wctx.Err() != nil {
		// The client went away, or the connection was ended (shed,
		// drained): abandoned, not refused by the provider.
		err = &sso.Refusal{Label: sso.LabelExpired, Reason: "the login was abandoned", Err: context.Cause(wctx)}
	}
	wcancel(nil)
	if err != nil {
		return auth.Identity{}, denied(err, nil)
	}
	expires := time.Now().Add(svc.TTL).UTC().Truncate(time.Second)
	// Decided by the rules in force now: a reload may have come while
	// the person was in their browser.
	if r = c.srv.currentRules(); r.SSO == nil {
		return auth.Identity{}, denied(&sso.Refusal{Label: sso.LabelUnreachable, Reason: "sso was turned off", Err: auth.ErrSSOOff}, &acct)
	}
	svc = r.SSO
	id, err := r.Auth.Bound(fp, acct.Username, auth.SSO{Issuer: acct.Issuer, Subject: acct.Subject, Email: acct.Email, Groups: acct.Groups, Expires: expires})
	switch {
	case errors.Is(err, auth.ErrMergeRefused):
		return auth.Identity{}, denied(&sso.Refusal{Label: sso.LabelMergeRefused,
			Reason: fmt.Sprintf("%s is a configured user's name; log in with that user's key", acct.Username), Err: err}, &acct)
	case err != nil:
		return auth.Identity{}, denied(&sso.Refusal{Label: sso.LabelInvalidToken, Reason: "not accepted", Err: err}, &acct)
	}
	b := sso.Binding{Fingerprint: fp, Issuer: acct.Issuer, Subject: acct.Subject, Username: acct.Username,
		Groups: acct.Groups, Email: acct.Email, Expires: expires}
	ctx, cancel := context.WithTimeout(c.ctx, ssoLookupTimeout)
	err = svc.Store.PutBinding(ctx, b)
	cancel()
	if err != nil {
		c.srv.ssoStoreFailed("sso_binding_put", err)
		label, reason := sso.LabelUnreachable, "the login could not be stored; try again later"
		if errors.Is(err, sso.ErrFull) {
			label, reason = sso.LabelLimit, "too many keys are logged in"
		}
		return auth.Identity{}, denied(&sso.Refusal{Label: label, Reason: reason, Err: err}, &acct)
	}
	c.audit(audit.Event{Type: audit.TypeSSOLogin, Issuer: acct.Issuer, Subject: acct.Subject, User: acct.Username,
		Groups: strings.Join(id.Groups, ","), KeyFingerprint: fp, Expires: &expires})
	c.srv.Metrics.SSOLogin("ok")
	c.log.Info("sso_login", zap.String("user", acct.Username), zap.String("subject", audit.Clip(acct.Subject)), zap.String("key_fingerprint", fp))
	return id, nil
}

// errSSOPending refuses, after the partial success, the key being logged
// in: it must go through keyboard-interactive.
var errSSOPending = errors.New("key held for an sso login; keyboard-interactive is next")

// errClientGone ends a login whose client closed its connection while the
// bastion waited for the approval.
var errClientGone = errors.New("the client closed its connection while waiting")

// readWatch is the connection handed to the SSH library when SSO is on.
// x/crypto keeps reading the socket in a goroutine of its own while an
// authentication callback runs, so a client that goes away while its
// login waits shows as an error of that read: gone is closed then, and
// the waiting login ends rather than polling until the code expires.
type readWatch struct {
	net.Conn
	once sync.Once
	gone chan struct{}
}

func newReadWatch(nc net.Conn) *readWatch { return &readWatch{Conn: nc, gone: make(chan struct{})} }

func (w *readWatch) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.once.Do(func() { close(w.gone) })
	}
	return n, err
}

// watchPeer cancels cancel with errClientGone once the connection's
// reads fail (its client went away), until the returned stop is called.
func (c *conn) watchPeer(cancel context.CancelCauseFunc) (stop func()) {
	w := c.readWatch
	if w == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-w.gone:
			cancel(errClientGone)
		case <-quit:
		}
	}()
	return sync.OnceFunc(func() { close(quit); <-done })
}

// ssoStoreFailed reports a failed call of the binding store when it is the
// fleet table (its health, /readyz and the rate-limited log line); a file
// store's failures are in the login's own sso_denied event.
func (s *Server) ssoStoreFailed(op string, err error) {
	if s.Fleet.Degraded != nil {
		s.fleetFailed(op, err)
	}
}
