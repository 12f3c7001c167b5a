package faults

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var (
	churnSessions = flag.Int("faults.sessions", 1000, "how many sessions TestAbandonedSessions opens and abandons")
	churnSeed     = flag.Uint64("faults.seed", 6, "the seed of TestAbandonedSessions's random plan")
)

// churnConcurrency is how many abandoned sessions are in flight at once.
const churnConcurrency = 32

// stage is the point at which a session is abandoned.
type stage int

const (
	// stageConnect: the TCP connection is made, then closed.
	stageConnect stage = iota
	// stageVersion: half a version line is sent.
	stageVersion
	// stageHandshake: a prefix of the client's handshake bytes is sent
	// (version, key exchange, service request, authentication).
	stageHandshake
	// stageAuth: the connection closes while the client authenticates.
	stageAuth
	// stageAuthed: authenticated, no channel opened.
	stageAuthed
	// stageChannel: a channel is open (jump: the direct-tcpip channel;
	// direct: a session channel), nothing more.
	stageChannel
	// stageInner: jump: a prefix of the inner handshake, or all of it;
	// direct: a command started, nothing read.
	stageInner
	// stageData: a command streams output; some of it is read.
	stageData
	numStages
)

var stageNames = [numStages]string{"connect", "version", "handshake", "auth", "authed", "channel", "inner", "data"}

func (s stage) String() string { return stageNames[s] }

// plan is how one session is abandoned.
type plan struct {
	stage stage
	jump  bool
	// cut is the number of bytes sent (stageHandshake, stageInner) or
	// read (stageData) before abandoning.
	cut int64
	// reset abandons with a TCP reset instead of closing politely.
	reset bool
}

func newPlan(rng *rand.Rand) plan {
	p := plan{stage: stage(rng.IntN(int(numStages))), jump: rng.IntN(2) == 0, reset: rng.IntN(2) == 0}
	switch p.stage {
	case stageHandshake, stageInner:
		p.cut = 1 + rng.Int64N(4000)
	case stageData:
		p.cut = 1 + rng.Int64N(256<<10)
	}
	return p
}

// errAbandoned is how the test's own aborts fail.
var errAbandoned = errors.New("abandoned on purpose")

// TestAbandonedSessions opens sessions and abandons each at a random point
// of its life (seeded plan, bounded concurrency), in both modes. Afterwards
// the bastion must be back to its baseline (goroutines, descriptors, no
// connection), the instance must have no connection left, and a normal
// session must still work.
func TestAbandonedSessions(t *testing.T) {
	e := newEnv(t)
	s := e.startSim()
	// Handshakes and dials of 32 sessions at once under -race on two
	// loaded cores are slow; those limits are not what this test is about.
	b := e.startBastion(bastionOptions{
		statics:          []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}},
		handshakeTimeout: 20 * time.Second,
		dialTimeout:      10 * time.Second,
	})
	for _, m := range modes {
		b.checkWorks(t, m, "sim", e.me)
	}
	waitFor(t, "the warm-up connections to the instance to end", settleTimeout, func() bool { return s.open() == 0 })
	base := takeBaseline(t)

	rng := rand.New(rand.NewPCG(*churnSeed, *churnSeed))
	plans := make([]plan, *churnSessions)
	var perStage [numStages]int
	for i := range plans {
		plans[i] = newPlan(rng)
		perStage[plans[i].stage]++
	}
	t.Logf("seed %d: %d sessions, per stage %v", *churnSeed, len(plans), perStage)

	var (
		mu       sync.Mutex
		failures []string
	)
	sem := make(chan struct{}, churnConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i, p := range plans {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := b.abandon(p, e.me); err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("session %d %+v: %v", i, p, err))
				mu.Unlock()
			}
		})
	}
	within(t, "the abandoned sessions", 2*time.Minute, wg.Wait)
	t.Logf("abandoned %d sessions in %s", len(plans), time.Since(start).Round(time.Millisecond))
	for i, f := range failures {
		if i == 10 {
			t.Errorf("… and %d more", len(failures)-i)
			break
		}
		t.Errorf("a step before the planned abort failed: %s", f)
	}

	base.back(t, b.srv)
	waitFor(t, "the instance's connections to end", settleTimeout, func() bool { return s.open() == 0 })
	for _, m := range modes {
		b.checkWorks(t, m, "sim", e.me)
	}
}

// abandon runs one session to the point p names and abandons it. It
// returns an error only if a step before that point failed.
func (b *bastion) abandon(p plan, osUser string) (err error) {
	nc, err := net.DialTimeout("tcp", b.addr, endTimeout)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	l := &link{tcp: nc}
	defer func() {
		if p.reset {
			l.abort()
		} else {
			l.close()
		}
	}()
	// Bounds every step, the inner connection's too (it runs over nc).
	nc.SetDeadline(time.Now().Add(2 * endTimeout))

	switch p.stage {
	case stageConnect:
		return nil
	case stageVersion:
		_, err := nc.Write([]byte("SSH-2.0-Open"))
		return err
	}

	conn := net.Conn(nc)
	if p.stage == stageHandshake {
		conn = &cutConn{Conn: nc, left: p.cut}
	}
	method := ssh.PublicKeys(b.env.person.Signer)
	if p.stage == stageAuth {
		method = ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			nc.Close()
			return nil, errAbandoned
		})
	}
	login := "alice"
	if !p.jump {
		login = osUser + "+sim"
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, b.addr, &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{method},
		HostKeyCallback: ssh.FixedHostKey(b.hostKey),
	})
	switch {
	case p.stage <= stageAuth:
		return nil
	case err != nil:
		return fmt.Errorf("outer handshake: %w", err)
	}
	l.outer = ssh.NewClient(c, chans, reqs)
	if p.stage == stageAuthed {
		return nil
	}

	target := l.outer
	if p.jump {
		ch, err := l.outer.Dial("tcp", "sim:22")
		if err != nil {
			return fmt.Errorf("opening direct-tcpip: %w", err)
		}
		if p.stage == stageChannel {
			return nil
		}
		cc := ch
		if p.stage == stageInner {
			cc = &cutConn{Conn: ch, left: p.cut}
		}
		ic, ichans, ireqs, err := ssh.NewClientConn(cc, "sim:22", &ssh.ClientConfig{
			User:            osUser,
			HostKeyCallback: b.hostCertChecker().CheckHostKey,
		})
		if p.stage == stageInner {
			if err == nil {
				ic.Close()
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("inner handshake: %w", err)
		}
		l.inner = ssh.NewClient(ic, ichans, ireqs)
		target = l.inner
	}

	sess, err := target.NewSession()
	if err != nil {
		return fmt.Errorf("opening a session: %w", err)
	}
	if p.stage == stageChannel {
		return nil
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	if err := sess.Start(bigOutput); err != nil {
		return fmt.Errorf("starting a command: %w", err)
	}
	if p.stage == stageInner {
		return nil
	}
	if _, err := io.CopyN(io.Discard, out, p.cut); err != nil {
		return fmt.Errorf("reading %d bytes: %w", p.cut, err)
	}
	return nil
}

// cutConn passes on the first left bytes written, then closes the
// connection: a client that dies at an exact point of its byte stream.
type cutConn struct {
	net.Conn
	mu   sync.Mutex
	left int64
}

func (c *cutConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int64(len(p)) < c.left {
		c.left -= int64(len(p))
		return c.Conn.Write(p)
	}
	n, _ := c.Conn.Write(p[:c.left])
	c.left = 0
	c.Conn.Close()
	return n, errAbandoned
}
