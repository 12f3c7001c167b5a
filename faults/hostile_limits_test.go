package faults

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/config"
)

// Hostile cases for the connection limits (issue 10, items 5 and 6): links
// counted per person and per connection, pending inner handshakes counted
// as unauthenticated, and handshake slots shared fairly between addresses.

var lockoutAttackTime = flag.Duration("faults.lockout_attack", 10*time.Second,
	"how long TestHostileLimitsUnauthLockout's attackers keep re-opening connections (the issue's figure: 30s)")

// dialFrom opens alice's outer SSH connection from the local address from.
func (b *bastion) dialFrom(from string, timeout time.Duration) (*link, error) {
	l := &link{}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: timeout}
	nc, err := d.Dial("tcp", b.addr)
	if err != nil {
		return l, err
	}
	l.tcp = nc
	nc.SetDeadline(time.Now().Add(timeout))
	c, chans, reqs, err := ssh.NewClientConn(nc, b.addr, &ssh.ClientConfig{
		User:            "alice",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(b.env.person.Signer)},
		HostKeyCallback: ssh.FixedHostKey(b.hostKey),
	})
	if err != nil {
		return l, err
	}
	nc.SetDeadline(time.Time{})
	l.outer = ssh.NewClient(c, chans, reqs)
	return l, nil
}

// innerLogin logs in as osUser over ch, a direct-tcpip channel to target
// on l's outer connection, as ssh -J does.
func (b *bastion) innerLogin(l *link, ch net.Conn, target, osUser string) (*ssh.Client, error) {
	addr := net.JoinHostPort(target, "22")
	timer := time.AfterFunc(endTimeout, func() { ch.Close() })
	defer timer.Stop()
	c, chans, reqs, err := ssh.NewClientConn(ch, addr, &ssh.ClientConfig{
		User:            osUser,
		HostKeyCallback: b.hostCertChecker().CheckHostKey,
		BannerCallback: func(msg string) error {
			l.banner.Write([]byte(msg))
			return nil
		},
	})
	if err != nil {
		ch.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// auditCount returns how many audit events have all of the fragments.
func (b *bastion) auditCount(fragments ...string) int {
	n := 0
	for line := range strings.SplitSeq(b.audit.String(), "\n") {
		if line != "" && !slices.ContainsFunc(fragments, func(f string) bool { return !strings.Contains(line, f) }) {
			n++
		}
	}
	return n
}

// TestHostileLimitsLinksPerUser: with a per-person limit of 2, one outer
// connection opening 8 ProxyJump links gets 2; the other 6 are refused at
// the channel open with the reason, and audited. The deprecated key name
// means the same as the new one.
func TestHostileLimitsLinksPerUser(t *testing.T) {
	for _, key := range []string{"max_links_per_user", "max_sessions_per_user"} {
		t.Run(key, func(t *testing.T) {
			e := newEnv(t)
			s := e.startSim()
			b := e.startBastion(bastionOptions{
				statics: []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}},
				limits:  key + ": 2",
			})
			l, err := b.dial("alice")
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			defer l.close()
			var live []*ssh.Client
			defer func() {
				for _, c := range live {
					c.Close()
				}
			}()
			var refusals []string
			for i := range 8 {
				ch, err := l.outer.Dial("tcp", "sim:22")
				if err != nil {
					refusals = append(refusals, told(err, l))
					continue
				}
				c, err := b.innerLogin(l, ch, "sim", e.me)
				if err != nil {
					t.Fatalf("link %d: channel accepted but inner login failed: %v (told %q)", i, err, told(err, l))
				}
				live = append(live, c)
			}
			if len(live) != 2 || len(refusals) != 6 {
				t.Fatalf("8 links on one connection with %s 2: got %d live and %d refused, want 2 and 6", key, len(live), len(refusals))
			}
			for _, c := range live {
				sess, err := c.NewSession()
				if err != nil {
					t.Fatalf("a live link: opening a session: %v", err)
				}
				out, err := sess.Output("echo ok")
				sess.Close()
				if err != nil || string(out) != "ok\n" {
					t.Fatalf("a live link: got %q, %v; want \"ok\\n\"", out, err)
				}
			}
			for _, r := range refusals {
				if want := "alice already has 2 links open"; !strings.Contains(r, want) {
					t.Errorf("refusal: got %q, want it to say %q", r, want)
				}
			}
			if n := b.auditCount(`"type":"limit_exceeded"`, `"limit":"max_links_per_user"`); n != 6 {
				t.Errorf("audit: got %d limit_exceeded max_links_per_user events, want 6", n)
			}
			// A link given back makes room for the next.
			live[0].Close()
			live = live[1:]
			waitFor(t, "a third link once one ended", settleTimeout, func() bool {
				ch, err := l.outer.Dial("tcp", "sim:22")
				if err != nil {
					return false
				}
				c, err := b.innerLogin(l, ch, "sim", e.me)
				if err != nil {
					t.Fatalf("inner login: %v", err)
				}
				live = append(live, c)
				return true
			})
		})
	}
}

