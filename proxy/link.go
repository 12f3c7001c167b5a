package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
)

// link is one spliced person-to-instance connection. It is the splice's
// guard: its policy guard decides, and the audit trail, recordings and
// metrics watch every channel through it.
type link struct {
	policy *policyGuard
	c      *conn
	// ev holds the fields every event of the link carries.
	ev    audit.Event
	start time.Time
	// ctx ends the link (not the whole connection, in jump mode), with a
	// cause: a limit, a revocation, a drain.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// last is the time of the last payload byte either way, in Unix
	// nanoseconds, for the idle timeout.
	last     atomic.Int64
	up, down atomic.Int64
	// auditDown is set once the link is being ended because the audit
	// log cannot be written.
	auditDown atomic.Bool

	mu sync.Mutex // protects sessions, and writers.Add against Wait
	// sessions are the person's ends of live session channels, to tell
	// them why the link ends.
	sessions map[ssh.Channel]struct{}
	// writers are the goroutines writing messages to sessions.
	writers sync.WaitGroup
	// live is the link's entry in the server's registry of live links.
	live atomic.Pointer[liveEntry]
	// recordAll records every session of the link, with or without a
	// pty (a serial console); set before the splice starts.
	recordAll bool
}

// newLink returns the link of c that g guards, whose events carry the
// fields of ev.
func newLink(c *conn, g *policyGuard, ev audit.Event) *link {
	l := &link{policy: g, c: c, ev: ev, start: time.Now(), sessions: map[ssh.Channel]struct{}{}}
	l.ctx, l.cancel = context.WithCancelCause(c.ctx)
	l.last.Store(l.start.UnixNano())
	return l
}

// audit writes e with the link's fields filled in, and returns the write
// error (the server has handled it already).
func (l *link) audit(e audit.Event) error { return l.c.audit(withLinkFields(e, l.ev)) }

// policyRecords reports whether the policy in force requires sessions of
// kind (config.RecordExec) on the link's target to be recorded.
func (l *link) policyRecords(kind string) bool {
	if l.policy == nil || l.policy.rules == nil {
		return false
	}
	rules := l.policy.rules()
	return rules != nil && rules.Policy != nil && rules.Policy.Records(l.policy.base.Target, kind)
}

// withLinkFields returns e with the fields of the link described by base:
// mode, target and OS user, and the upstream address unless e names one.
func withLinkFields(e, base audit.Event) audit.Event {
	e.Mode, e.Typed, e.Target, e.Provider = base.Mode, base.Typed, base.Target, base.Provider
	e.InstanceID, e.OSUser = base.InstanceID, base.OSUser
	if e.UpstreamAddr == "" {
		e.UpstreamAddr = base.UpstreamAddr
	}
	return e
}

// end closes the link for a reason the person is told on every open
// session's stderr, and that is audited as limit (when not "").
func (l *link) end(limit, msg string) {
	if limit != "" {
		l.c.srv.Metrics.LimitHit(limit)
		l.audit(audit.Event{Type: audit.TypeLimitExceeded, Limit: limit, Reason: msg})
	}
	l.endWith(msg, errors.New(msg))
}

// endWith tells every open session msg and closes the link with cause.
func (l *link) endWith(msg string, cause error) {
	// Give the message a moment to leave before the connection closes.
	l.say(msg, time.Second)
	l.cancel(cause)
}

// endSession ends one session channel of the link, whose person's end is
// ch, with msg on its stderr and exit status 1. It does not block: the
// writes run in a goroutine owned by l.writers, and the channel is closed
// after a second even if the person's window stays full.
func (l *link) endSession(ch ssh.Channel, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writers.Add(1)
	go func() {
		defer l.writers.Done()
		t := time.AfterFunc(time.Second, func() { ch.Close() })
		defer t.Stop()
		io.WriteString(ch.Stderr(), "\r\nbastion: "+msg+"\r\n")
		ch.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{1}))
		ch.Close()
	}()
}

