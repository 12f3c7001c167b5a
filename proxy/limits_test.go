package proxy

import (
	"testing"
	"time"
)

func TestFailureTracker(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := newFailureTracker(func() time.Time { return now })
	const perMinute = 3
	steps := []struct {
		name      string
		failures  int
		advance   time.Duration
		wantDelay time.Duration
	}{
		{"within the allowance", 3, 0, 0},
		{"one over", 1, 0, failureBaseDelay},
		{"three over", 2, 0, 4 * failureBaseDelay},
		{"40s later two have decayed", 0, 40 * time.Second, failureBaseDelay},
		{"capped", 20, 0, failureMaxDelay},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		for range s.failures {
			tr.fail("192.0.2.1", perMinute)
		}
		d, ok := tr.delay("192.0.2.1", perMinute)
		if !ok || d != s.wantDelay {
			t.Errorf("%s: got %v, %v; want %v, true", s.name, d, ok, s.wantDelay)
		}
		if d > 0 {
			tr.done("192.0.2.1")
		}
	}
	if d, ok := tr.delay("192.0.2.2", perMinute); !ok || d != 0 {
		t.Errorf("another address: got %v, %v; want 0, true", d, ok)
	}
	for i := range maxDelayedPerAddr {
		if _, ok := tr.delay("192.0.2.1", perMinute); !ok {
			t.Fatalf("waiter %d refused, want %d allowed", i, maxDelayedPerAddr)
		}
	}
	if _, ok := tr.delay("192.0.2.1", perMinute); ok {
		t.Errorf("waiter %d: allowed, want refused", maxDelayedPerAddr+1)
	}
	tr.succeeded("192.0.2.1")
	for range maxDelayedPerAddr {
		tr.done("192.0.2.1")
	}
	if d, ok := tr.delay("192.0.2.1", perMinute); !ok || d != 0 {
		t.Errorf("after a login: got %v, %v; want 0, true", d, ok)
	}
	if d, ok := tr.delay("192.0.2.1", 0); !ok || d != 0 {
		t.Errorf("disabled: got %v, %v; want 0, true", d, ok)
	}
}
