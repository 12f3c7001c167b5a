package proxy

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestFailureLogRateLimited checks that a storm of write failures (a full
// disk) makes one log line per kind per interval, and that the next line
// says how many were left out.
func TestFailureLogRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	log := zap.New(core)
	var f failureLog
	err := errors.New("no space left on device")
	for range 1000 {
		f.log(log, whatAuditLog, err)
		f.log(log, whatRecording, err)
	}
	if got := logs.Len(); got != 2 {
		t.Fatalf("got %d log lines for 2000 failures, want 2 (one per kind)", got)
	}
	// Once the interval has passed, the next failure is logged with the
	// count of those suppressed.
	f.mu.Lock()
	f.last[whatAuditLog] = time.Now().Add(-failureLogEvery)
	f.mu.Unlock()
	f.log(log, whatAuditLog, err)
	all := logs.All()
	if len(all) != 3 {
		t.Fatalf("got %d log lines, want 3", len(all))
	}
	if got := all[2].ContextMap()["suppressed"]; got != int64(999) {
		t.Errorf("suppressed: got %v, want 999", got)
	}
}

// TestFreeSpaceMissingFolder checks that the free space of a folder not
// made yet (recordings are made on first use) is that of its parent.
func TestFreeSpaceMissingFolder(t *testing.T) {
	dir := t.TempDir()
	parent, err := freeSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := freeSpace(dir + "/not/made/yet")
	if err != nil {
		t.Fatalf("got %v, want the parent's free space", err)
	}
	if parent <= 0 || missing <= 0 {
		t.Errorf("got free space %d and %d, want both positive", parent, missing)
	}
}