// rss returns the process's resident set size in bytes.
func rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestHostileLimitsPendingChannelFlood: a person opens ProxyJump channels
// as fast as the bastion answers (20,000 at most, for 20s at most) and
// never starts an inner handshake on them, with no policy (the channels are
// refused before they are accepted) and with one (they are accepted and
// wait for the inner login). At no moment may more than
// max_links_per_connection (10) of them be open, the bastion's live memory
// stays bounded, and the limit's refusals do not grow the audit log with
// the loop. (Without a policy every open is a policy denial, audited as
// such; the test reports the audit log's size.)
func TestHostileLimitsPendingChannelFlood(t *testing.T) {
	for _, tc := range []struct {
		name, policies string
	}{
		{"no policy", "[]"},
		{"policy", ""},
	} {
		t.Run(tc.name, func(t *testing.T) { pendingChannelFlood(t, tc.policies) })
	}
}

func pendingChannelFlood(t *testing.T, policies string) {
	const (
		attempts  = 20000
		maxTime   = 20 * time.Second
		workers   = 32
		perConn   = 10 // the default max_links_per_connection
		heapBound = 32 << 20
	)
	e := newEnv(t)
	s := e.startSim()
	b := e.startBastion(bastionOptions{
		statics:  []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}},
		policies: policies,
	})
	l, err := b.dial("alice")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer l.close()
	rss0, heap0 := rss(t), liveHeap()

	var (
		tried, accepted, open, peak atomic.Int64
		limitRefusals               atomic.Int64 // refused for the per-connection limit
		mu                          sync.Mutex   // protects held and refusal
		held                        []net.Conn
		refusal                     string // the first limit refusal's reason
		readers                     sync.WaitGroup
	)
	const limitSays = "this connection already has 10 links open"
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Since(start) < maxTime && tried.Add(1) <= attempts {
				ch, err := l.outer.Dial("tcp", "sim:22")
				if err != nil {
					var oce *ssh.OpenChannelError
					if !errors.As(err, &oce) {
						return // the connection is gone
					}
					if strings.Contains(oce.Message, "links open") {
						limitRefusals.Add(1)
						mu.Lock()
						refusal = cmp.Or(refusal, oce.Message)
						mu.Unlock()
					}
					continue
				}
				accepted.Add(1)
				n := open.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				mu.Lock()
				held = append(held, ch)
				mu.Unlock()
				// The channel is open until the bastion closes it (its
				// inner deadline) or the test ends.
				readers.Go(func() {
					io.Copy(io.Discard, ch)
					open.Add(-1)
				})
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rss1, heap1 := rss(t), liveHeap()
	n := min(tried.Load(), attempts)
	t.Logf("%d channel opens in %s: %d accepted, at most %d open at once; RSS %+.1f MiB, live heap %+.1f MiB (the audit log, in memory here: %.1f MiB)",
		n, elapsed.Round(time.Millisecond), accepted.Load(), peak.Load(),
		float64(rss1-rss0)/(1<<20), float64(heap1-heap0)/(1<<20), float64(len(b.audit.String()))/(1<<20))
	mu.Lock()
	for _, ch := range held {
		ch.Close()
	}
	mu.Unlock()
	l.close()
	readers.Wait()

	if limitRefusals.Load() > 0 && !strings.Contains(refusal, limitSays) {
		t.Errorf("refusal: got %q, want it to say %q", refusal, limitSays)
	}
	if policies == "" && limitRefusals.Load() == 0 {
		t.Errorf("no channel open was refused for the per-connection limit, want most of them")
	}
	if p := peak.Load(); p > perConn {
		t.Errorf("pending channels on one connection: got %d open at once, want at most %d", p, perConn)
	}
	if g := heap1 - heap0; g > heapBound {
		t.Errorf("live heap grew by %.1f MiB, want at most %d MiB", float64(g)/(1<<20), heapBound>>20)
	}
	// The first refusals are audited one by one, the rest in one event
	// when the connection ends: the audit log does not grow with the loop.
	if limitRefusals.Load() > 10 {
		waitFor(t, "the audit event counting the other refusals", settleTimeout, func() bool {
			return b.auditCount(`"type":"limit_exceeded"`, `"limit":"channel_refusals"`) == 1
		})
	}
	if got, refused := b.auditCount(`"type":"limit_exceeded"`, `"limit":"max_links_per_connection"`), limitRefusals.Load(); got > 10 || got > int(refused) || refused > 0 && got == 0 {
		t.Errorf("audit: got %d limit_exceeded max_links_per_connection events for %d refusals, want 1 to 10", got, refused)
	}
	if got := len(b.audit.String()); policies == "" && got > 64<<10 {
		t.Errorf("audit log: got %d bytes, want at most 64 KiB", got)
	}
}

