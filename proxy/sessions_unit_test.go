package proxy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"bastion/audit"
	"bastion/auth"
	"bastion/fleet"
)

// testLink returns a link of user to target, enough for the registry.
func testLink(s *Server, user, target string) *link {
	c := &conn{srv: s, identity: auth.Identity{User: user}}
	return &link{c: c, ev: audit.Event{Target: target, OSUser: "ec2-user"}, start: time.Now()}
}

// TestRegistryLiveLinks: links registered concurrently are listed with
// their fields and byte counts, each with a distinct id, are passed on to
// the directory, and are gone from both once unregistered.
func TestRegistryLiveLinks(t *testing.T) {
	s := &Server{Fleet: Fleet{Replica: "r\x1b1"}}
	const n = 20
	var wg sync.WaitGroup
	unregs := make([]func(), n)
	for i := range n {
		wg.Go(func() {
			l := testLink(s, "alice", "web-1")
			unregs[i] = s.registerLink(l)
			l.moved(fromPerson, 3)
			l.moved(fromUpstream, 5)
			l.ptyStarted()
		})
	}
	wg.Wait()
	links := s.localLinks()
	if len(links) != n {
		t.Fatalf("got %d live links, want %d", len(links), n)
	}
	ids := map[string]bool{}
	for _, l := range links {
		if ids[l.ID] || !strings.HasPrefix(l.ID, "r1-") || len(l.ID) > maxLinkIDLen {
			t.Errorf("link id %q: want unique, of replica r1, at most %d bytes", l.ID, maxLinkIDLen)
		}
		ids[l.ID] = true
		if l.User != "alice" || l.Target != "web-1" || l.OSUser != "ec2-user" || l.BytesIn != 3 || l.BytesOut != 5 || !l.PTY || l.Replica != "r1" {
			t.Errorf("link %+v: want alice to web-1 as ec2-user, 3 in, 5 out, pty, replica r1", l)
		}
	}
	dirCount := func() int {
		ls, err := s.directory().List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(ls)
	}
	waitUntil(t, "the directory to hold every link", func() bool { return dirCount() == n })
	for _, u := range unregs {
		u()
	}
	if len(s.localLinks()) != 0 {
		t.Errorf("got %d live links after they ended, want none", len(s.localLinks()))
	}
	waitUntil(t, "the directory to drop every link", func() bool { return dirCount() == 0 })
	waitUntil(t, "the registry goroutine to stop", func() bool {
		s.live.mu.Lock()
		defer s.live.mu.Unlock()
		return !s.live.running
	})
}

// TestRegistryUnknownEntry: an id that is not live, or is too long, has no
// entry.
func TestRegistryUnknownEntry(t *testing.T) {
	s := &Server{}
	defer s.registerLink(testLink(s, "bob", "db"))()
	for _, id := range []string{"", "local-0000000000000000", strings.Repeat("x", 1<<20)} {
		if s.localEntry(id) != nil {
			t.Errorf("localEntry(%.20q): got an entry, want none", id)
		}
	}
	if id := s.localLinks()[0].ID; s.localEntry(id) == nil {
		t.Errorf("localEntry(%q): got none, want the live link", id)
	}
}

// TestWriteSessionsEscapes: control characters in listed fields are
// escaped.
func TestWriteSessionsEscapes(t *testing.T) {
	var b strings.Builder
	now := time.Now()
	writeSessions(&b, []fleet.Link{{ID: "x", User: "u", Target: "t\x1b[2J", OSUser: "o\r\n", Start: now, LastActive: now}}, now)
	if strings.ContainsAny(b.String(), "\x1b\r") || strings.Count(b.String(), "\n") != 2 {
		t.Errorf("listing %q: want control characters escaped, one line per link", b.String())
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
