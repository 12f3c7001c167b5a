package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"bastion/audit"
	"bastion/fleet"
)

// Fleet is what a server shares with the other replicas of the bastion:
// the registry of live links and the kill requests for them, the per-user
// link counts and the failed logins per address. The zero value keeps the
// links in memory, for this replica alone. With a Directory, the
// own-session commands (sessions, kill, watch) act on every replica's
// links (a watch of another replica's link through its Advertise address,
// peer.go); with Counts and Penalties, the limits hold across replicas
// (fleetlimits.go).
type Fleet struct {
	// Directory is the fleet-wide registry of live links. If nil, an
	// in-memory one of this server's links only.
	Directory fleet.Directory
	// Counts, if set, holds every replica's count of each user's links,
	// so that max_links_per_user holds across replicas.
	Counts fleet.UserCounts
	// Penalties, if set, shares the failed authentications per source
	// address between the replicas.
	Penalties fleet.Penalties
	// Replica names this replica in link ids and listings. If "", the
	// host name.
	Replica string
	// Advertise is where the other replicas reach this one for watch
	// ("" when it does not listen for them).
	Advertise string
	// Degraded, if non-nil, is told of every fleet store call that
	// failed, by operation ("put", "list", "count_user", …), for a metric
	// and readiness; the server logs them too (rate-limited).
	Degraded func(op string, err error)
}

// Timing of the live-link registry.
const (
	// linkHeartbeat is how often every live link is put in the
	// directory again, refreshing its idle time, byte counts and expiry.
	linkHeartbeat = 10 * time.Second
	// linkTTL is how long the in-memory directory keeps a link that is
	// not refreshed (a replica that died).
	linkTTL = 3 * linkHeartbeat
	// killPoll is how often a replica with live links asks for kill
	// requests: a kill ends a link within 2 s (a poll, and the second
	// the message is given to leave).
	killPoll = 500 * time.Millisecond
	// fleetCallTimeout bounds one call to the fleet store.
	fleetCallTimeout = 2 * time.Second
	// maxLinkIDLen bounds a link id; longer ones are refused unread.
	maxLinkIDLen = 64
	// maxReplicaLen bounds the replica part of a link id.
	maxReplicaLen = 40
	// maxPendingDeletes bounds the removals kept for a store that is
	// down.
	maxPendingDeletes = 10_000
)

// liveRegistry is a server's set of live links, keyed by their fleet-wide
// id, and the goroutine that keeps the directory in step with it. The
// goroutine runs only while there is something to do (a live link, or a
// removal to pass on), so an idle server has none. It holds one entry per
// live link, which the link limits bound; nothing an unauthenticated
// stranger does adds to it.
type liveRegistry struct {
	memOnce sync.Once
	mem     *fleet.Memory
	replica string

	mu      sync.Mutex // protects everything below
	byID    map[string]*liveEntry
	deletes []string
	running bool
	// warned is when the last fleet store failure was logged.
	warned time.Time
	// dirtyUsers are the users whose local link count changed since it
	// was last written to Fleet.Counts; countedUsers those with a count
	// there, refreshed every heartbeat (fleetlimits.go). Both hold users
	// with live connections, or whose last one just ended.
	dirtyUsers, countedUsers map[string]struct{}
}

// liveEntry is one registered link.
type liveEntry struct {
	id    string
	l     *link
	user  string
	start time.Time
	// in and out count payload bytes so far, person to instance and
	// back; pty is set once a pty session starts.
	in, out atomic.Int64
	pty     atomic.Bool
	// put is set once the directory holds the entry.
	put atomic.Bool
	// watch are the link's watchers (sessions_watch.go).
	watch watchers
}

// directory returns the fleet directory, or the in-memory one.
func (s *Server) directory() fleet.Directory {
	if s.Fleet.Directory != nil {
		return s.Fleet.Directory
	}
	s.live.memOnce.Do(func() { s.live.mem = fleet.NewMemory(linkTTL) })
	return s.live.mem
}

// replicaName returns this replica's name, cut to the characters and
// length of a link id.
func (s *Server) replicaName() string {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	if s.live.replica == "" {
		name := s.Fleet.Replica
		if name == "" {
			name, _ = os.Hostname()
		}
		name = strings.Map(func(r rune) rune {
			if linkIDRune(r) {
				return r
			}
			return -1
		}, name)
		if len(name) > maxReplicaLen {
			name = name[:maxReplicaLen]
		}
		if name == "" {
			name = "local"
		}
		s.live.replica = name
	}
	return s.live.replica
}

// linkIDRune reports whether r may appear in a link id.
func linkIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_'
}

// newLinkID returns an id unique fleet-wide: the replica's name and 8
// random bytes.
func (s *Server) newLinkID() string {
	var b [8]byte
	rand.Read(b[:])
	return s.replicaName() + "-" + hex.EncodeToString(b[:])
}

// registerLink adds l to the live links; the returned func removes it.
// The directory learns of both within killPoll, from the registry's
// goroutine, so that no fleet store call delays the link.
func (s *Server) registerLink(l *link) (unregister func()) {
	e := &liveEntry{id: s.newLinkID(), l: l, user: l.c.identity.User, start: l.start}
	l.live.Store(e)
	r := &s.live
	r.mu.Lock()
	if r.byID == nil {
		r.byID = map[string]*liveEntry{}
	}
	r.byID[e.id] = e
	s.startRegistryLocked()
	r.mu.Unlock()
	return func() {
		e.watch.end()
		r.mu.Lock()
		delete(r.byID, e.id)
		if e.put.Load() {
			r.deletes = append(r.deletes, e.id)
		}
		s.startRegistryLocked()
		r.mu.Unlock()
	}
}

