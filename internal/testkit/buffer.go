package testkit

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers
// that signals each write, so that a reader can wait for output without
// sleeping. The zero value is ready to use.
type SyncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // capacity 1; a value means "written since the last look"
}

// Write appends p and wakes a waiting reader.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signalLocked()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len returns the number of bytes written so far.
func (s *SyncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

func (s *SyncBuffer) signalLocked() {
	if s.written == nil {
		s.written = make(chan struct{}, 1)
	}
	select {
	case s.written <- struct{}{}:
	default:
	}
}

func (s *SyncBuffer) writtenChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = make(chan struct{}, 1)
	}
	return s.written
}

// Await waits until the output after offset from contains want and
// returns the offset just past it; ok is false if timeout passed first.
func (s *SyncBuffer) Await(from int, want string, timeout time.Duration) (next int, ok bool) {
	written := s.writtenChan()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		out := s.String()
		if from > len(out) {
			from = len(out)
		}
		if i := strings.Index(out[from:], want); i >= 0 {
			return from + i + len(want), true
		}
		select {
		case <-written:
		case <-timer.C:
			return from, false
		}
	}
}

// WaitFor is Await that fails the test, showing the output, on timeout.
func (s *SyncBuffer) WaitFor(t testing.TB, from int, want string, timeout time.Duration) int {
	t.Helper()
	next, ok := s.Await(from, want, timeout)
	if !ok {
		out := s.String()
		t.Fatalf("timed out after %s waiting for %q: got output %q", timeout, want, out[min(from, len(out)):])
	}
	return next
}
