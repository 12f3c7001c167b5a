package fleet_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"bastion/fleet"
	"bastion/internal/testkit"
)

// initStore starts dynalite and returns two replicas' stores of one table.
func initStore(t *testing.T) (a, b *fleet.Store) {
	t.Helper()
	d := testkit.StartDynalite(t)
	a, b = newStore(t, d, "a"), newStore(t, d, "b")
	if _, err := a.Init(t.Context(), 30*time.Second); err != nil && !errors.Is(err, fleet.ErrNoTTL) {
		t.Fatal(err)
	}
	return a, b
}

// TestStoreLinksAndKills: a link one replica puts is listed by another,
// with its fields; a kill requested from b reaches a's Kills exactly once;
// a deleted link and an expired one are no longer listed, and a kill for
// a link that is not live is dropped.
func TestStoreLinksAndKills(t *testing.T) {
	a, b := initStore(t)
	start := time.UnixMilli(time.Now().UnixMilli())
	l := fleet.Link{ID: "a-0123", User: "dana", Target: "web-1", OSUser: "ubuntu", Replica: "a", Advertise: "127.0.0.1:2223",
		Start: start, LastActive: start, BytesIn: 5, BytesOut: 7, PTY: true}
	if err := a.Put(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(t.Context(), fleet.Link{ID: "a-0456", User: "erin", Replica: "a", Start: start, LastActive: start}); err != nil {
		t.Fatal(err)
	}
	got, err := b.List(t.Context())
	if err != nil || len(got) != 2 {
		t.Fatalf("b's List: %v, %v; want a's two links", got, err)
	}
	i := slices.IndexFunc(got, func(g fleet.Link) bool { return g.ID == l.ID })
	if i < 0 || got[i] != l {
		t.Errorf("b lists %+v; want %+v", got, l)
	}
	if got, ok, err := b.Lookup(t.Context(), l.ID); err != nil || !ok || got != l {
		t.Errorf("b's Lookup(%s) = %+v, %v, %v; want %+v", l.ID, got, ok, err, l)
	}
	if _, ok, err := b.Lookup(t.Context(), "a-none"); err != nil || ok {
		t.Errorf("Lookup of an unknown link: %v, %v; want none", ok, err)
	}
	if n, err := b.CountUser(t.Context(), "dana"); err != nil || n != 1 {
		t.Errorf("CountUser(dana) = %d, %v; want 1", n, err)
	}

	if err := b.RequestKill(t.Context(), fleet.Kill{LinkID: l.ID, By: "bob", Reason: "ended by bob", At: start}); err != nil {
		t.Fatal(err)
	}
	if err := b.RequestKill(t.Context(), fleet.Kill{LinkID: "a-gone", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	if ks, err := b.Kills(t.Context(), "b"); err != nil || len(ks) != 0 {
		t.Errorf("b's own Kills: %v, %v; want none", ks, err)
	}
	ks, err := a.Kills(t.Context(), "a")
	if err != nil || len(ks) != 1 || ks[0].LinkID != l.ID || ks[0].By != "bob" || ks[0].Reason != "ended by bob" {
		t.Fatalf("a's Kills: %+v, %v; want bob's one request for %s", ks, err, l.ID)
	}
	if ks, err := a.Kills(t.Context(), "a"); err != nil || len(ks) != 0 {
		t.Errorf("a's Kills again: %v, %v; want them consumed", ks, err)
	}

	if err := a.Delete(t.Context(), l.ID); err != nil {
		t.Fatal(err)
	}
	b.Now = func() time.Time { return time.Now().Add(fleet.DefaultLinkTTL + time.Second) }
	if got, err := b.List(t.Context()); err != nil || len(got) != 0 {
		t.Errorf("List after a delete and past the TTL: %v, %v; want none", got, err)
	}
	for _, id := range []string{"", strings.Repeat("x", 100000)} {
		if err := a.Put(t.Context(), fleet.Link{ID: id, Replica: "a"}); err == nil {
			t.Errorf("Put of a link id of %d bytes succeeded", len(id))
		}
	}
}

// TestStoreAdmitUserAcrossReplicas races 20 admissions of one user, ten on
// each of two replicas, against a limit of 5: exactly 5 are admitted, and
// after one ends the next is admitted on the other replica.
func TestStoreAdmitUserAcrossReplicas(t *testing.T) {
	a, b := initStore(t)
	var local [2]atomic.Int32
	var admitted atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		s, n := a, &local[0]
		if i%2 == 1 {
			s, n = b, &local[1]
		}
		wg.Go(func() {
			n.Add(1)
			_, ok, err := s.AdmitUser(t.Context(), "dana", s.Replica, func() int { return int(n.Load()) }, 5)
			if err != nil {
				t.Errorf("admission %d: %v", i, err)
			}
			if ok {
				admitted.Add(1)
			} else {
				n.Add(-1)
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 5 {
		t.Fatalf("%d of 20 racing admissions passed a limit of 5", admitted.Load())
	}
	// Counts settle to what each replica holds (a refused admission's
	// decrement is written by its replica's next SetUser).
	for i, s := range []*fleet.Store{a, b} {
		if err := s.SetUser(t.Context(), "dana", s.Replica, func() int { return int(local[i].Load()) }); err != nil {
			t.Fatal(err)
		}
	}
	one := func() int { return int(local[0].Load()) + 1 }
	if total, ok, err := a.AdmitUser(t.Context(), "dana", "a", one, 5); ok || err != nil || total != 6 {
		t.Fatalf("a sixth admission: total %d, ok %v, %v; want refused at 6", total, ok, err)
	}
	// One link ends, on a replica that holds one.
	i, s := 1, b
	if local[1].Load() == 0 {
		i, s = 0, a
	}
	local[i].Add(-1)
	if err := s.SetUser(t.Context(), "dana", s.Replica, func() int { return int(local[i].Load()) }); err != nil {
		t.Fatal(err)
	}
	if total, ok, err := a.AdmitUser(t.Context(), "dana", "a", one, 5); !ok || err != nil || total != 5 {
		t.Fatalf("after one ended: total %d, ok %v, %v; want admitted at 5", total, ok, err)
	}
	// A replica that died: its count expires and stops counting.
	a.Now = func() time.Time { return time.Now().Add(fleet.DefaultLinkTTL + time.Second) }
	if total, ok, err := a.AdmitUser(t.Context(), "dana", "a", func() int { return 1 }, 5); !ok || err != nil || total != 1 {
		t.Fatalf("past b's TTL: total %d, ok %v, %v; want only a's one link", total, ok, err)
	}
}

// TestStorePenaltiesShared: failures from one address on two replicas add
// up, another address is not affected, and an old window stops counting.
func TestStorePenaltiesShared(t *testing.T) {
	a, b := initStore(t)
	now := time.Now()
	for range 3 {
		if _, err := a.Fail(t.Context(), "192.0.2.7", now, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.Fail(t.Context(), "192.0.2.7", now, time.Minute)
	if err != nil || n < 4 {
		t.Fatalf("b's Fail after a's 3: %d, %v; want at least 4", n, err)
	}
	if n, err := b.Count(t.Context(), "192.0.2.7", now, time.Minute); err != nil || n < 4 {
		t.Errorf("Count: %d, %v; want at least 4", n, err)
	}
	if n, err := b.Count(t.Context(), "192.0.2.8", now, time.Minute); err != nil || n != 0 {
		t.Errorf("another address: %d, %v; want 0", n, err)
	}
	if n, err := b.Count(t.Context(), "192.0.2.7", now.Add(3*time.Minute), time.Minute); err != nil || n != 0 {
		t.Errorf("three windows later: %d, %v; want 0", n, err)
	}
}
