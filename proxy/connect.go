package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/upstream"
)

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
	if s := c.identity.SSO; s != nil && !time.Now().Before(s.Expires) {
		// A connection that outlives its SSO binding (a ControlMaster)
		// carries no new link, as one authenticated by a certificate
		// that has expired.
		msg := fmt.Sprintf("your SSO login ended at %s; log in again", s.Expires.UTC().Format(time.RFC3339))
		c.srv.Metrics.PolicyDenial("login")
		emit(audit.Event{Type: audit.TypePolicyDenied, Reason: msg})
		return nil, nil, &publicError{msg: msg}
	}
	if d := rules.Policy.Authorize(base); !d.Allow {
		c.srv.Metrics.PolicyDenial("login")
		emit(audit.Event{Type: audit.TypePolicyDenied, Reason: d.Reason})
		return nil, nil, &publicError{msg: d.Reason}
	}
	if why := c.kindRefusal(rules.Policy, base); why != "" {
		c.srv.Metrics.PolicyDenial("login")
		emit(audit.Event{Type: audit.TypePolicyDenied, Reason: why})
		return nil, nil, &publicError{msg: why}
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
	g := &policyGuard{rules: c.srv.currentRules, base: base, typed: t.typed,
		denied: func(capability, reason string) {
			c.srv.Metrics.PolicyDenial(capability)
			c.audit(withLinkFields(audit.Event{Type: audit.TypePolicyDenied, Capability: capability, Reason: reason}, ev))
		}}
	l := newLink(c, g, ev)
	l.recordAll = alwaysRecorded(t.Provider)
	return up, l, nil
}
