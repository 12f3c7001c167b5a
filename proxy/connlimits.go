package proxy

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// connLimitsRecheck is how often the watcher of a connection re-reads the
// limits while nothing else wakes it, so that a reload reaches it.
const connLimitsRecheck = time.Minute

// idleState is what the connection-level limits watch on a ProxyJump
// connection: when it was last active, its own sessions, and the jumps in
// their inner handshake.
type idleState struct {
	mu sync.Mutex // protects last, own and jumping
	// last is the time of the connection's last activity: a byte on one of
	// its own sessions, a request on one, a jump channel opened, a link
	// ended.
	last time.Time
	// own are the bastion's own session channels (`ssh bastion`, list,
	// the menu), to tell them why the connection ends.
	own map[ssh.Channel]struct{}
	// jumping counts jump channels between their open and the end of
	// their inner handshake: not links yet, but not idle either.
	jumping int
	// watch is the limits watcher of a ProxyJump connection (nil in
	// direct mode): a timer, not a goroutine per idle connection.
	watch *limitTimer
}

// touch notes activity on the connection.
func (c *conn) touch() {
	c.idle.mu.Lock()
	c.idle.last = time.Now()
	c.idle.mu.Unlock()
}

// wakeWatcher tells the limits watcher that something it waits for ended.
func (c *conn) wakeWatcher() {
	c.idle.mu.Lock()
	w := c.idle.watch
	c.idle.mu.Unlock()
	if w != nil {
		w.wake()
	}
}

// jumpStarted notes a jump channel in its inner handshake; the returned
// func notes its end.
func (c *conn) jumpStarted() (done func()) {
	c.idle.mu.Lock()
	c.idle.jumping++
	c.idle.last = time.Now()
	c.idle.mu.Unlock()
	return func() {
		c.idle.mu.Lock()
		c.idle.jumping--
		c.idle.last = time.Now()
		c.idle.mu.Unlock()
		c.wakeWatcher()
	}
}

// ownChannel is a session channel on the bastion itself: its traffic keeps
// the connection from idling out.
type ownChannel struct {
	ssh.Channel
	c *conn
}

func (o ownChannel) Read(p []byte) (int, error) {
	n, err := o.Channel.Read(p)
	if n > 0 {
		o.c.touch()
	}
	return n, err
}

func (o ownChannel) Write(p []byte) (int, error) {
	n, err := o.Channel.Write(p)
	if n > 0 {
		o.c.touch()
	}
	return n, err
}

// trackOwn registers an own session channel and returns it wrapped so that
// its traffic counts as activity; untrackOwn forgets it.
func (c *conn) trackOwn(ch ssh.Channel) ssh.Channel {
	o := ownChannel{Channel: ch, c: c}
	c.idle.mu.Lock()
	defer c.idle.mu.Unlock()
	if c.idle.own == nil {
		c.idle.own = map[ssh.Channel]struct{}{}
	}
	c.idle.own[o] = struct{}{}
	c.idle.last = time.Now()
	return o
}

func (c *conn) untrackOwn(ch ssh.Channel) {
	c.idle.mu.Lock()
	defer c.idle.mu.Unlock()
	delete(c.idle.own, ch)
	c.idle.last = time.Now()
}

// watchLimits enforces limits.idle_timeout and limits.max_session on a
// ProxyJump connection while it holds no live link and no jump in its inner
// handshake: `ssh bastion`, its list and menu, and `ssh -N bastion`, which
// opens no channel at all. A connection with live links (an OpenSSH
// ControlMaster) is governed by the links' own timers (link.watchLimits);
// once the last one ends, the connection's idle time counts from then, and
// a connection older than max_session is closed at once. Global requests
// (keepalive@openssh.com) are not activity. The limits are read at each
// deadline, so a reload reaches a live connection. The returned func stops
// it and waits for a check under way.
func (c *conn) watchLimits(start time.Time) (stop func()) {
	w := &limitTimer{}
	w.check = func() (time.Duration, bool) {
		if c.ctx.Err() != nil {
			return 0, false
		}
		wait, limit, msg := c.limitDue(start, time.Now())
		if limit != "" {
			c.endForLimit(limit, msg)
			return 0, false
		}
		return wait, true
	}
	w.start()
	c.idle.mu.Lock()
	c.idle.watch = w
	c.idle.mu.Unlock()
	return w.stop
}

