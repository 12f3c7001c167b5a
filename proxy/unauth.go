package proxy

import (
	"fmt"
	"sync"
	"time"
)

// Unauthenticated slots. A connection holds one from its accept until its
// outer authentication ends, and a ProxyJump channel holds one of its
// connection's address from its open until its inner login completes: both
// are work a person has not yet proved they may have, and both cost the
// bastion memory and a deadline.
//
// The slots are bounded in total (limits.max_unauthenticated) and per
// source address (perSourceUnauth). When every slot is taken, a newcomer
// from an address that holds fewer slots than the address holding the most
// is admitted in place of that address's oldest slot, which is shed: its
// connection or channel is closed, audited and counted. Among addresses
// holding the most, the one with the most recent handshakes that ended
// without a login is shed first, so that even with as many attacking
// addresses as slots, the attackers' go before a person's. Only a newcomer
// whose own address holds the most is refused. An attacker with many
// addresses therefore cannot keep a person on another address out: the
// person's address holds fewer slots, or as many with fewer handshakes
// that came to nothing. This is OpenSSH's MaxStartups and
// PerSourceMaxStartups with shedding by address in place of random early
// drop, which would refuse the person too, with a probability.
//
// Penalties, after OpenSSH's PerSourcePenalties: an address whose
// connections keep running into the handshake deadline gets a quarter of
// the per-source share until those timeouts decay (penaltyDecay per minute;
// the count is capped so that a penalty ends within a minute or so). A
// login from the address clears it, and its score.

const (
	// penaltyThreshold is how many recent handshake timeouts put an
	// address in the penalty box.
	penaltyThreshold = 10
	// penaltyDecay is how many of them (and of the handshakes without a
	// login that make the score) are forgiven per minute;
	// penaltyCap bounds the count so that a penalty ends within
	// (penaltyCap-penaltyThreshold)/penaltyDecay minutes of the last
	// one.
	penaltyDecay = 10
	penaltyCap   = 2 * penaltyThreshold
)

// perSourceUnauth is the share of max unauthenticated slots one source
// address may hold: a quarter of max, plus 8 so that small limits still
// leave an address a few.
func perSourceUnauth(max int) int { return min(max, 8+max/4) }

// penalizedShare is the share of an address in the penalty box.
func penalizedShare(share int) int { return max(1, share/4) }

// unauthTable is the set of unauthenticated slots, by source address. The
// zero value is ready to use.
type unauthTable struct {
	// score, if set, breaks ties between the addresses holding the most:
	// the higher score is shed first. It is called with mu held, and must
	// not call back into the table.
	score func(host string) float64

	// mu protects total, by and every slot's held. Lock order: mu, then
	// the lock of whatever score takes.
	mu    sync.Mutex
	total int
	// by holds each address's slots, oldest first; an address with no
	// slot has no entry, so by has at most total entries.
	by map[string][]*unauthSlot
}

// unauthSlot is one held slot.
type unauthSlot struct {
	t    *unauthTable
	host string
	// onShed closes what holds the slot when it is shed, giving the
	// reason; it is called without t.mu held.
	onShed func(reason string)
	held   bool
}

// hold takes a slot for host, or returns nil and the reason it is refused.
// max 0 means no limit; share is host's per-source share. onShed is called,
// once, if a newcomer from another address later takes the slot's place.
// A slot must be given back with release.
func (t *unauthTable) hold(host string, max, share int, onShed func(reason string)) (*unauthSlot, string) {
	var victim *unauthSlot
	t.mu.Lock()
	mine := len(t.by[host])
	switch {
	case max > 0 && mine >= share:
		t.mu.Unlock()
		return nil, fmt.Sprintf("this address already has %d connections in their handshake, its share", mine)
	case max > 0 && t.total >= max:
		top, most := t.topLocked()
		if mine >= most {
			t.mu.Unlock()
			return nil, fmt.Sprintf("the bastion is at its limit of %d connections in their handshake, and this address holds the most", max)
		}
		victim = t.by[top][0]
		t.removeLocked(victim)
	}
	s := &unauthSlot{t: t, host: host, onShed: onShed, held: true}
	if t.by == nil {
		t.by = map[string][]*unauthSlot{}
	}
	t.by[host] = append(t.by[host], s)
	t.total++
	t.mu.Unlock()
	if victim != nil {
		victim.onShed(fmt.Sprintf("shed to make room for another address: the bastion is at its limit of %d connections in their handshake, and this address holds the most", max))
	}
	return s, ""
}

