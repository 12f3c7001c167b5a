package faults

import "testing"

// TestUpstreamDiesMidTransfer kills the instance (siminstance.Close: every
// connection and process gone at once) while it streams output to the
// person. The person's session must end, not hang; in direct mode the
// bastion must close the person's connection itself; and the bastion must
// get back to its baseline.
func TestUpstreamDiesMidTransfer(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.startSim()
			b := e.startBastion(bastionOptions{statics: []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}}})
			b.checkWorks(t, m, "sim", e.me)
			base := takeBaseline(t)

			l, err := m.login(b, "sim", e.me)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			defer l.close()
			st := startStream(t, l, bigOutput)
			st.waitBytes(t, 1<<20)
			s.inst.Close()

			if err := st.waitEnd(t); err == nil {
				t.Errorf("session Wait: got nil, want an error (the instance died without an exit status)")
			}
			if m.name == "direct" {
				// The outer connection is the person's side of the
				// splice: the bastion closes it.
				waitClosed(t, "the person's connection", l.outer)
			} else {
				// The inner connection is; the outer one is the
				// person's to close, as ssh -J does.
				waitClosed(t, "the person's inner connection", l.inner)
			}
			l.close()
			base.back(t, b.srv)
		})
	}
}

// TestUpstreamSSHDKilledMidTransfer is TestUpstreamDiesMidTransfer with a
// real OpenSSH sshd as the instance, reached with ProxyJump: the processes
// serving the connection are killed by pid during a large cat. (One mode
// only: each sshd login forks and execs several processes, which is slow
// on a loaded machine; the siminstance test covers both.)
func TestUpstreamSSHDKilledMidTransfer(t *testing.T) {
	e := newEnv(t)
	d := e.startSSHD()
	s := e.startSim()
	b := e.startBastion(bastionOptions{statics: []staticTarget{
		{"vm", d.addr, d.hostKey},
		{"sim", s.inst.Addr(), s.inst.HostKey()},
	}})
	// The warm-up goes to the siminstance: the bastion's side of a link is
	// the same, and an sshd login costs seconds.
	b.checkWorks(t, modes[0], "sim", e.me)
	base := takeBaseline(t)

	l, err := b.jump("vm", e.me)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer l.close()
	st := startStream(t, l, bigOutput)
	st.waitBytes(t, 1<<20)
	d.killSessions(t)

	if err := st.waitEnd(t); err == nil {
		t.Errorf("session Wait: got nil, want an error (sshd died without an exit status)")
	}
	waitClosed(t, "the person's inner connection", l.inner)
	l.close()
	base.back(t, b.srv)
}