// limitTimer runs check at each deadline it returns, on a timer rather
// than a goroutine of its own: an idle connection holds no stack for its
// watcher. check runs at most once at a time; it returns false to stop
// (a limit ended the connection). stop waits for a check under way, so that
// nothing check starts outlives its owner.
type limitTimer struct {
	check func() (next time.Duration, again bool)

	mu      sync.Mutex // protects t, stopped, woken, running.Add against Wait
	t       *time.Timer
	stopped bool
	// woken is set by wake: a check under way then checks again at once
	// rather than at the deadline it computed before the wake.
	woken   bool
	running sync.WaitGroup
	// checking serialises check: wake may fire the timer while a check
	// is running.
	checking sync.Mutex
}

func (w *limitTimer) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(0, w.fire)
}

func (w *limitTimer) fire() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.running.Add(1)
	w.mu.Unlock()
	defer w.running.Done()
	w.checking.Lock()
	defer w.checking.Unlock()
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.woken = false
	w.mu.Unlock()
	next, again := w.check()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !again:
		w.stopped = true
	case w.stopped:
	case w.woken:
		w.t.Reset(0)
	default:
		w.t.Reset(next)
	}
}

// wake runs check now (soon, on the timer's goroutine), or again right
// after the check under way.
func (w *limitTimer) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.woken = true
		w.t.Reset(0)
	}
}

// stop ends the watcher and waits for a check under way.
func (w *limitTimer) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.t != nil {
		w.t.Stop()
	}
	w.mu.Unlock()
	w.running.Wait()
}

// limitDue returns the limit the connection is over at now, with the
// message for the person, or how long until one could be due.
func (c *conn) limitDue(start, now time.Time) (wait time.Duration, limit, msg string) {
	lim := c.srv.currentRules().Limits
	wait = connLimitsRecheck
	c.idle.mu.Lock()
	busy, last := c.idle.jumping > 0, c.idle.last
	c.idle.mu.Unlock()
	if busy || len(c.liveLinks()) > 0 {
		return wait, "", ""
	}
	if lim.MaxSession > 0 {
		left := lim.MaxSession - now.Sub(start)
		if left <= 0 {
			return 0, "max_session", fmt.Sprintf("session reached the maximum length of %s; closing", lim.MaxSession)
		}
		wait = min(wait, left)
	}
	if lim.IdleTimeout > 0 {
		left := lim.IdleTimeout - now.Sub(last)
		if left <= 0 {
			return 0, "idle_timeout", fmt.Sprintf("no traffic for %s; closing the idle session", lim.IdleTimeout)
		}
		wait = min(wait, left)
	}
	return wait, "", ""
}

// endForLimit closes the connection for limit: audited and counted, and
// msg written on the stderr of each of its own sessions, given a moment to
// leave.
func (c *conn) endForLimit(limit, msg string) {
	c.limitHit(limit, msg)
	c.idle.mu.Lock()
	var told sync.WaitGroup
	for ch := range c.idle.own {
		told.Add(1)
		// A write blocks while the person's window is full; closing
		// the connection ends it. c.wg owns the goroutine.
		c.wg.Go(func() {
			defer told.Done()
			io.WriteString(ch.Stderr(), "\r\nbastion: "+msg+"\r\n")
		})
	}
	c.idle.mu.Unlock()
	done := make(chan struct{})
	c.wg.Go(func() {
		told.Wait()
		close(done)
	})
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	c.cancel(errors.New(msg))
}
