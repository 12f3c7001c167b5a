package fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestMemoryDirectory: links put concurrently are listed and counted per
// user; kill requests reach their replica once; Delete drops a link and
// its pending kills.
func TestMemoryDirectory(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(0)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			user := "alice"
			if i%2 == 1 {
				user = "bob"
			}
			if err := m.Put(ctx, Link{ID: fmt.Sprintf("r%d-%d", i%2, i), User: user, Replica: fmt.Sprintf("r%d", i%2)}); err != nil {
				t.Error(err)
			}
			m.List(ctx)
			m.CountUser(ctx, user)
		})
	}
	wg.Wait()
	if ls, _ := m.List(ctx); len(ls) != 50 {
		t.Fatalf("got %d links, want 50", len(ls))
	}
	if n, _ := m.CountUser(ctx, "bob"); n != 25 {
		t.Errorf("CountUser(bob) = %d, want 25", n)
	}
	m.RequestKill(ctx, Kill{LinkID: "r1-1", By: "ops"})
	m.RequestKill(ctx, Kill{LinkID: "r1-3", By: "ops"})
	m.RequestKill(ctx, Kill{LinkID: "nope", By: "ops"})
	m.Delete(ctx, "r1-3")
	ks, _ := m.Kills(ctx, "r1")
	if len(ks) != 1 || ks[0].LinkID != "r1-1" {
		t.Errorf("Kills(r1) = %+v, want the one for r1-1 (r1-3 was deleted, nope never existed)", ks)
	}
	if ks, _ := m.Kills(ctx, "r1"); len(ks) != 0 {
		t.Errorf("Kills(r1) again = %+v, want them consumed", ks)
	}
	if ks, _ := m.Kills(ctx, "r0"); len(ks) != 0 {
		t.Errorf("Kills(r0) = %+v, want none", ks)
	}
}

// TestMemoryBounds: links expire after their TTL, the link and kill
// counts are bounded, and failures per address are bounded.
func TestMemoryBounds(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(time.Minute)
	m.now = func() time.Time { return now }
	m.Put(ctx, Link{ID: "a", Replica: "r"})
	now = now.Add(2 * time.Minute)
	if ls, _ := m.List(ctx); len(ls) != 0 {
		t.Errorf("after the TTL: got %d links, want none", len(ls))
	}
	m.Put(ctx, Link{ID: "b", Replica: "r"})
	var err error
	for range MaxMemoryKills + 1 {
		err = m.RequestKill(ctx, Kill{LinkID: "b"})
	}
	if err == nil {
		t.Errorf("kill request %d: got no error, want the bound", MaxMemoryKills+1)
	}
	for range maxFailStamps + 10 {
		m.Fail(ctx, "1.2.3.4", now, time.Hour)
	}
	if n, _ := m.Count(ctx, "1.2.3.4", now, time.Hour); n != maxFailStamps {
		t.Errorf("failures kept: %d, want the bound %d", n, maxFailStamps)
	}
}
