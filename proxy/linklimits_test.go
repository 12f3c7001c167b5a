package proxy

import (
	"testing"

	"bastion/auth"
)

// TestLinkAccounting: every authenticated connection counts as one link
// until it carries more; channels beyond the first count one each, against
// the per-connection, per-user and total limits in that order.
func TestLinkAccounting(t *testing.T) {
	s := &Server{}
	s.init()
	s.SetRules(&Rules{Limits: Limits{MaxLinks: 5, MaxLinksPerUser: 3, MaxLinksPerConnection: 2}})
	newConn := func(user string) *conn { return &conn{srv: s, identity: auth.Identity{User: user}} }
	limit := func(r *refusal) string {
		if r == nil {
			return ""
		}
		return r.limit
	}
	a1, a2, b1, b2, b3 := newConn("alice"), newConn("alice"), newConn("bob"), newConn("bob"), newConn("bob")
	steps := []struct {
		name string
		do   func() *refusal
		want string
	}{
		{"alice's first connection", func() *refusal { return s.admit(a1) }, ""},
		{"its first channel, counted with the connection", func() *refusal { return s.holdChannel(a1) }, ""},
		{"its second channel", func() *refusal { return s.holdChannel(a1) }, ""},
		{"its third channel", func() *refusal { return s.holdChannel(a1) }, "max_links_per_connection"},
		{"alice's second connection", func() *refusal { return s.admit(a2) }, ""},
		{"its first channel", func() *refusal { return s.holdChannel(a2) }, ""},
		{"its second channel, alice's fourth link", func() *refusal { return s.holdChannel(a2) }, "max_links_per_user"},
		{"bob's first connection", func() *refusal { return s.admit(b1) }, ""},
		{"bob's second connection, the fifth link", func() *refusal { return s.admit(b2) }, ""},
		{"bob's third connection, the sixth", func() *refusal { return s.admit(b3) }, "max_links"},
	}
	for _, st := range steps {
		if got := limit(st.do()); got != st.want {
			t.Fatalf("%s: got refusal %q, want %q", st.name, got, st.want)
		}
	}
	if s.links != 5 || s.users["alice"] != 3 || s.users["bob"] != 2 {
		t.Fatalf("counts: got %d links, alice %d, bob %d; want 5, 3, 2", s.links, s.users["alice"], s.users["bob"])
	}
	// One of a1's two channels ends: a1 counts one link again.
	s.releaseChannel(a1)
	if s.users["alice"] != 2 {
		t.Errorf("after a channel ended: alice has %d links, want 2", s.users["alice"])
	}
	// The last channel ending leaves the connection's own link.
	s.releaseChannel(a1)
	s.releaseChannel(a2)
	if s.users["alice"] != 2 {
		t.Errorf("after every channel ended: alice has %d links, want 2 (one per connection)", s.users["alice"])
	}
	for _, c := range []*conn{a1, a2, b1, b2} {
		s.release(c)
	}
	if s.links != 0 || len(s.users) != 0 {
		t.Errorf("after every connection ended: got %d links and users %v, want none", s.links, s.users)
	}
}