// admitted opens n TCP connections from from and returns how many the
// bastion took into its handshake (it sent its version line) rather than
// closing at once. The connections are closed before it returns.
func (b *bastion) admitted(t *testing.T, from string, n int) int {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := d.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	got := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(endTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case err == nil && strings.HasPrefix(line, "SSH-2.0-"):
			got++
		case err == nil:
			t.Fatalf("bastion sent %q, want a version line or nothing", line)
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection neither served nor closed within %s", endTimeout)
			}
		}
	}
	return got
}

// TestHostileLimitsPendingUseUnauthSlots: ProxyJump channels whose inner
// login has not completed hold unauthenticated slots of their address, as
// connections in their outer handshake do; a completed inner login gives
// its slot back.
func TestHostileLimitsPendingUseUnauthSlots(t *testing.T) {
	const (
		maxUnauth = 12
		share     = 8 + maxUnauth/4 // one address's share of maxUnauth
		pending   = 10
	)
	e := newEnv(t)
	s := e.startSim()
	b := e.startBastion(bastionOptions{
		statics: []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}},
		limits:  fmt.Sprintf("max_unauthenticated: %d", maxUnauth),
		// Long enough for the checks to run before the pending
		// channels' inner deadline.
		handshakeTimeout: 5 * time.Second,
	})
	l, err := b.dial("alice")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer l.close()
	var chans []net.Conn
	for i := range pending {
		ch, err := l.outer.Dial("tcp", "sim:22")
		if err != nil {
			t.Fatalf("pending channel %d: %v (told %q)", i, err, told(err, l))
		}
		chans = append(chans, ch)
	}
	defer func() {
		for _, ch := range chans {
			ch.Close()
		}
	}()
	if got, want := b.admitted(t, "127.0.0.1", share), share-pending; got != want {
		t.Fatalf("with %d pending inner logins from 127.0.0.1 (share %d): got %d more connections admitted, want %d", pending, share, got, want)
	}

	// One inner login completes: its slot is free again (once the probe
	// connections above are gone).
	c, err := b.innerLogin(l, chans[0], "sim", e.me)
	if err != nil {
		t.Fatalf("inner login: %v (told %q)", err, told(err, l))
	}
	defer c.Close()
	want := share - pending + 1
	got := 0
	if !poll(settleTimeout, func() bool { got = b.admitted(t, "127.0.0.1", want+1); return got == want }) {
		t.Fatalf("after one inner login completed: got %d connections admitted, want %d", got, want)
	}
}