// say writes msg on the stderr of every open session, waiting up to wait
// for the writes to be done. A write blocks while the person's window is
// full, so each runs in its own goroutine, owned by l.writers; closing the
// channel ends it.
func (l *link) say(msg string, wait time.Duration) {
	l.mu.Lock()
	if len(l.sessions) == 0 {
		l.mu.Unlock()
		return
	}
	var batch sync.WaitGroup
	for ch := range l.sessions {
		batch.Add(1)
		l.writers.Add(1)
		go func() {
			defer l.writers.Done()
			defer batch.Done()
			io.WriteString(ch.Stderr(), "\r\nbastion: "+msg+"\r\n")
		}()
	}
	done := make(chan struct{})
	l.writers.Add(1)
	go func() {
		defer l.writers.Done()
		batch.Wait()
		close(done)
	}()
	l.mu.Unlock()
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// watchLimits ends the link at the idle timeout or the maximum session
// length, whichever comes first, on a timer (no goroutine per idle link);
// the returned func stops it and waits for a check under way.
func (l *link) watchLimits(idle, maxSession time.Duration) (stop func()) {
	w := &limitTimer{}
	w.check = func() (time.Duration, bool) {
		if l.ctx.Err() != nil {
			return 0, false
		}
		now := time.Now()
		next := time.Duration(-1)
		if maxSession > 0 {
			left := maxSession - now.Sub(l.start)
			if left <= 0 {
				l.end("max_session", fmt.Sprintf("session reached the maximum length of %s; closing", maxSession))
				return 0, false
			}
			next = left
		}
		if idle > 0 {
			left := idle - now.Sub(time.Unix(0, l.last.Load()))
			if left <= 0 {
				l.end("idle_timeout", fmt.Sprintf("no traffic for %s; closing the idle session", idle))
				return 0, false
			}
			if next < 0 || left < next {
				next = left
			}
		}
		return next, true
	}
	w.start()
	return w.stop
}

// allowChannel asks the link's policy guard.
func (l *link) allowChannel(dir direction, typ string, extra []byte) (bool, string) {
	return l.policy.allowChannel(dir, typ, extra)
}

// allowRequest asks the link's policy guard.
func (l *link) allowRequest(dir direction, chanType string, req *ssh.Request) (bool, string) {
	return l.policy.allowRequest(dir, chanType, req)
}

func (l *link) allowGlobal(dir direction, req *ssh.Request) bool {
	ok := l.policy.allowGlobal(dir, req)
	if ok && dir == fromPerson && (req.Type == reqTCPIPForward || req.Type == reqStreamlocalForward) {
		if dest, parsed := listenDest(req); parsed {
			l.audit(audit.Event{Type: audit.TypeForwardListen, Kind: "remote", Dest: dest})
		}
	}
	return ok
}

func (l *link) observe(dir direction, typ string, extra []byte, person ssh.Channel) channelObserver {
	// Numbered per connection, not per link: one ControlMaster
	// connection carries many links, and a channel number (and the
	// recording named after it) must be unique within it.
	n := int(l.c.chans.Add(1))
	l.c.srv.Metrics.Channel(typ)
	base := counted{l: l}
	switch typ {
	case chanSession:
		l.mu.Lock()
		l.sessions[person] = struct{}{}
		l.mu.Unlock()
		return newSession(l, n, person)
	case chanDirectTCPIP, chanForwardedTCPIP, chanDirectStreamlocal, chanForwardedStreamloc:
		f := &forward{counted: base, n: n, start: time.Now()}
		f.kind = "local"
		if dir == fromUpstream {
			f.kind = "remote"
		}
		f.dest, f.origin, _ = channelDest(typ, extra)
		l.audit(audit.Event{Type: audit.TypeForwardOpen, Channel: n, Kind: f.kind, Dest: f.dest, Origin: f.origin})
		return f
	case chanAgent:
		l.audit(audit.Event{Type: audit.TypeAgentUse, Channel: n, Op: "channel"})
	}
	return &base
}

// counted is the observer of channels with nothing to audit inside: it
// counts bytes for the link, the metrics and the idle timeout.
type counted struct{ l *link }

func (c *counted) request(direction, *ssh.Request) string { return "" }

func (c *counted) data(dir direction, _ bool, p []byte) {
	c.l.last.Store(time.Now().UnixNano())
	c.l.moved(dir, len(p))
	if dir == fromPerson {
		c.l.c.srv.Metrics.BytesUp(len(p))
	} else {
		c.l.c.srv.Metrics.BytesDown(len(p))
	}
}

func (c *counted) closed(up, down int64) {
	c.l.up.Add(up)
	c.l.down.Add(down)
}

// forward is the observer of a port-forwarding channel.
type forward struct {
	counted
	n                  int
	start              time.Time
	kind, dest, origin string
}

func (f *forward) closed(up, down int64) {
	f.counted.closed(up, down)
	f.l.audit(audit.Event{Type: audit.TypeForwardClose, Channel: f.n, Kind: f.kind, Dest: f.dest, Origin: f.origin,
		BytesUp: up, BytesDown: down, DurationMS: time.Since(f.start).Milliseconds()})
}

// runLimits starts the link's limit watcher; the returned func stops it and
// waits for it.
func (l *link) runLimits() (stop func()) {
	lim := l.c.srv.currentRules().Limits
	if lim.IdleTimeout <= 0 && lim.MaxSession <= 0 {
		// Nothing to watch: no goroutine per idle session.
		return func() { l.cancel(nil) }
	}
	stopWatch := l.watchLimits(lim.IdleTimeout, lim.MaxSession)
	return func() {
		l.cancel(nil)
		stopWatch()
	}
}

// endAudit writes the link_end event: totals, and why the link ended if it
// was ended by the bastion.
func (l *link) endAudit() {
	e := audit.Event{Type: audit.TypeLinkEnd, BytesUp: l.up.Load(), BytesDown: l.down.Load(), DurationMS: time.Since(l.start).Milliseconds()}
	if cause := context.Cause(l.ctx); cause != nil && cause != context.Canceled {
		e.Reason = cause.Error()
	}
	l.audit(e)
	l.logger().Info("link_closed", zap.Duration("duration", time.Since(l.start)))
}

// logger returns the link's logger.
func (l *link) logger() *zap.Logger {
	return l.c.log.With(zap.String("target", l.ev.Target), zap.String("os_user", l.ev.OSUser))
}

var _ guard = (*link)(nil)

// runLink runs relay, which splices the person's side and the upstream
// until both end or l.ctx is done (a limit, a revocation, a drain
// deadline), with the link tracked, counted, watched by its limits and
// audited at its end.
func (c *conn) runLink(l *link, relay func()) {
	c.trackLink(l)
	defer c.untrackLink(l)
	defer c.srv.registerLink(l)()
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
