package proxy

import (
	"context"
	"fmt"
	"time"
)

// Limits across replicas. With a fleet store (Fleet.Counts), a link
// admitted under the local max_links_per_user is also admitted against
// the user's links on every replica, by a versioned write of this
// replica's count: of two replicas admitting the same user at once, one
// reads the other's count. With the store unreachable, the local count
// decides, and the failure is logged and reported as degraded.
//
// Failed authentications (Fleet.Penalties) are written to the store as
// they happen, in the background; the count the store answers (every
// replica's failures from that address in the last minute) raises the
// local one, so that an address moving to another replica is throttled
// there from its first failure on.

// maxPenaltyWrites bounds the failed-authentication writes in flight; past
// it, failures are counted locally only. maxCountWrites bounds the
// per-user count writes in flight; past it, they wait for the registry's
// goroutine.
const (
	maxPenaltyWrites = 32
	maxCountWrites   = 32
)

// admitFleet admits c's new link against the user's links on every
// replica, after the local limit admitted it; false undoes nothing (the
// caller does) and comes with the refusal.
func (s *Server) admitFleet(c *conn, max int) *refusal {
	counts := s.Fleet.Counts
	if counts == nil || max <= 0 {
		return nil
	}
	user := c.identity.User
	ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
	defer cancel()
	total, ok, err := counts.AdmitUser(ctx, user, s.replicaName(), func() int { return s.localUserLinks(user) }, max)
	if err != nil {
		s.fleetFailed("admit_user", err)
		return nil
	}
	s.userCountWritten(user)
	if !ok {
		return &refusal{"max_links_per_user", fmt.Sprintf("%s already has %d links open across the bastion's replicas, the most allowed is %d", user, total-1, max)}
	}
	return nil
}

// localUserLinks returns user's links on this replica, as the local limit
// counts them.
func (s *Server) localUserLinks(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[user]
}

// userChanged writes user's local count to the fleet store at once, in
// the background, so that a link's end reaches the other replicas' limits
// within a round trip. With too many writes in flight, it is left for the
// registry's goroutine (within killPoll).
func (s *Server) userChanged(user string) {
	counts := s.Fleet.Counts
	if counts == nil {
		return
	}
	select {
	case s.countWrites <- struct{}{}:
		s.bg.Go(func() {
			defer func() { <-s.countWrites }()
			ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
			defer cancel()
			if err := counts.SetUser(ctx, user, s.replicaName(), func() int { return s.localUserLinks(user) }); err != nil {
				s.fleetFailed("set_user", err)
				s.markUserDirty(user)
			}
		})
	default:
		s.markUserDirty(user)
	}
}

// markUserDirty leaves user's count for the registry's goroutine to write.
func (s *Server) markUserDirty(user string) {
	r := &s.live
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dirtyUsers == nil {
		r.dirtyUsers = map[string]struct{}{}
	}
	r.dirtyUsers[user] = struct{}{}
	s.startRegistryLocked()
}

// userCountWritten notes that user's count was just written.
func (s *Server) userCountWritten(user string) {
	r := &s.live
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.countedUsers == nil {
		r.countedUsers = map[string]struct{}{}
	}
	r.countedUsers[user] = struct{}{}
	s.startRegistryLocked()
}

// syncUserCounts writes the counts of the users in dirty, and on a
// heartbeat of every user with a count in the store, so that they do not
// expire while the links are live. A user whose count went to zero is
// written once more (removing it) and then forgotten.
func (s *Server) syncUserCounts(beat bool) {
	counts := s.Fleet.Counts
	if counts == nil {
		return
	}
	r := &s.live
	r.mu.Lock()
	var users []string
	for u := range r.dirtyUsers {
		users = append(users, u)
	}
	if beat {
		for u := range r.countedUsers {
			if _, dirty := r.dirtyUsers[u]; !dirty {
				users = append(users, u)
			}
		}
	}
	if r.dirtyUsers == nil {
		r.dirtyUsers = map[string]struct{}{}
	}
	clear(r.dirtyUsers)
	r.mu.Unlock()
	for i, u := range users {
		ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
		err := counts.SetUser(ctx, u, s.replicaName(), func() int { return s.localUserLinks(u) })
		cancel()
		if err != nil {
			// The store is down: the rest wait for the next round.
			s.fleetFailed("set_user", err)
			r.mu.Lock()
			for _, u := range users[i:] {
				r.dirtyUsers[u] = struct{}{}
			}
			r.mu.Unlock()
			return
		}
		live := s.localUserLinks(u) > 0
		r.mu.Lock()
		if live {
			if r.countedUsers == nil {
				r.countedUsers = map[string]struct{}{}
			}
			r.countedUsers[u] = struct{}{}
		} else {
			delete(r.countedUsers, u)
		}
		r.mu.Unlock()
	}
}

// failedAuth records a failed authentication from host: locally at once,
// and in the fleet store in the background, raising the local count to
// the fleet's.
func (s *Server) failedAuth(host string, perMinute int) {
	s.failures.fail(host, perMinute)
	pen := s.Fleet.Penalties
	if pen == nil || perMinute <= 0 {
		return
	}
	select {
	case s.penaltyWrites <- struct{}{}:
	default:
		return // the local count still holds
	}
	s.bg.Go(func() {
		defer func() { <-s.penaltyWrites }()
		ctx, cancel := context.WithTimeout(context.Background(), fleetCallTimeout)
		defer cancel()
		n, err := pen.Fail(ctx, host, time.Now(), failureWindow)
		if err != nil {
			s.fleetFailed("fail", err)
			return
		}
		s.failures.raise(host, n)
	})
}
