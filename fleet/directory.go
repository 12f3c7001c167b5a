// Package fleet holds the state the replicas of one bastion share: the
// EC2 host keys they trust, the links they hold, the kill requests for
// those links, and the per-user and per-address counts behind the limits.
//
// The interfaces here are what the proxy and the host-key store use. A
// single replica satisfies them in memory (and with today's files); the
// DynamoDB store satisfies them fleet-wide.
package fleet

import (
	"context"
	"time"
)

// Link is one live link as the fleet sees it: enough to list it, to route
// a kill or watch request to the replica that holds it, and to count a
// user's links across replicas.
type Link struct {
	// ID is the link's id, unique fleet-wide (the replica name is part of
	// it, so two replicas never mint the same one).
	ID string
	// User is the bastion user, Target the target name, OSUser the login
	// on the instance.
	User, Target, OSUser string
	// Replica names the replica holding the link; Advertise is where its
	// peers reach it for watch ("" when it does not listen for peers).
	Replica, Advertise string
	// Start is when the link was established, LastActive when bytes last
	// moved.
	Start, LastActive time.Time
	// BytesIn counts bytes from the person to the instance, BytesOut the
	// other way.
	BytesIn, BytesOut int64
	// PTY says whether the link carries a pty session (only those can be
	// watched).
	PTY bool
}

// Kill is a request to end a link, left for the replica that holds it.
type Kill struct {
	// LinkID is the link to end.
	LinkID string
	// By is the bastion user who asked, Reason what the person is told.
	By, Reason string
	// At is when it was asked.
	At time.Time
}

// Directory is the registry of live links. Put registers a link or
// refreshes it (a replica calls it at least every heartbeat, so entries of
// a replica that died expire); Delete removes it when it ends.
type Directory interface {
	Put(ctx context.Context, l Link) error
	Delete(ctx context.Context, id string) error
	// List returns every live link of the fleet.
	List(ctx context.Context) ([]Link, error)
	// Lookup returns the live link id, if there is one.
	Lookup(ctx context.Context, id string) (Link, bool, error)
	// CountUser returns how many live links user holds fleet-wide.
	CountUser(ctx context.Context, user string) (int, error)
	// RequestKill leaves a kill request for the link's replica.
	RequestKill(ctx context.Context, k Kill) error
	// Kills returns, and consumes, the kill requests for links held by
	// replica.
	Kills(ctx context.Context, replica string) ([]Kill, error)
}

// UserCounts are each replica's count of each user's links, so that a
// per-user limit holds across replicas. local is called for this
// replica's count as of each attempt (a write that loses to another
// replica's is tried again).
type UserCounts interface {
	// AdmitUser admits one more link of user on replica if the user's
	// links on every replica, with local() on this one, are at most max,
	// and stores local(); it returns the fleet-wide total.
	AdmitUser(ctx context.Context, user, replica string, local func() int, max int) (total int, ok bool, err error)
	// SetUser stores local() as replica's count of user's links.
	SetUser(ctx context.Context, user, replica string, local func() int) error
}

// Penalties are the failed-authentication counts per source address,
// shared so that an attacker moving between replicas keeps its penalty.
type Penalties interface {
	// Fail records one failed authentication from addr at now and returns
	// how many addr has in the window ending at now.
	Fail(ctx context.Context, addr string, now time.Time, window time.Duration) (int, error)
	// Count returns addr's failures in the window ending at now.
	Count(ctx context.Context, addr string, now time.Time, window time.Duration) (int, error)
}

// HostKeys is the fleet's memory of the host keys instances presented:
// the first key learned for an instance wins, by conditional write, and
// every replica refuses any other.
type HostKeys interface {
	// Get returns the authorized_keys lines stored for id, or none.
	Get(ctx context.Context, id string) ([]string, error)
	// Learn stores keys for id if none are stored yet and reports whether
	// it did; when another replica won the race, it returns false and the
	// keys stored.
	Learn(ctx context.Context, id string, keys []string) (learned bool, stored []string, err error)
}
