package proxy

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestLimitTimerWakeAndStop checks the timer that replaced the limit
// watchers' goroutines: it checks at once; a wake during a check is not
// lost to the deadline that check returns; two checks never overlap; and
// stop waits for a check under way and prevents any later one.
func TestLimitTimerWakeAndStop(t *testing.T) {
	var running, overlaps, checks atomic.Int32
	entered := make(chan struct{}, 8)
	release := make(chan struct{})
	w := &limitTimer{}
	w.check = func() (time.Duration, bool) {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer running.Add(-1)
		if checks.Add(1) <= 2 {
			entered <- struct{}{}
			<-release
		}
		// A deadline far away: only a wake brings the next check.
		return time.Hour, true
	}
	w.start()
	<-entered // the first check runs at once
	w.wake()  // during the first check
	release <- struct{}{}
	<-entered // so the second comes at once, not in an hour
	stopped := make(chan struct{})
	go func() {
		w.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("stop returned while a check was running")
	case <-time.After(50 * time.Millisecond):
	}
	release <- struct{}{}
	<-stopped
	n := checks.Load()
	w.wake() // after stop: no check
	if got := checks.Load(); got != n || n < 2 || n > 3 {
		t.Errorf("checks: %d at stop, %d after a wake after stop; want 2 or 3, unchanged", n, got)
	}
	if overlaps.Load() != 0 {
		t.Error("two checks ran at once")
	}
}

// TestLimitTimerEndsWhenCheckSaysSo checks that a check returning false
// (a limit ended the link) is the last, even when woken afterwards.
func TestLimitTimerEndsWhenCheckSaysSo(t *testing.T) {
	var checks atomic.Int32
	done := make(chan struct{})
	w := &limitTimer{}
	w.check = func() (time.Duration, bool) {
		checks.Add(1)
		close(done)
		return 0, false
	}
	w.start()
	<-done
	w.wake()
	w.stop()
	if n := checks.Load(); n != 1 {
		t.Errorf("checks: got %d, want 1", n)
	}
}
