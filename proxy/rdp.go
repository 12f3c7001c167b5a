package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/config"
	"bastion/upstream"
)

// rdpTypedPort is the port a person names to reach a target's Remote
// Desktop (ssh -L 13389:win-1:3389 bastion), whatever port the instance's
// RDP server listens on, as port 22 names its SSH server.
const rdpTypedPort = config.DefaultRDPPort

// rdpCloseGrace is how long a forward whose one direction ended waits for
// the other before closing both.
const rdpCloseGrace = 30 * time.Second

// An RDP forward is verified before it is spliced, and the verified
// certificate is the one the person's client gets, as far as a party that
// does not terminate TLS can make it so:
//
//   - The bastion dials the instance's RDP port itself, makes its own
//     X.224 negotiation and TLS handshake (probeRDPCertificate), and
//     compares the certificate's SHA-256 with the x509-cert host keys
//     Lightsail reported. Only then does it dial the connection it
//     splices, to the same address, and accept the person's channel; a
//     refused forward is a refused channel open, so no byte of the
//     instance reaches the person.
//   - The person's client makes its own negotiation and TLS handshake on
//     the spliced connection; the bastion must not replace the
//     certificate (that would be a man in the middle, and CredSSP binds
//     the server's public key). It watches the instance's side instead
//     (rdpWatch): the confirm must select TLS, and up to TLS 1.2 the
//     certificate, in the clear, must be the verified one, or the
//     connection ends before the certificate reaches the person. TLS 1.3
//     encrypts it: there the person's client checks it against the
//     fingerprint `ssh bastion rdp` printed, the one the bastion verified
//     moments before on the same path (forward_close says which:
//     certificate_rechecked or certificate_unseen).
//
// A mismatch against cached access details drops them and asks Lightsail
// again once, so that a renewed certificate is not refused for the
// cache's sake.

// rdpForward serves a direct-tcpip channel to a target's RDP port and
// reports whether nc was one; false leaves the channel to jump. It runs on
// the channel's goroutine and returns when the forward ends.
func (c *conn) rdpForward(nc ssh.NewChannel, hold *pendingJump) bool {
	var p tcpipChannel
	if ssh.Unmarshal(nc.ExtraData(), &p) != nil || p.Port != rdpTypedPort || len(p.Host) > upstream.MaxNameLen {
		return false
	}
	// No inner login follows: the unauthenticated slot is not needed.
	hold.loggedIn()
	setup := c.jumpStarted()
	f, ok := c.rdpConnect(nc, hold, p)
	setup()
	if ok {
		f.splice()
	}
	return true
}

// rdpLink is one verified RDP forward: the person's channel and the
// connection to the instance's RDP server.
type rdpLink struct {
	c  *conn
	ch ssh.Channel
	up net.Conn
	ev audit.Event
	// watch checks the instance's side of the spliced connection.
	watch *rdpWatch
}

