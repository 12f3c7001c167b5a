// Package faults is the bastion's fault-injection suite (issue 6). It holds
// tests only: each one builds a bastion in process with the assembly that
// `bastion serve` uses (package assemble), on loopback, in
// front of a real OpenSSH sshd or an in-process siminstance, with the real
// AWS SDK talking to internal/awsfake where AWS is involved, and then breaks
// something on purpose: the instance dies mid-transfer, the person's client
// dies mid-download or mid-upload, AWS is down, slow, throttling or
// answering garbage, a thousand sessions are abandoned at random points,
// connections send nothing at all, the bastion drains with sessions live.
//
// Every test asserts what the person sees (a one-line reason, never a hang)
// and that the bastion gets back to where it was: goroutines, open file
// descriptors and Server.ActiveConns return to their baseline within a
// deadline, and the upstream side of an abandoned link is closed. Tests wait
// on conditions with deadlines, never on sleeps, and kill every process they
// start by its pid at cleanup.
//
// Run it with the race detector (sshd and ssh must be installed, as for
// the e2e suite):
//
//	go test -race ./faults/
//	go test -race -run TestAbandonedSessions ./faults/ -args -faults.sessions=5000 -faults.seed=7
//	go test -race -run TestHostileLimitsUnauthLockout ./faults/ -args -faults.lockout_attack=30s
//
// The tests are not parallel: goroutine and descriptor counts are
// process-wide.
package faults