// TestHostileLimitsUnauthLockout: 8 addresses each keep 72 connections
// open that never speak SSH, re-opening every one the bastion closes, for
// -faults.lockout_attack (10s; the figure is for 30s). Meanwhile a
// person on a ninth address logs in 20 times, one after another: every
// login must succeed within 8s.
func TestHostileLimitsUnauthLockout(t *testing.T) {
	lockout(t, lockoutAttack{attackers: 8, perAddr: 72, logins: 20, from: "127.0.0.10", attack: *lockoutAttackTime})
}

// TestHostileLimitsUnauthLockoutManyAddresses: more attacking addresses
// (40) than handshake slots (max_unauthenticated 32), so that every
// address holds one slot or none and shedding by count alone cannot tell
// the person from an attacker.
func TestHostileLimitsUnauthLockoutManyAddresses(t *testing.T) {
	lockout(t, lockoutAttack{attackers: 40, perAddr: 4, maxUnauth: 32, logins: 10, from: "127.0.1.10", attack: 10 * time.Second})
}

// lockoutAttack is an attack on the handshake slots: attackers addresses
// (127.0.0.2 on) each keep perAddr idle connections open for attack, while
// a person on from logs in logins times.
type lockoutAttack struct {
	attackers, perAddr int
	// maxUnauth, if set, is the bastion's max_unauthenticated.
	maxUnauth int
	logins    int
	from      string
	attack    time.Duration
}

func lockout(t *testing.T, la lockoutAttack) {
	const (
		loginMax = 8 * time.Second
		// reopenPause is how long an attacking connection waits to
		// re-open once the bastion closed it: the table stays full,
		// and the attack leaves some of a shared test machine to the
		// rest.
		reopenPause = 20 * time.Millisecond
	)
	attackers, perAddr, logins := la.attackers, la.perAddr, la.logins
	opt := bastionOptions{}
	full := config.DefaultMaxUnauthenticated
	if la.maxUnauth > 0 {
		opt.limits = fmt.Sprintf("max_unauthenticated: %d", la.maxUnauth)
		full = la.maxUnauth
	}
	e := newEnv(t)
	s := e.startSim()
	opt.statics = []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}}
	b := e.startBastion(opt)

	stop := make(chan struct{})
	var attacks sync.WaitGroup
	var opened atomic.Int64
	for a := range attackers {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+a))}, Timeout: 5 * time.Second}
		for range perAddr {
			attacks.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := d.Dial("tcp", b.addr)
					if err == nil {
						opened.Add(1)
						closed := make(chan struct{})
						go func() {
							select {
							case <-stop:
								c.Close()
							case <-closed:
							}
						}()
						c.SetReadDeadline(time.Now().Add(handshakeTimeout + endTimeout))
						io.Copy(io.Discard, c)
						close(closed)
						c.Close()
					}
					select {
					case <-stop:
						return
					case <-time.After(reopenPause):
					}
				}
			})
		}
	}
	stopAttack := sync.OnceFunc(func() {
		close(stop)
		attacks.Wait()
	})
	defer stopAttack()
	waitFor(t, "the attack to fill the handshake slots", settleTimeout, func() bool { return b.srv.ActiveConns() >= full })

	attackStart := time.Now()
	type result struct {
		took time.Duration
		err  error
	}
	var results []result
	for i := range logins {
		// Spread the logins over the attack.
		if wait := time.Until(attackStart.Add(time.Duration(i) * la.attack / time.Duration(logins))); wait > 0 {
			<-time.After(wait)
		}
		start := time.Now()
		err := func() error {
			l, err := b.dialFrom(la.from, loginMax)
			defer l.close()
			if err != nil {
				return fmt.Errorf("outer login: %w", err)
			}
			timer := time.AfterFunc(loginMax, l.close)
			defer timer.Stop()
			ch, err := l.outer.Dial("tcp", "sim:22")
			if err != nil {
				return fmt.Errorf("opening the jump channel: %w (told %q)", err, told(err, l))
			}
			c, err := b.innerLogin(l, ch, "sim", e.me)
			if err != nil {
				return fmt.Errorf("inner login: %w (told %q)", err, told(err, l))
			}
			defer c.Close()
			sess, err := c.NewSession()
			if err != nil {
				return fmt.Errorf("opening a session: %w", err)
			}
			defer sess.Close()
			if out, err := sess.Output("echo ok"); err != nil || string(out) != "ok\n" {
				return fmt.Errorf("echo ok: got %q, %v", out, err)
			}
			return nil
		}()
		results = append(results, result{time.Since(start), err})
	}
	if rest := time.Until(attackStart.Add(la.attack)); rest > 0 {
		<-time.After(rest)
	}
	attackTime := time.Since(attackStart)
	stopAttack()

	ok := 0
	var times []string
	for i, r := range results {
		times = append(times, r.took.Round(time.Millisecond).String())
		switch {
		case r.err != nil:
			t.Errorf("login %d from %s during the attack: %v (after %s)", i+1, la.from, r.err, r.took.Round(time.Millisecond))
		case r.took >= loginMax:
			t.Errorf("login %d from %s during the attack: took %s, want under %s", i+1, la.from, r.took.Round(time.Millisecond), loginMax)
		default:
			ok++
		}
	}
	t.Logf("attack of %s (%d connections opened by %d addresses): %d of %d logins succeeded in under %s; times %s",
		attackTime.Round(time.Millisecond), opened.Load(), attackers, ok, logins, loginMax, strings.Join(times, " "))
}

