package proxy

import (
	"testing"
	"time"
)

func TestUnauthTableShare(t *testing.T) {
	var tb unauthTable
	const max = 20
	share := perSourceUnauth(max) // 13
	for i := range share {
		if s, why := tb.hold("a", max, share, nil); s == nil {
			t.Fatalf("slot %d for a: refused (%s)", i, why)
		}
	}
	if s, _ := tb.hold("a", max, share, nil); s != nil {
		t.Errorf("a over its share: got a slot, want none")
	}
	if s, why := tb.hold("b", 0, 0, nil); s == nil {
		t.Errorf("no limit: refused (%s), want a slot", why)
	}
}

// TestUnauthTableShed: a full table sheds the oldest slot of the address
// holding the most for a newcomer from an address holding fewer, and
// refuses a newcomer from the top address.
func TestUnauthTableShed(t *testing.T) {
	var tb unauthTable
	const max, share = 6, 6
	shed := map[string]int{}
	var shedSlots []int // the order in which slots were taken
	taken := 0
	hold := func(host string) *unauthSlot {
		n := taken
		taken++
		s, _ := tb.hold(host, max, share, func(string) { shed[host]++; shedSlots = append(shedSlots, n) })
		return s
	}
	var a []*unauthSlot
	for range 4 {
		a = append(a, hold("a"))
	}
	hold("b")
	hold("b")
	if got := tb.count(); got != max {
		t.Fatalf("count: got %d, want %d", got, max)
	}
	// a holds the most: its own newcomer is refused.
	if s := hold("a"); s != nil {
		t.Errorf("newcomer from the top address: got a slot, want none")
	}
	// c holds none: a's oldest is shed for it.
	c := hold("c")
	if c == nil {
		t.Fatalf("newcomer from another address: refused, want a slot")
	}
	if shed["a"] != 1 || len(shedSlots) != 1 || shedSlots[0] != 0 {
		t.Errorf("shed: got %v (slots %v), want a's oldest (slot 0) shed once", shed, shedSlots)
	}
	if got := tb.count(); got != max {
		t.Errorf("count after shedding: got %d, want %d", got, max)
	}
	// Releasing the shed slot changes nothing; a live one frees room.
	a[0].release()
	if got := tb.count(); got != max {
		t.Errorf("count after releasing a shed slot: got %d, want %d", got, max)
	}
	// a and b now hold 3 and 2, c 1: b (2 < 3) sheds a, and then b,
	// holding the most (3), is refused.
	if s := hold("b"); s == nil || shed["a"] != 2 {
		t.Errorf("b under a: got slot %v, a shed %d times, want a slot and a shed twice", s != nil, shed["a"])
	}
	if s := hold("b"); s != nil {
		t.Errorf("b at the top: got a slot, want none")
	}
	c.release()
	if got, want := tb.count(), max-1; got != want {
		t.Errorf("count after a release: got %d, want %d", got, want)
	}
	if len(tb.by) != 2 {
		t.Errorf("addresses tracked: got %d, want 2 (an address with no slot has no entry)", len(tb.by))
	}
}

func TestPenaltyBox(t *testing.T) {
	now := time.Unix(0, 0)
	b := newPenaltyBox(func() time.Time { return now })
	for range 100 {
		b.noLogin("a", false)
	}
	for range penaltyThreshold - 1 {
		b.noLogin("a", true)
	}
	if b.penalized("a") {
		t.Errorf("below the threshold: penalized, want not")
	}
	for range 100 {
		b.noLogin("a", true)
	}
	if !b.penalized("a") || b.penalized("b") {
		t.Errorf("at the threshold: got a %v, b %v; want a penalized, b not", b.penalized("a"), b.penalized("b"))
	}
	// The count is capped, so the penalty ends within minutes.
	now = now.Add(time.Duration((penaltyCap-penaltyThreshold)*60/penaltyDecay+1) * time.Second)
	if b.penalized("a") {
		t.Errorf("after the penalty's longest time: still penalized")
	}
	if got := penalizedShare(perSourceUnauth(256)); got != 18 {
		t.Errorf("penalized share of 256: got %d, want 18", got)
	}
}

// TestUnauthTableShedScore: among the addresses holding the most, the one
// with the highest score (recent handshake timeouts) is shed first.
func TestUnauthTableShedScore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scores map[string]float64
		want   string
	}{
		{"b timed out", map[string]float64{"b": 3}, "b"},
		{"a timed out more", map[string]float64{"a": 5, "b": 3, "c": 4}, "a"},
		{"c timed out more", map[string]float64{"a": 1, "c": 2}, "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := unauthTable{score: func(h string) float64 { return tc.scores[h] }}
			shed := ""
			for _, h := range []string{"a", "a", "b", "b", "c", "c"} {
				if s, why := tb.hold(h, 6, 6, func(string) { shed = h }); s == nil {
					t.Fatalf("filling: %s refused (%s)", h, why)
				}
			}
			if s, _ := tb.hold("d", 6, 6, nil); s == nil {
				t.Fatalf("newcomer d: refused, want a slot")
			}
			if shed != tc.want {
				t.Errorf("shed: got %q, want %q", shed, tc.want)
			}
		})
	}
}