// rdpConnect resolves and authorizes the forward, verifies the instance's
// RDP certificate and dials the connection to splice; on any failure it
// refuses nc with a one-line reason, audited, and reports false.
func (c *conn) rdpConnect(nc ssh.NewChannel, hold *pendingJump, p tcpipChannel) (*rdpLink, bool) {
	typed := p.Host
	refuse := func(code ssh.RejectionReason, msg string) (*rdpLink, bool) {
		nc.Reject(code, fmt.Sprintf("bastion: %s: %s", printable(typed), msg))
		return nil, false
	}
	t, err := c.resolve(typed)
	if err != nil {
		return refuse(ssh.ConnectionFailed, publicMessage(err))
	}
	ev := audit.Event{Mode: "jump", Typed: t.typed, Target: t.String(), Provider: t.Provider, InstanceID: t.ID,
		Capability: config.CapRDP, Kind: "rdp", Dest: net.JoinHostPort(audit.Clip(typed), strconv.Itoa(int(p.Port))),
		Origin: net.JoinHostPort(audit.Clip(p.OrigHost), strconv.Itoa(int(p.OrigPort)))}
	unaudited := false
	emit := func(e audit.Event) {
		if c.audit(withRDPFields(e, ev)) != nil && !c.srv.AuditFailOpen {
			unaudited = true
		}
	}
	rp, access, err := c.rdpAuthorize(t, &ev, emit)
	if err != nil {
		code := ssh.ConnectionFailed
		if errors.Is(err, errRDPDenied) {
			code = ssh.Prohibited
		}
		return refuse(code, publicMessage(err))
	}
	if unaudited {
		return refuse(ssh.ConnectionFailed, msgAuditRefused)
	}

	cert, err := c.rdpVerify(rp, t.Target, &access)
	fp := ""
	if cert != nil {
		fp = cert.Fingerprint()
	}
	if err != nil {
		e := audit.Event{Type: audit.TypeRDPCertificateRefused, UpstreamAddr: access.Addr, HostKeyFingerprint: fp,
			HostKeySource: "lightsail", Reason: rdpRefusal(err, fp), Error: audit.Clip(err.Error())}
		emit(e)
		c.log.Info("rdp_certificate_refused", zap.String("target", t.String()), zap.String("addr", access.Addr), clippedError(err))
		return refuse(ssh.ConnectionFailed, rdpRefusal(err, fp))
	}
	emit(audit.Event{Type: audit.TypeRDPCertificateVerified, UpstreamAddr: access.Addr, HostKeyFingerprint: fp, HostKeySource: "lightsail"})

	up, err := dialTransport(c.ctx, &upstream.Credentials{Addr: access.Addr, Dial: access.Dial}, c.srv.dialTimeout())
	if err != nil {
		emit(audit.Event{Type: audit.TypeUpstreamError, UpstreamAddr: access.Addr, Error: audit.Clip(err.Error())})
		return refuse(ssh.ConnectionFailed, dialFailure(access.Addr, err, c.srv.dialTimeout()))
	}
	if unaudited {
		up.Close()
		return refuse(ssh.ConnectionFailed, msgAuditRefused)
	}
	ch, reqs, err := hold.accept(nc)
	if err != nil {
		up.Close()
		return nil, false
	}
	go ssh.DiscardRequests(reqs)
	return &rdpLink{c: c, ch: ch, up: up, ev: ev, watch: &rdpWatch{want: cert.SHA256}}, true
}

// errRDPDenied marks a policy denial of rdp.
var errRDPDenied = errors.New("rdp denied by policy")

// rdpAuthorize decides whether the person may use rdp on t, by the policy
// in force now: first whether any policy grants it there (before any AWS
// call), then, once the provider said which Windows user the instance
// has, whether one grants it for that OS user. It fills ev's OS user and
// address and audits through emit; the error is a *publicError, wrapping
// errRDPDenied for a denial.
func (c *conn) rdpAuthorize(t target, ev *audit.Event, emit func(audit.Event)) (upstream.RDPProvider, *upstream.RDPAccess, error) {
	deny := func(reason string) error {
		c.srv.Metrics.PolicyDenial(config.CapRDP)
		emit(audit.Event{Type: audit.TypePolicyDenied, Reason: reason})
		return &publicError{msg: reason, err: errRDPDenied}
	}
	rules := c.srv.currentRules()
	id := rules.Auth.Current(c.identity)
	if d := rules.Policy.Grants(id, t.forPolicy(), config.CapRDP); !d.Allow {
		return nil, nil, deny(d.Reason)
	}
	rp, ok := c.srv.Resolver.Provider(t.Provider).(upstream.RDPProvider)
	if !ok {
		const msg = "Remote Desktop is served for Lightsail Windows instances only"
		emit(audit.Event{Type: audit.TypeUpstreamError, Reason: msg})
		return nil, nil, &publicError{msg: msg}
	}
	access, err := c.rdpAccess(rp, t.Target)
	if err != nil {
		c.rdpUpstreamError(emit, t, err)
		return nil, nil, err
	}
	ev.OSUser = audit.Clip(access.Username)
	ev.UpstreamAddr = access.Addr
	if d := rules.Policy.Authorize(auth.Request{Identity: id, Target: t.forPolicy(), OSUser: access.Username, Capability: config.CapRDP}); !d.Allow {
		return nil, nil, deny(d.Reason)
	}
	emit(audit.Event{Type: audit.TypePolicyAllowed})
	return rp, access, nil
}