// startRegistryLocked starts the registry's goroutine unless it runs.
func (s *Server) startRegistryLocked() {
	if s.live.running {
		return
	}
	s.live.running = true
	go s.runRegistry()
}

// runRegistry passes registrations and removals on to the directory,
// refreshes every link each heartbeat, and carries out the kill requests
// for this replica's links, until no link is left.
func (s *Server) runRegistry() {
	r := &s.live
	tick := time.NewTicker(killPoll)
	defer tick.Stop()
	var lastBeat time.Time
	for {
		r.mu.Lock()
		if len(r.byID) == 0 && len(r.deletes) == 0 && len(r.dirtyUsers) == 0 && len(r.countedUsers) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		dels := r.deletes
		r.deletes = nil
		beat := time.Since(lastBeat) >= linkHeartbeat
		var puts []*liveEntry
		for _, e := range r.byID {
			if beat || !e.put.Load() {
				puts = append(puts, e)
			}
		}
		r.mu.Unlock()
		if beat {
			lastBeat = time.Now()
		}
		s.syncDirectory(dels, puts)
		s.syncUserCounts(beat)
		s.pollKills()
		<-tick.C
	}
}

// syncDirectory removes dels from the directory and puts puts. At the
// first failure it stops, keeping what is left for the next round: with
// the store down, one call per round waits out its deadline, not one per
// link.
func (s *Server) syncDirectory(dels []string, puts []*liveEntry) {
	dir := s.directory()
	for i, id := range dels {
		ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
		err := dir.Delete(ctx, id)
		cancel()
		if err != nil {
			s.fleetFailed("delete", err)
			// Kept for the next round, but bounded: past the bound
			// the entries expire in the store by their TTL.
			s.live.mu.Lock()
			if len(s.live.deletes) < maxPendingDeletes {
				s.live.deletes = append(s.live.deletes, dels[i:]...)
			}
			s.live.mu.Unlock()
			return
		}
	}
	for _, e := range puts {
		ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
		err := dir.Put(ctx, s.fleetLink(e))
		cancel()
		if err != nil {
			// Put again next round (not yet put) or next heartbeat.
			s.fleetFailed("put", err)
			return
		}
		e.put.Store(true)
		// A link that ended while being put must not stay listed.
		s.live.mu.Lock()
		if _, live := s.live.byID[e.id]; !live {
			s.live.deletes = append(s.live.deletes, e.id)
		}
		s.live.mu.Unlock()
	}
}

// fleetLink returns e as the directory stores it, as of now.
func (s *Server) fleetLink(e *liveEntry) fleet.Link {
	return fleet.Link{ID: e.id, User: e.user, Target: e.l.ev.Target, OSUser: e.l.ev.OSUser,
		Replica: s.replicaName(), Advertise: s.Fleet.Advertise, Start: e.start,
		LastActive: time.Unix(0, e.l.last.Load()), BytesIn: e.in.Load(), BytesOut: e.out.Load(), PTY: e.pty.Load()}
}

// localLinks returns this replica's live links, as of now.
func (s *Server) localLinks() []fleet.Link {
	s.live.mu.Lock()
	es := make([]*liveEntry, 0, len(s.live.byID))
	for _, e := range s.live.byID {
		es = append(es, e)
	}
	s.live.mu.Unlock()
	out := make([]fleet.Link, 0, len(es))
	for _, e := range es {
		out = append(out, s.fleetLink(e))
	}
	return out
}

// localEntry returns this replica's live link id, or nil.
func (s *Server) localEntry(id string) *liveEntry {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return s.live.byID[id]
}

// pollKills carries out the kill requests for this replica's links: each
// link is ended with the request's reason on its sessions' stderr, all at
// once, each given up to a second for the message to leave.
func (s *Server) pollKills() {
	ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
	kills, err := s.directory().Kills(ctx, s.replicaName())
	cancel()
	if err != nil {
		s.fleetFailed("kills", err)
		return
	}
	var wg sync.WaitGroup
	for _, k := range kills {
		if e := s.localEntry(k.LinkID); e != nil {
			wg.Go(func() { s.endKilled(e, k) })
		}
	}
	wg.Wait()
}

// endKilled ends the link of e for the kill request k, audited on the
// link.
func (s *Server) endKilled(e *liveEntry, k fleet.Kill) {
	msg := printable(k.Reason)
	if msg == "" {
		msg = "this session was ended by " + printable(k.By)
	}
	e.l.audit(audit.Event{Type: audit.TypeSessionKilled, LinkID: e.id, By: audit.Clip(k.By), Reason: audit.Clip(msg)})
	e.l.endWith(msg, errors.New(msg))
}

// fleetFailed reports a failed fleet store call: to Fleet.Degraded, and
// to the log at most every 10 s.
func (s *Server) fleetFailed(op string, err error) {
	if f := s.Fleet.Degraded; f != nil {
		f(op, err)
	}
	s.live.mu.Lock()
	quiet := time.Since(s.live.warned) >= 10*time.Second
	if quiet {
		s.live.warned = time.Now()
	}
	s.live.mu.Unlock()
	if quiet {
		s.log().Warn("fleet_store_failed", zap.String("op", op), clippedError(err))
	}
}

// moved counts n payload bytes of the link in direction dir.
func (l *link) moved(dir direction, n int) {
	e := l.live.Load()
	if e == nil {
		return
	}
	if dir == fromPerson {
		e.in.Add(int64(n))
	} else {
		e.out.Add(int64(n))
	}
}

// ptyStarted notes that the link carries a pty session, which can be
// watched.
func (l *link) ptyStarted() {
	if e := l.live.Load(); e != nil {
		e.pty.Store(true)
	}
}
