package faults

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"bastion/proxy"
)

// drainDeadline is how long Shutdown lets live sessions go on in
// TestDrainDuringTransfer.
const drainDeadline = 300 * time.Millisecond

// TestDrainDuringTransfer shuts the bastion down (as SIGTERM does) while a
// session streams output and its deadline passes first: Shutdown must
// return the context's error once the sessions are closed, the person's
// session and connection must end, the instance's connection must close,
// Serve must return ErrServerClosed, new connections must be refused, and
// nothing may leak.
func TestDrainDuringTransfer(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.startSim()
			b := e.startBastion(bastionOptions{statics: []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}}})
			b.checkWorks(t, m, "sim", e.me)
			waitFor(t, "the warm-up connection to the instance to end", settleTimeout, func() bool { return s.open() == 0 })
			base := takeBaseline(t)

			l, err := m.login(b, "sim", e.me)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			defer l.close()
			st := startStream(t, l, bigOutput)
			st.waitBytes(t, 1<<20)

			ctx, cancel := context.WithTimeoutCause(context.Background(), drainDeadline, errors.New("drain deadline passed"))
			defer cancel()
			start := time.Now()
			var shutErr error
			within(t, "Shutdown", endTimeout, func() { shutErr = b.srv.Shutdown(ctx) })
			if !errors.Is(shutErr, context.DeadlineExceeded) {
				t.Errorf("Shutdown: got %v, want context.DeadlineExceeded", shutErr)
			}
			if d := time.Since(start); d < drainDeadline {
				t.Errorf("Shutdown returned after %s, before its deadline %s, with a session live", d.Round(time.Millisecond), drainDeadline)
			}
			if got := b.srv.ActiveConns(); got != 0 {
				t.Errorf("ActiveConns after Shutdown: got %d, want 0", got)
			}
			if err := st.waitEnd(t); err == nil {
				t.Errorf("session Wait: got nil, want an error (cut by the drain)")
			}
			waitClosed(t, "the person's connection", l.outer)
			select {
			case <-b.served:
				if !errors.Is(b.serveErr, proxy.ErrServerClosed) {
					t.Errorf("Serve: got %v, want ErrServerClosed", b.serveErr)
				}
			case <-time.After(endTimeout):
				t.Fatalf("Serve still running %s after Shutdown", endTimeout)
			}
			if nc, err := net.DialTimeout("tcp", b.addr, time.Second); err == nil {
				nc.Close()
				t.Errorf("dialing the bastion after Shutdown: connected, want refused")
			}
			waitFor(t, "the instance's connection to close", endTimeout, func() bool { return s.open() == 0 })
			l.close()
			base.back(t, b.srv)
		})
	}
}