// topLocked returns the address holding the most slots (of those, the
// one with the highest score), and how many.
func (t *unauthTable) topLocked() (string, int) {
	var top string
	most, topScore := 0, 0.0
	for h, slots := range t.by {
		switch n := len(slots); {
		case n < most:
			continue
		case n > most:
			top, most = h, n
			topScore = -1 // scored below when needed
		}
		if h == top || t.score == nil {
			continue
		}
		if topScore < 0 {
			topScore = t.score(top)
		}
		if sc := t.score(h); sc > topScore {
			top, topScore = h, sc
		}
	}
	return top, most
}

func (t *unauthTable) removeLocked(s *unauthSlot) {
	slots := t.by[s.host]
	for i, o := range slots {
		if o == s {
			slots = append(slots[:i:i], slots[i+1:]...)
			break
		}
	}
	if len(slots) == 0 {
		delete(t.by, s.host)
	} else {
		t.by[s.host] = slots
	}
	t.total--
	s.held = false
}

// release gives the slot back; releasing a shed or released slot, or nil,
// does nothing.
func (s *unauthSlot) release() {
	if s == nil {
		return
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.held {
		s.t.removeLocked(s)
	}
}

// count returns the number of slots held.
func (t *unauthTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// penaltyBox counts, per source address, recent handshakes that ended
// without a login: all of them (score, which breaks ties when shedding) and
// those that ran into the handshake deadline (which penalize).
type penaltyBox struct {
	now func() time.Time

	mu    sync.Mutex // protects addrs
	addrs map[string]*penalty
}

// penalty is one address's recent handshakes without a login, and those of
// them that timed out; both decay by penaltyDecay per minute.
type penalty struct {
	noLogin, timeouts failures
}

func newPenaltyBox(now func() time.Time) *penaltyBox {
	return &penaltyBox{now: now, addrs: map[string]*penalty{}}
}

// noLogin records a handshake that ended without a login, and whether it
// ran into its deadline.
func (b *penaltyBox) noLogin(host string, timedOut bool) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.addrs[host]
	if p == nil {
		if len(b.addrs) >= maxTrackedAddrs {
			b.pruneLocked(now)
		}
		p = &penalty{}
		b.addrs[host] = p
	}
	add := func(f *failures) {
		f.count = min(f.decayed(now, penaltyDecay)+1, penaltyCap)
		f.updated = now
	}
	add(&p.noLogin)
	if timedOut {
		add(&p.timeouts)
	}
}

// pruneLocked drops the addresses whose counts have decayed away, and if
// that is not enough, every address.
func (b *penaltyBox) pruneLocked(now time.Time) {
	for h, p := range b.addrs {
		if p.noLogin.decayed(now, penaltyDecay) < 1 && p.timeouts.decayed(now, penaltyDecay) < 1 {
			delete(b.addrs, h)
		}
	}
	if len(b.addrs) >= maxTrackedAddrs {
		clear(b.addrs)
	}
}

// succeeded clears host after a login.
func (b *penaltyBox) succeeded(host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.addrs, host)
}

// score returns host's recent handshakes without a login, decayed.
func (b *penaltyBox) score(host string) float64 {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.addrs[host]; p != nil {
		return p.noLogin.decayed(now, penaltyDecay)
	}
	return 0
}

// penalized reports whether host is in the penalty box: its handshakes
// have run into the deadline penaltyThreshold times, recently.
func (b *penaltyBox) penalized(host string) bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.addrs[host]
	return p != nil && p.timeouts.decayed(now, penaltyDecay) >= penaltyThreshold
}
