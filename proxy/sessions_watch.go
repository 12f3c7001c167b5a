package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
)

// cmdWatch is the own-session command that streams a live pty session.
const cmdWatch = "watch"

// Bounds of watching.
const (
	// maxWatchers bounds the watchers of one link.
	maxWatchers = 4
	// watchBuffer bounds the output bytes queued for one watcher; past
	// it, output is dropped for that watcher, so that a slow watcher
	// never slows the watched session.
	watchBuffer = 256 << 10
	// watchQueue bounds the chunks queued for one watcher.
	watchQueue = 256
)

// watchRefusal is what a person is told for a watch of a link that does
// not exist and for one they may not watch alike, so that ids cannot be
// probed.
const watchRefusal = "no such session of yours to watch"

// watchers are the watchers of one link.
type watchers struct {
	mu    sync.Mutex // protects set and ended
	set   map[*watcher]struct{}
	ended bool
}

// watcher is one `ssh bastion watch` of a link.
type watcher struct {
	out chan []byte
	// queued is the bytes in out; dropped counts what was dropped.
	queued, dropped atomic.Int64
	// done is closed when the link ends.
	done chan struct{}
}

// add adds a watcher, unless the link has ended or has maxWatchers.
func (ws *watchers) add() (*watcher, bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.ended || len(ws.set) >= maxWatchers {
		return nil, false
	}
	if ws.set == nil {
		ws.set = map[*watcher]struct{}{}
	}
	w := &watcher{out: make(chan []byte, watchQueue), done: make(chan struct{})}
	ws.set[w] = struct{}{}
	return w, true
}

// remove removes w.
func (ws *watchers) remove(w *watcher) {
	ws.mu.Lock()
	delete(ws.set, w)
	ws.mu.Unlock()
}

// send queues a copy of p for every watcher with room; it never blocks.
func (ws *watchers) send(p []byte) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.set {
		if w.queued.Load()+int64(len(p)) > watchBuffer {
			w.dropped.Add(int64(len(p)))
			continue
		}
		select {
		case w.out <- append([]byte(nil), p...):
			w.queued.Add(int64(len(p)))
		default:
			w.dropped.Add(int64(len(p)))
		}
	}
}

// end tells every watcher that the link ended; no watcher is added after.
func (ws *watchers) end() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.ended = true
	for w := range ws.set {
		close(w.done)
	}
	clear(ws.set)
}

// watchedOutput passes p, output of one of the link's pty sessions, to its
// watchers.
func (l *link) watchedOutput(p []byte) {
	if e := l.live.Load(); e != nil {
		e.watch.send(p)
	}
}

// watchCommand serves `ssh bastion watch ID`: it streams the output of
// the link's pty sessions, read-only, until the link ends, or the watcher
// types Ctrl-C or Ctrl-D or closes their input. A link on another replica
// is streamed by that replica (peer.go).
func (c *conn) watchCommand(ch ssh.Channel, arg, nl string) int {
	id := strings.TrimSpace(arg)
	refuse := func(reason string) int {
		c.audit(audit.Event{Type: audit.TypeWatchRefused, LinkID: audit.Clip(id), By: audit.Clip(c.identity.User), Reason: audit.Clip(reason)})
		fmt.Fprintf(ch.Stderr(), "bastion: %s%s", reason, nl)
		return 1
	}
	l, ok := c.visibleLink(id)
	if !ok {
		return refuse(watchRefusal)
	}
	if !l.PTY {
		return refuse("that session has no terminal to watch")
	}
	who := "user " + c.identity.User
	if l.User != c.identity.User {
		who = "session_control user " + c.identity.User
	}
	e := c.srv.localEntry(l.ID)
	if e == nil {
		return c.watchRemote(ch, l, who, nl, refuse)
	}
	if why := c.srv.streamWatch(c.ctx, ch, e, c.identity.User, who, nl, c.audit); why != "" {
		return refuse(why)
	}
	return 0
}

// streamWatch streams e's pty output to ch for the watcher by, telling
// the watched person that who is watching, until the link ends, ctx is
// done, or the watcher types Ctrl-C or Ctrl-D or closes their input. It
// audits the watch with emit, and returns why it could not start ("" once
// it has streamed).
func (s *Server) streamWatch(ctx context.Context, ch ssh.Channel, e *liveEntry, by, who, nl string, emit func(audit.Event) error) string {
	w, ok := e.watch.add()
	if !ok {
		return fmt.Sprintf("that session has %d watchers already", maxWatchers)
	}
	defer e.watch.remove(w)
	start := time.Now()
	emit(audit.Event{Type: audit.TypeWatchStart, LinkID: e.id, By: audit.Clip(by)})
	e.l.say(who+" is watching this session (read-only)", 0)

	// The watcher's input is read and ignored, but for Ctrl-C, Ctrl-D
	// and its end; the reader ends when the channel closes.
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		buf := make([]byte, 256)
		for {
			n, err := ch.Read(buf)
			if strings.ContainsAny(string(buf[:n]), "\x03\x04") || err != nil {
				return
			}
		}
	}()
	var sent int64
	why := "watch ended"
	loop := true
	for loop {
		select {
		case p := <-w.out:
			w.queued.Add(-int64(len(p)))
			if _, err := ch.Write(p); err != nil {
				loop = false
			}
			sent += int64(len(p))
		case <-w.done:
			why = "the watched session ended"
			loop = false
		case <-stop:
			loop = false
		case <-ctx.Done():
			loop = false
		}
	}
	if d := w.dropped.Load(); d > 0 {
		why += fmt.Sprintf(" (%d bytes were dropped while you lagged)", d)
	}
	fmt.Fprintf(ch.Stderr(), "%sbastion: %s%s", nl, why, nl)
	emit(audit.Event{Type: audit.TypeWatchEnd, LinkID: e.id, By: audit.Clip(by), BytesDown: sent, DurationMS: time.Since(start).Milliseconds()})
	return ""
}