// TestHostileLimitsPendingShed: pending inner logins are shed like
// handshakes. With the slots full and alice's address holding the most
// (10 pending ProxyJump channels), a newcomer from another address closes
// alice's oldest pending channel, with an audit event, and gets in.
func TestHostileLimitsPendingShed(t *testing.T) {
	const (
		maxUnauth = 12
		pending   = 10
	)
	e := newEnv(t)
	s := e.startSim()
	b := e.startBastion(bastionOptions{
		statics:          []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}},
		limits:           fmt.Sprintf("max_unauthenticated: %d", maxUnauth),
		handshakeTimeout: 5 * time.Second,
	})
	l, err := b.dial("alice")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer l.close()
	closed := make(chan int, pending)
	for i := range pending {
		ch, err := l.outer.Dial("tcp", "sim:22")
		if err != nil {
			t.Fatalf("pending channel %d: %v (told %q)", i, err, told(err, l))
		}
		defer ch.Close()
		go func() {
			io.Copy(io.Discard, ch)
			closed <- i
		}()
	}
	// Two more slots from 127.0.0.2 fill the table; they are held while
	// the newcomer arrives.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	for range maxUnauth - pending {
		c, err := d.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(endTimeout))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			t.Fatalf("filling connection from 127.0.0.2: got %q, %v; want the version line", line, err)
		}
	}
	if got := b.admitted(t, "127.0.0.3", 1); got != 1 {
		t.Fatalf("newcomer from 127.0.0.3 with the slots full: got %d admitted, want 1", got)
	}
	select {
	case i := <-closed:
		if i != 0 {
			t.Errorf("shed channel: got alice's channel %d, want her oldest (0)", i)
		}
	case <-time.After(endTimeout):
		t.Fatalf("no pending channel closed within %s of the newcomer", endTimeout)
	}
	if n := b.auditCount(`"type":"limit_exceeded"`, `"limit":"max_unauthenticated"`, `"reason":"shed`, `"user":"alice"`); n != 1 {
		t.Errorf("audit: got %d limit_exceeded events shedding alice's channel, want 1", n)
	}
}
