package proxy

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"bastion/auth"
	"bastion/fleet"
)

// TestFleetLimitsAcrossServers: two servers sharing one store count a
// user's links together; the end of one reaches the other's limit; with
// the store failing, the local count decides and the failure is reported.
func TestFleetLimitsAcrossServers(t *testing.T) {
	mem := fleet.NewMemory(time.Minute)
	var degraded atomic.Int32
	newServer := func(name string) *Server {
		s := &Server{Fleet: Fleet{Directory: mem, Counts: mem, Penalties: mem, Replica: name,
			Degraded: func(string, error) { degraded.Add(1) }}}
		s.init()
		s.SetRules(&Rules{Limits: Limits{MaxLinksPerUser: 2}})
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := newServer("a"), newServer("b")
	conn := func(s *Server) *conn { return &conn{srv: s, identity: auth.Identity{User: "dana"}} }
	ca1, cb1, cb2 := conn(a), conn(b), conn(b)
	if r := a.admit(ca1); r != nil {
		t.Fatalf("first link, on a: %v", r.msg)
	}
	if r := b.admit(cb1); r != nil {
		t.Fatalf("second link, on b: %v", r.msg)
	}
	r := b.admit(cb2)
	if r == nil || !strings.Contains(r.msg, "across the bastion's replicas") {
		t.Fatalf("third link, on b: %+v; want refused across replicas", r)
	}
	if n := b.localUserLinks("dana"); n != 1 {
		t.Errorf("b counts %d of dana's links after the refusal; want 1", n)
	}
	a.release(ca1)
	waitUntil(t, "a's release to reach b's limit", func() bool {
		if r := b.admit(cb2); r == nil {
			return true
		}
		return false
	})

	// The store fails: the local limit decides, and it is reported.
	failing := &failingStore{err: errors.New("connection refused")}
	c := &Server{Fleet: Fleet{Directory: failing, Counts: failing, Replica: "c", Degraded: func(string, error) { degraded.Add(1) }}}
	c.init()
	c.SetRules(&Rules{Limits: Limits{MaxLinksPerUser: 2}})
	defer c.Close()
	before := degraded.Load()
	if r := c.admit(conn(c)); r != nil {
		t.Fatalf("with the store failing: %v; want the local count to admit", r.msg)
	}
	if degraded.Load() == before {
		t.Error("the failed admission was not reported as degraded")
	}
}

// TestRegistryStoreDownOneCallPerRound: with the store failing, a round of
// the registry makes one call, not one per link.
func TestRegistryStoreDownOneCallPerRound(t *testing.T) {
	failing := &failingStore{err: errors.New("connection refused")}
	s := &Server{Fleet: Fleet{Directory: failing, Replica: "r"}}
	var unregs []func()
	for range 50 {
		s.live.mu.Lock()
		s.live.running = true // keep the goroutine out of it
		s.live.mu.Unlock()
		unregs = append(unregs, s.registerLink(testLink(s, "alice", "web-1")))
	}
	es := make([]*liveEntry, 0, 50)
	s.live.mu.Lock()
	for _, e := range s.live.byID {
		es = append(es, e)
	}
	s.live.mu.Unlock()
	s.syncDirectory(nil, es)
	if n := failing.calls.Load(); n != 1 {
		t.Errorf("one round against a failing store made %d calls; want 1", n)
	}
	for _, u := range unregs {
		u()
	}
}

// failingStore is a fleet store whose every call fails.
type failingStore struct {
	err   error
	calls atomic.Int32
}

func (f *failingStore) fail() error { f.calls.Add(1); return f.err }

func (f *failingStore) Put(context.Context, fleet.Link) error      { return f.fail() }
func (f *failingStore) Delete(context.Context, string) error       { return f.fail() }
func (f *failingStore) List(context.Context) ([]fleet.Link, error) { return nil, f.fail() }
func (f *failingStore) Lookup(context.Context, string) (fleet.Link, bool, error) {
	return fleet.Link{}, false, f.fail()
}
func (f *failingStore) CountUser(context.Context, string) (int, error)      { return 0, f.fail() }
func (f *failingStore) RequestKill(context.Context, fleet.Kill) error       { return f.fail() }
func (f *failingStore) Kills(context.Context, string) ([]fleet.Kill, error) { return nil, f.fail() }
func (f *failingStore) AdmitUser(context.Context, string, string, func() int, int) (int, bool, error) {
	return 0, false, f.fail()
}
func (f *failingStore) SetUser(context.Context, string, string, func() int) error { return f.fail() }