// rdpAccess asks the provider for t's Remote Desktop access, bounded by
// the AWS backstop.
func (c *conn) rdpAccess(rp upstream.RDPProvider, t upstream.Target) (*upstream.RDPAccess, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.awsBackstop())
	defer cancel()
	return rp.RDP(ctx, t)
}

// rdpUpstreamError audits and logs a failed provider call.
func (c *conn) rdpUpstreamError(emit func(audit.Event), t target, err error) {
	e := audit.Event{Type: audit.TypeUpstreamError, Error: audit.Clip(err.Error())}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		e.RequestID = ue.RequestID
	}
	emit(e)
	c.log.Info("rdp_access_failed", zap.String("target", t.String()), clippedError(err))
}

// rdpVerify checks the certificate the RDP server at access's address
// presents now against the reported ones, and returns it (nil if the
// server presented none). A mismatch asks the provider once more, without
// its cache, and checks the same certificate against that answer (which
// replaces *access).
func (c *conn) rdpVerify(rp upstream.RDPProvider, t upstream.Target, access **upstream.RDPAccess) (*upstream.RDPCertificate, error) {
	a := *access
	now := time.Now()
	if len(a.Certificates) == 0 {
		return nil, upstream.ErrRDPNoCertificate
	}
	if len(a.Current(now)) == 0 {
		// Every reported certificate has expired: whichever the server
		// presents is refused, so it is not dialled.
		return nil, fmt.Errorf("%w (not valid after %s)", upstream.ErrRDPCertificateExpired, a.Certificates[0].NotValidAfter.UTC().Format(time.RFC3339))
	}
	der, err := c.probeRDP(a)
	if err != nil {
		return nil, err
	}
	cert, err := a.VerifyRDPCertificate(der, now)
	if errors.Is(err, upstream.ErrRDPCertificateMismatch) {
		rp.ForgetRDP(t)
		fresh, ferr := c.rdpAccess(rp, t)
		if ferr != nil {
			return &cert, err
		}
		*access = fresh
		cert, err = fresh.VerifyRDPCertificate(der, now)
	}
	return &cert, err
}

// probeRDP dials the RDP server of a and returns the certificate it
// presents.
func (c *conn) probeRDP(a *upstream.RDPAccess) ([]byte, error) {
	nc, err := dialTransport(c.ctx, &upstream.Credentials{Addr: a.Addr, Dial: a.Dial}, c.srv.dialTimeout())
	if err != nil {
		return nil, &publicError{msg: dialFailure(a.Addr, err, c.srv.dialTimeout()), err: err}
	}
	defer nc.Close()
	der, err := probeRDPCertificate(c.ctx, nc, c.srv.handshakeTimeout())
	if err != nil {
		return nil, fmt.Errorf("probing the rdp server at %s: %w", a.Addr, err)
	}
	return der, nil
}

