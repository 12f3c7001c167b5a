package faults

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// slowHandshake is the bastion's handshake_timeout in TestSlowloris.
const slowHandshake = time.Second

// TestSlowloris holds connections open without finishing a handshake: some
// send nothing, some send their version line and nothing more, some trickle
// a version line that never ends, one byte at a time. The bastion must drop
// each at handshake_timeout (not before, and not much after), serve a
// normal session meanwhile, and get back to its baseline.
//
// A person who opens a ProxyJump channel and sends nothing on it is dropped
// too, at the inner handshake's deadline.
func TestSlowloris(t *testing.T) {
	e := newEnv(t)
	s := e.startSim()
	b := e.startBastion(bastionOptions{
		statics:          []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}},
		handshakeTimeout: slowHandshake,
	})
	b.checkWorks(t, modes[0], "sim", e.me)
	base := takeBaseline(t)

	kinds := []struct {
		name  string
		drive func(nc net.Conn)
	}{
		{"silent", func(net.Conn) {}},
		{"version only", func(nc net.Conn) { io.WriteString(nc, "SSH-2.0-OpenSSH_9.9\r\n") }},
		{"trickle", func(nc net.Conn) {
			io.WriteString(nc, "SSH-2.0-")
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for range tick.C {
				if _, err := nc.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}},
	}
	const perKind = 8
	type result struct {
		kind    string
		elapsed time.Duration
		err     error
	}
	results := make(chan result, perKind*len(kinds))
	var wg sync.WaitGroup
	for _, k := range kinds {
		for range perKind {
			nc, err := net.Dial("tcp", b.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			start := time.Now()
			wg.Go(func() { k.drive(nc) })
			wg.Go(func() {
				// Read whatever the bastion sends until it hangs up.
				nc.SetReadDeadline(time.Now().Add(slowHandshake + endTimeout))
				_, err := io.Copy(io.Discard, nc)
				results <- result{k.name, time.Since(start), err}
				nc.Close()
			})
		}
	}
	conns := perKind * len(kinds)
	waitFor(t, fmt.Sprintf("the bastion to track %d connections", conns), endTimeout, func() bool { return b.srv.ActiveConns() >= conns })

	// A person who opens a channel to a target and never starts the
	// inner handshake: dropped when the inner deadline passes.
	l, err := b.dial("alice")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer l.close()
	ch, err := l.outer.Dial("tcp", "sim:22")
	if err != nil {
		t.Fatalf("opening direct-tcpip: %v", err)
	}
	innerStart := time.Now()
	innerDone := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, ch)
		innerDone <- time.Since(innerStart)
	}()

	// Meanwhile, people are served.
	b.checkWorks(t, modes[1], "sim", e.me)

	wg.Wait()
	close(results)
	for r := range results {
		// Closed means EOF, or a reset when the bastion closed with
		// unread bytes; a timeout means it never did.
		if ne := net.Error(nil); errors.As(r.err, &ne) && ne.Timeout() {
			t.Errorf("%s connection: still open after %s, want the bastion to close it", r.kind, r.elapsed.Round(time.Millisecond))
			continue
		}
		if lo, hi := slowHandshake-100*time.Millisecond, slowHandshake+awsSlack; r.elapsed < lo || r.elapsed > hi {
			t.Errorf("%s connection: closed after %s, want between %s and %s", r.kind, r.elapsed.Round(time.Millisecond), lo, hi)
		}
	}

	// The inner deadline: two handshakes, the AWS backstop
	// (aws_timeout + 2s) and the dial (see proxy's conn.jump).
	innerDeadline := 2*slowHandshake + awsTimeout + 2*time.Second + dialTimeout
	select {
	case d := <-innerDone:
		if d < innerDeadline-100*time.Millisecond {
			t.Errorf("silent inner channel: closed after %s, before its deadline %s", d.Round(time.Millisecond), innerDeadline)
		}
	case <-time.After(innerDeadline + endTimeout):
		t.Fatalf("silent inner channel: still open %s after it was opened", innerDeadline+endTimeout)
	}
	l.close()
	base.back(t, b.srv)
}
