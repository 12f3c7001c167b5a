package tofu

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/fleet"
	"bastion/upstream"
)

// DefaultFleetTimeout bounds the fleet store's part of one host key check.
const DefaultFleetTimeout = 3 * time.Second

// Fleet is trust on first use shared by the replicas of a bastion: the
// first key any replica learns for an instance wins, by the fleet store's
// conditional write, and every replica refuses any other, also after a
// restart. The local Store is the cache of what the fleet confirmed: while
// the fleet store is unreachable, a key confirmed before (in the local
// file) is still accepted and any other key is refused.
type Fleet struct {
	// Local is this replica's known_hosts store (TrustOnFirstUse).
	Local *Store
	// Remote is the fleet store.
	Remote fleet.HostKeys
	// Timeout bounds the fleet store's calls for one check; if zero,
	// DefaultFleetTimeout.
	Timeout time.Duration
	// OnLearn, if set, is told when this replica learned a key fleet-wide.
	OnLearn func(id string, key ssh.PublicKey)
	// OnDegraded, if set, is told of every fleet store failure.
	OnDegraded func(err error)

	mu sync.Mutex
	// distrusted holds the ids whose local key disagrees with the fleet's:
	// the local cache must not vouch for them while the fleet is away.
	distrusted map[string]bool
}

// HostKeyAlgorithms returns the algorithms to offer for id, from the local
// cache.
func (f *Fleet) HostKeyAlgorithms(id string) []string { return f.Local.HostKeyAlgorithms(id) }

// Callback returns the host key callback for instance id.
func (f *Fleet) Callback(id string) ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		timeout := f.Timeout
		if timeout <= 0 {
			timeout = DefaultFleetTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
		stored, err := f.Remote.Get(ctx, id)
		if err == nil && len(stored) == 0 {
			var learned bool
			learned, stored, err = f.Remote.Learn(ctx, id, []string{line})
			if err == nil && learned {
				f.cache(id, key)
				if f.OnLearn != nil {
					f.OnLearn(id, key)
				}
				return nil
			}
		}
		if err != nil {
			return f.offline(id, key, err)
		}
		want := parseLines(stored)
		for _, k := range want {
			if string(k.Marshal()) == string(key.Marshal()) {
				f.cache(id, key)
				return nil
			}
		}
		return &upstream.Error{
			Public: "upstream host key differs from the one the bastion's fleet recorded for " + id,
			Err:    &upstream.HostKeyMismatchError{Target: id, Got: key, Want: want},
		}
	}
}

// offline decides without the fleet store: only a key this replica has
// confirmed before passes.
func (f *Fleet) offline(id string, key ssh.PublicKey, cause error) error {
	if f.OnDegraded != nil {
		f.OnDegraded(cause)
	}
	f.mu.Lock()
	distrusted := f.distrusted[id]
	f.mu.Unlock()
	f.Local.mu.Lock()
	known := !f.Local.conflicts[id] && f.Local.has(id, key)
	f.Local.mu.Unlock()
	if known && !distrusted {
		return nil
	}
	return &upstream.Error{
		Public: "the fleet store is unreachable and this host key was not confirmed before; refusing",
		Err:    fmt.Errorf("checking the host key of %s without the fleet store: %w", id, cause),
	}
}

// cache records a key the fleet confirmed in the local store, unless the
// local store already has another one for id, which is then distrusted.
func (f *Fleet) cache(id string, key ssh.PublicKey) {
	f.Local.mu.Lock()
	_, has := f.Local.keys[id]
	agrees := has && f.Local.has(id, key)
	if !has {
		// A failed write (a full disk) loses only the offline cache:
		// while the fleet store answers, it decides.
		_, _ = f.Local.learn(id, key)
	}
	f.Local.mu.Unlock()
	if has && !agrees {
		f.mu.Lock()
		if f.distrusted == nil {
			f.distrusted = map[string]bool{}
		}
		f.distrusted[id] = true
		f.mu.Unlock()
	}
}

// parseLines parses authorized_keys lines, skipping malformed ones.
func parseLines(lines []string) []ssh.PublicKey {
	var out []ssh.PublicKey
	for _, l := range lines {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l)); err == nil {
			out = append(out, k)
		}
	}
	return out
}
