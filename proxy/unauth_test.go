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
	hold := func(host string) *unauthSlot {
		s, _ := tb.hold(host, max, share, func(string) { shed[host]++ })
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
	if shed["a"] != 1 || !a[0].wasShed() || a[1].wasShed() {
		t.Errorf("shed: got %v (oldest of a shed: %v), want a's oldest shed once", shed, a[0].wasShed())
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
	for range penaltyThreshold - 1 {
		b.timedOut("a")
	}
	if b.penalized("a") {
		t.Errorf("below the threshold: penalized, want not")
	}
	for range 100 {
		b.timedOut("a")
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