// rdpRefusal is the sentence a refused RDP forward shows the person.
func rdpRefusal(err error, presented string) string {
	var pe *publicError
	switch {
	case errors.Is(err, upstream.ErrRDPNoCertificate):
		return "Lightsail reported no RDP certificate for this instance; refusing the forward"
	case errors.Is(err, upstream.ErrRDPCertificateExpired):
		return "the RDP certificate Lightsail reported has expired; refusing the forward"
	case errors.Is(err, upstream.ErrRDPCertificateMismatch):
		return "the instance's RDP certificate (SHA256 " + presented + ") is not the one Lightsail reported; refusing the forward"
	case errors.Is(err, errRDPNoTLS):
		return "the instance's RDP server did not negotiate TLS, so its certificate cannot be checked; refusing the forward"
	case errors.As(err, &pe):
		return pe.msg
	}
	return "the RDP security negotiation with the instance failed; refusing the forward"
}

// splice copies bytes both ways between the person's channel and the RDP
// server until both directions end, or one ends and the other does not
// within rdpCloseGrace, or the connection ends. Traffic keeps the
// connection from idling out; the forward is audited as forward_open and
// forward_close (kind rdp) with the bytes moved.
func (f *rdpLink) splice() {
	c := f.c
	start := time.Now()
	c.audit(withRDPFields(audit.Event{Type: audit.TypeForwardOpen, UpstreamAddr: f.up.RemoteAddr().String()}, f.ev))
	c.log.Info("rdp_forward_open", zap.String("target", f.ev.Target), zap.String("addr", f.ev.UpstreamAddr))
	ch := ownChannel{Channel: f.ch, c: c}
	closeAll := func() {
		f.ch.Close()
		f.up.Close()
	}
	stop := context.AfterFunc(c.ctx, closeAll)
	defer stop()

	var upBytes, downBytes atomic.Int64
	done := make(chan struct{}, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		n, _ := io.Copy(f.up, ch)
		upBytes.Store(n)
		if cw, ok := f.up.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	})
	wg.Go(func() {
		n, err := f.copyDown(ch)
		downBytes.Store(n)
		if err != nil {
			f.switched(err)
			closeAll()
		}
		f.ch.CloseWrite()
		done <- struct{}{}
	})
	<-done
	grace := time.AfterFunc(rdpCloseGrace, closeAll)
	<-done
	grace.Stop()
	closeAll()
	wg.Wait()
	// The copiers are done: the watch is no longer written.
	status := "certificate_unseen"
	if f.watch.state == rdpWatchDone && !f.watch.unseen {
		status = "certificate_rechecked"
	}
	c.audit(withRDPFields(audit.Event{Type: audit.TypeForwardClose, BytesUp: upBytes.Load(), BytesDown: downBytes.Load(),
		DurationMS: time.Since(start).Milliseconds(), Status: status}, f.ev))
	c.touch()
}

// copyDown copies the instance's bytes to the person through the watch,
// and returns how many were passed on and the watch's error, if any.
func (f *rdpLink) copyDown(w io.Writer) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, rerr := f.up.Read(buf)
		if n > 0 {
			out, err := f.watch.feed(buf[:n])
			if err != nil {
				return total, err
			}
			if len(out) > 0 {
				m, werr := w.Write(out)
				total += int64(m)
				if werr != nil {
					return total, nil
				}
			}
		}
		if rerr != nil {
			return total, nil
		}
	}
}

// switched audits and logs a spliced connection the watch ended.
func (f *rdpLink) switched(err error) {
	f.c.audit(withRDPFields(audit.Event{Type: audit.TypeRDPCertificateRefused, UpstreamAddr: f.up.RemoteAddr().String(),
		HostKeySource: "lightsail", Reason: "the spliced connection failed the certificate check; ended", Error: audit.Clip(err.Error())}, f.ev))
	f.c.log.Warn("rdp_forward_refused", zap.String("target", f.ev.Target), zap.String("addr", f.ev.UpstreamAddr), clippedError(err))
}

// withRDPFields fills e with the forward's fields from base.
func withRDPFields(e, base audit.Event) audit.Event {
	e = withLinkFields(e, base)
	e.Capability, e.Kind, e.Dest, e.Origin = base.Capability, base.Kind, base.Dest, base.Origin
	return e
}
