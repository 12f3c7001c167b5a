package fleet_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"bastion/fleet"
	"bastion/internal/testkit"
)

func newStore(t *testing.T, d *testkit.Dynalite, replica string) *fleet.Store {
	return &fleet.Store{Client: clientFor(t, d.URL), Table: "bastion-fleet", Replica: replica, CallTimeout: 5 * time.Second}
}

func TestStoreInitIdempotent(t *testing.T) {
	d := testkit.StartDynalite(t)
	s := newStore(t, d, "a")
	created, err := s.Init(t.Context(), 30*time.Second)
	if err != nil && !errors.Is(err, fleet.ErrNoTTL) || !created {
		t.Fatalf("first Init: created=%v, %v; want the table created", created, err)
	}
	created, err = s.Init(t.Context(), 30*time.Second)
	if err != nil && !errors.Is(err, fleet.ErrNoTTL) || created {
		t.Fatalf("second Init: created=%v, %v; want nothing to do", created, err)
	}
}

// TestStoreHostKeysFirstWins races 20 learners of one instance, from two
// replicas: exactly one key is stored, every learner gets that key back,
// and a replica's later Get sees it.
func TestStoreHostKeysFirstWins(t *testing.T) {
	d := testkit.StartDynalite(t)
	a, b := newStore(t, d, "a"), newStore(t, d, "b")
	if _, err := a.Init(t.Context(), 30*time.Second); err != nil && !errors.Is(err, fleet.ErrNoTTL) {
		t.Fatal(err)
	}
	const id = "i-0123456789abcdef0"
	var wg sync.WaitGroup
	var mu sync.Mutex
	learned, stored := 0, map[string]int{}
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			ok, got, err := s.Learn(t.Context(), id, []string{fmt.Sprintf("ssh-ed25519 KEY%d", i)})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("learner %d: %v", i, err)
				return
			}
			if ok {
				learned++
			}
			stored[strings.Join(got, ",")]++
		})
	}
	wg.Wait()
	if learned != 1 || len(stored) != 1 {
		t.Fatalf("%d learners won, keys seen %v; want exactly one winner whose key all see", learned, stored)
	}
	got, err := b.Get(t.Context(), id)
	if err != nil || len(got) != 1 || stored[got[0]] != 20 {
		t.Fatalf("Get after the race: %v, %v; want the winner's key %v", got, err, stored)
	}
	if got, err := a.Get(t.Context(), "i-00000000000000099"); err != nil || got != nil {
		t.Errorf("Get of an unknown instance: %v, %v; want none", got, err)
	}
}

// TestStoreHostKeysBounded refuses what would grow an item without bound.
func TestStoreHostKeysBounded(t *testing.T) {
	d := testkit.StartDynalite(t)
	s := newStore(t, d, "a")
	if _, err := s.Init(t.Context(), 30*time.Second); err != nil && !errors.Is(err, fleet.ErrNoTTL) {
		t.Fatal(err)
	}
	many := make([]string, 10000)
	for i := range many {
		many[i] = "ssh-ed25519 K"
	}
	for name, tc := range map[string]struct {
		id   string
		keys []string
	}{
		"long id":     {strings.Repeat("i", 100000), []string{"ssh-ed25519 K"}},
		"empty id":    {"", []string{"ssh-ed25519 K"}},
		"10,000 keys": {"i-0123456789abcdef1", many},
		"no key":      {"i-0123456789abcdef1", nil},
		"huge key":    {"i-0123456789abcdef1", []string{strings.Repeat("A", 1<<20)}},
	} {
		if _, _, err := s.Learn(t.Context(), tc.id, tc.keys); err == nil {
			t.Errorf("%s: learned", name)
		}
	}
}

// TestStoreUnreachable: a table endpoint that accepts connections and never
// answers gets an error within the call deadline, not a hang.
func TestStoreUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- c:
			default:
				c.Close()
			}
		}
	}()
	defer func() {
		l.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	}()
	s := &fleet.Store{Client: clientFor(t, "http://"+l.Addr().String()), Table: "bastion-fleet", Replica: "a", CallTimeout: 300 * time.Millisecond}
	start := time.Now()
	_, err = s.Get(t.Context(), "i-0123456789abcdef0")
	if err == nil {
		t.Fatal("Get against a silent endpoint succeeded")
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("Get took %s against a silent endpoint", took)
	}
	if _, _, err := s.Learn(t.Context(), "i-0123456789abcdef0", []string{"ssh-ed25519 K"}); err == nil {
		t.Fatal("Learn against a silent endpoint succeeded")
	}
}
