package proxy

import (
	"net"
	"sync"
	"time"
)

// Failed-authentication throttling: a source address with more than its
// allowance of failures in the last minute has each new connection delayed,
// by a time that doubles with every failure beyond the allowance, from
// failureBaseDelay up to failureMaxDelay. Only that address is slowed; a
// delayed connection does not hold one of the unauthenticated slots, and at
// most maxDelayedPerAddr connections per address wait at once (more are
// closed), so that one address cannot fill the server with waiting
// connections.
const (
	failureWindow     = time.Minute
	failureBaseDelay  = 500 * time.Millisecond
	failureMaxDelay   = 30 * time.Second
	maxDelayedPerAddr = 8
	// maxTrackedAddrs bounds the tracker's memory; past it, the entries
	// with the oldest failures are dropped.
	maxTrackedAddrs = 100_000
)

// failureTracker counts recent failed authentications per source address.
type failureTracker struct {
	now func() time.Time

	mu    sync.Mutex // protects addrs
	addrs map[string]*failures
}

// failures are one address's recent failures (a sliding count that decays
// linearly over failureWindow) and its connections waiting out a delay.
type failures struct {
	count   float64
	updated time.Time
	waiting int
}

func newFailureTracker(now func() time.Time) *failureTracker {
	return &failureTracker{now: now, addrs: map[string]*failures{}}
}

// hostOf returns the IP of addr, the unit of throttling.
func hostOf(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// decayed returns f's count now, aged linearly over the window.
func (f *failures) decayed(now time.Time, perMinute int) float64 {
	age := now.Sub(f.updated)
	return max(0, f.count-float64(perMinute)*age.Seconds()/failureWindow.Seconds())
}

// fail records a failed authentication from host.
func (t *failureTracker) fail(host string, perMinute int) {
	if perMinute <= 0 {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.addrs[host]
	if f == nil {
		if len(t.addrs) >= maxTrackedAddrs {
			t.pruneLocked(now, perMinute)
		}
		f = &failures{}
		t.addrs[host] = f
	}
	f.count = f.decayed(now, perMinute) + 1
	f.updated = now
}

// pruneLocked drops addresses whose failures have decayed away, and if
// that is not enough, every address.
func (t *failureTracker) pruneLocked(now time.Time, perMinute int) {
	for h, f := range t.addrs {
		if f.waiting == 0 && f.decayed(now, perMinute) < 1 {
			delete(t.addrs, h)
		}
	}
	if len(t.addrs) >= maxTrackedAddrs {
		clear(t.addrs)
	}
}

// raise lifts host's count to n, the fleet's count of its failures in the
// window, if that is higher.
func (t *failureTracker) raise(host string, n int) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.addrs[host]
	if f == nil {
		if len(t.addrs) >= maxTrackedAddrs {
			return
		}
		f = &failures{}
		t.addrs[host] = f
	}
	// The decay rate does not matter at the moment of the update.
	if c := f.decayed(now, 0); float64(n) > c {
		f.count, f.updated = float64(n), now
	}
}

// succeeded forgets host's failures after a successful login.
func (t *failureTracker) succeeded(host string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.addrs[host]; f != nil && f.waiting == 0 {
		delete(t.addrs, host)
	} else if f != nil {
		f.count = 0
	}
}

// delay returns how long a new connection from host must wait, and whether
// it may wait at all (false: too many of its connections already wait).
// A caller that gets a positive delay must call done(host) after waiting.
func (t *failureTracker) delay(host string, perMinute int) (time.Duration, bool) {
	if perMinute <= 0 {
		return 0, true
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.addrs[host]
	if f == nil {
		return 0, true
	}
	excess := int(f.decayed(now, perMinute)) - perMinute
	if excess <= 0 {
		return 0, true
	}
	if f.waiting >= maxDelayedPerAddr {
		return 0, false
	}
	f.waiting++
	d := failureBaseDelay
	for i := 1; i < excess && d < failureMaxDelay; i++ {
		d *= 2
	}
	return min(d, failureMaxDelay), true
}

// done ends a wait that delay granted.
func (t *failureTracker) done(host string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.addrs[host]; f != nil && f.waiting > 0 {
		f.waiting--
	}
}
