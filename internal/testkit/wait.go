package testkit

import (
	"context"
	"testing"
	"time"
)

// PollInterval is how often Poll and WaitFor re-check their condition.
const PollInterval = 10 * time.Millisecond

// Poll reports whether cond held within timeout, checking it every
// PollInterval. It waits on the condition, never for a fixed time instead
// of checking.
func Poll(timeout time.Duration, cond func() bool) bool {
	return PollContext(context.Background(), timeout, cond) == nil
}

// PollContext is Poll that also ends when ctx is done. It returns nil once
// cond holds, context.DeadlineExceeded after timeout, or ctx's cause.
func PollContext(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
	return nil
}

// WaitFor waits until cond holds, failing the test after timeout with
// "timed out after <timeout> waiting for <what>".
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
