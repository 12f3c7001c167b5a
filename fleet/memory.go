package fleet

import (
	"context"
	"sync"
	"time"
)

// Bounds of the in-memory store: it holds only what the replicas sharing it
// put there (live links, kill requests for them, failure counts), but
// nothing in it may grow without bound.
const (
	// MaxMemoryLinks bounds the links the store holds; Put of a new link
	// beyond it fails.
	MaxMemoryLinks = 100_000
	// MaxMemoryKills bounds the kill requests waiting for one replica.
	MaxMemoryKills = 1024
	// MaxMemoryAddrs bounds the addresses with failure counts; past it,
	// the addresses with the oldest failures are dropped.
	MaxMemoryAddrs = 100_000
)

// errFull is returned when the store is at one of its bounds.
type errFull string

func (e errFull) Error() string { return "fleet memory store: " + string(e) }

// Memory is the fleet store of one process: a Directory and Penalties in
// memory, used when no fleet store is configured. Several servers in one
// process (tests) may share one to act as replicas. Entries not Put again
// within TTL expire, as a replica that died leaves its links behind.
type Memory struct {
	// TTL is how long a link stays listed after its last Put; zero means
	// forever.
	TTL time.Duration
	now func() time.Time

	mu    sync.Mutex // protects everything below
	links map[string]memLink
	kills map[string][]Kill // by replica
	fails map[string][]time.Time
	users map[string]map[string]memCount // by user, then replica
}

type memCount struct {
	n   int
	put time.Time
}

type memLink struct {
	Link
	put time.Time
}

// NewMemory returns an empty in-memory store whose links expire ttl after
// their last Put.
func NewMemory(ttl time.Duration) *Memory {
	return &Memory{TTL: ttl, now: time.Now, links: map[string]memLink{}, kills: map[string][]Kill{}, fails: map[string][]time.Time{}, users: map[string]map[string]memCount{}}
}

var (
	_ Directory  = (*Memory)(nil)
	_ Penalties  = (*Memory)(nil)
	_ UserCounts = (*Memory)(nil)
)

// AdmitUser admits one more link of user on replica if the user's counts
// on every replica, with local() on this one, are at most max.
func (m *Memory) AdmitUser(ctx context.Context, user, replica string, local func() int, max int) (int, bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := local()
	total := n
	for r, c := range m.users[user] {
		if r != replica && (m.TTL <= 0 || now.Sub(c.put) <= m.TTL) {
			total += c.n
		}
	}
	if max > 0 && total > max {
		return total, false, nil
	}
	m.setUserLocked(user, replica, n, now)
	return total, true, nil
}

// SetUser stores local() as replica's count of user's links.
func (m *Memory) SetUser(ctx context.Context, user, replica string, local func() int) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setUserLocked(user, replica, local(), now)
	return nil
}

func (m *Memory) setUserLocked(user, replica string, n int, now time.Time) {
	if n <= 0 {
		delete(m.users[user], replica)
		if len(m.users[user]) == 0 {
			delete(m.users, user)
		}
		return
	}
	if m.users[user] == nil {
		if len(m.users) >= MaxMemoryLinks {
			return // more users than links: counts of dead replicas; the local limit still holds
		}
		m.users[user] = map[string]memCount{}
	}
	m.users[user][replica] = memCount{n: n, put: now}
}

// expiredLocked drops the links whose TTL has passed.
func (m *Memory) expiredLocked(now time.Time) {
	if m.TTL <= 0 {
		return
	}
	for id, l := range m.links {
		if now.Sub(l.put) > m.TTL {
			delete(m.links, id)
		}
	}
}

// Put registers or refreshes l.
func (m *Memory) Put(ctx context.Context, l Link) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.links[l.ID]; !ok && len(m.links) >= MaxMemoryLinks {
		m.expiredLocked(now)
		if len(m.links) >= MaxMemoryLinks {
			return errFull("too many links")
		}
	}
	m.links[l.ID] = memLink{Link: l, put: now}
	return nil
}

// Delete removes the link id, and any kill request for it.
func (m *Memory) Delete(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.links[id]; ok {
		delete(m.links, id)
		ks := m.kills[l.Replica][:0]
		for _, k := range m.kills[l.Replica] {
			if k.LinkID != id {
				ks = append(ks, k)
			}
		}
		if len(ks) == 0 {
			delete(m.kills, l.Replica)
		} else {
			m.kills[l.Replica] = ks
		}
	}
	return nil
}

// List returns every live link.
func (m *Memory) List(ctx context.Context) ([]Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expiredLocked(m.now())
	out := make([]Link, 0, len(m.links))
	for _, l := range m.links {
		out = append(out, l.Link)
	}
	return out, nil
}

// Lookup returns the live link id, or false.
func (m *Memory) Lookup(ctx context.Context, id string) (Link, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expiredLocked(m.now())
	l, ok := m.links[id]
	return l.Link, ok, nil
}

// CountUser returns how many live links user holds.
func (m *Memory) CountUser(ctx context.Context, user string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expiredLocked(m.now())
	n := 0
	for _, l := range m.links {
		if l.User == user {
			n++
		}
	}
	return n, nil
}

// RequestKill leaves k for the replica holding its link. A request for a
// link the store does not hold is dropped: it could never be consumed.
func (m *Memory) RequestKill(ctx context.Context, k Kill) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[k.LinkID]
	if !ok {
		return nil
	}
	if len(m.kills[l.Replica]) >= MaxMemoryKills {
		return errFull("too many kill requests waiting")
	}
	m.kills[l.Replica] = append(m.kills[l.Replica], k)
	return nil
}

// Kills returns and consumes the kill requests for replica's links.
func (m *Memory) Kills(ctx context.Context, replica string) ([]Kill, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := m.kills[replica]
	delete(m.kills, replica)
	return ks, nil
}

// Fail records a failure from addr and returns addr's count in the window.
func (m *Memory) Fail(ctx context.Context, addr string, now time.Time, window time.Duration) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := recent(m.fails[addr], now, window)
	if len(ts) == 0 && len(m.fails) >= MaxMemoryAddrs {
		m.pruneLocked(now, window)
	}
	// One address keeps at most a bounded number of timestamps: past
	// it the oldest go, which only lowers its count.
	if len(ts) >= maxFailStamps {
		ts = ts[1:]
	}
	m.fails[addr] = append(ts, now)
	return len(m.fails[addr]), nil
}

// maxFailStamps bounds the failures kept per address.
const maxFailStamps = 1024

// Count returns addr's failures in the window ending at now.
func (m *Memory) Count(ctx context.Context, addr string, now time.Time, window time.Duration) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := recent(m.fails[addr], now, window)
	if len(ts) == 0 {
		delete(m.fails, addr)
		return 0, nil
	}
	m.fails[addr] = ts
	return len(ts), nil
}

// pruneLocked drops addresses with no failure in the window, and if that
// is not enough, every address.
func (m *Memory) pruneLocked(now time.Time, window time.Duration) {
	for a, ts := range m.fails {
		if len(recent(ts, now, window)) == 0 {
			delete(m.fails, a)
		}
	}
	if len(m.fails) >= MaxMemoryAddrs {
		clear(m.fails)
	}
}

// recent returns the times of ts within the window ending at now.
func recent(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > window {
		i++
	}
	return ts[i:]
}
