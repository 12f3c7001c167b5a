package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The hostile cases of the audit chain, against the real binary: a crash
// that leaves half an event, a last line too long to be an event, and a
// second bastion started on the same log.

// appendTo appends b to the file at path.
func appendTo(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestHostileAuditChainCrashTornLine kills the bastion with SIGKILL after a
// session and leaves half an event at the end of its log, as a crash in
// the middle of a write does. The restarted bastion chains over the torn
// line, and verify passes and says what happened.
func TestHostileAuditChainCrashTornLine(t *testing.T) {
	dir := t.TempDir()
	w := newChainedWorld(t, dir)
	w.sessions(t, "before-the-crash")
	w.b.proc.Stop() // SIGKILL: no stop checkpoint
	appendTo(t, w.b.AuditPath, []byte(`{"v":2,"seq":99,"prev":"1f2e`))
	w2 := newChainedWorld(t, dir)
	w2.sessions(t, "after-the-crash")
	w2.stop(t)
	code, out := runBastion(t, "audit", "verify", w2.b.AuditPath)
	if code != 0 || !strings.Contains(out, "a torn event (28 bytes)") || !strings.Contains(out, "chain intact") {
		t.Errorf("exit %d, want 0, the torn line named and the chain intact:\n%s", code, out)
	}
}

// TestHostileAuditChainHugeLastLine appends 64 MiB without a newline to
// the log of a stopped bastion: the restart reads only a bounded tail,
// starts quickly, and verify fails at the line that is not an event.
func TestHostileAuditChainHugeLastLine(t *testing.T) {
	dir := t.TempDir()
	w := newChainedWorld(t, dir)
	w.stop(t)
	lines := len(w.b.AuditLines(t))
	appendTo(t, w.b.AuditPath, bytes.Repeat([]byte("A"), 64<<20))
	w2 := newChainedWorld(t, dir)
	// (The harness's line reader stops at the long line: the session's
	// events are checked by verify, not waited for.)
	if r := w2.bob.ssh(t, nil, "-J", "bastion", w2.me+"@web-1", "echo after-the-garbage"); r.Code != 0 {
		t.Fatalf("session after the garbage: exit %d, %s", r.Code, r.Stderr)
	}
	w2.stop(t)
	code, out := runBastion(t, "audit", "verify", w2.b.AuditPath)
	want := fmt.Sprintf("audit.jsonl:%d: not an audit event (67108864 bytes)", lines+1)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("exit %d, want 1 and %q:\n%s", code, want, out)
	}
}

// TestHostileAuditChainSecondBastion starts a second bastion on the audit
// log a running one writes: it refuses to start, in one line, instead of
// forking the chain.
func TestHostileAuditChainSecondBastion(t *testing.T) {
	dir := t.TempDir()
	w := newChainedWorld(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bastionBin, "serve", "--config", w.b.Config).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the second bastion did not exit:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "is another bastion writing it?") {
		t.Errorf("second bastion: got %v, want a refusal naming the lock:\n%s", err, out)
	}
	w.sessions(t, "first-still-works")
	w.stop(t)
	if code, out := runBastion(t, "audit", "verify", w.b.AuditPath); code != 0 {
		t.Errorf("verify after the refused second bastion: exit %d:\n%s", code, out)
	}
}

// TestHostileAuditChainDiskFull fills the disk of a signed audit log while
// the bastion runs: logins are refused (fail closed, as before) and every
// write that failed was taken back, so that once space is freed the chain
// goes on and the whole log verifies.
func TestHostileAuditChainDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	w := newHostileAuditWorld(t, dir, filepath.Join(t.TempDir(), "recordings"), "  signing_key: audit_ed25519\n  checkpoint_interval: 1s\n  min_free_space: 0")
	run := func(tag string) result {
		return w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo "+tag)
	}
	if r := run("before"); r.Code != 0 {
		t.Fatalf("login before the disk is full: exit %d, %s", r.Code, r.Stderr)
	}
	fillDisk(t, dir, "")
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		r := run("full")
		refused = r.Code != 0 && strings.Contains(r.Stderr, "the audit log cannot be written")
	}
	if !refused {
		t.Fatalf("no login refused in 20 with the audit log's disk full")
	}
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a login once space is free", 60*time.Second, func() bool { return run("after").Code == 0 })
	w.b.signal(t, syscall.SIGTERM)
	if code := w.b.waitExit(t, 60*time.Second); code != 0 {
		t.Fatalf("bastion exit %d", code)
	}
	code, out := runBastion(t, "audit", "verify", w.b.AuditPath)
	if code != 0 || !strings.Contains(out, "chain intact") {
		t.Errorf("verify after the disk was full: exit %d, want 0:\n%s", code, out)
	}
	t.Logf("verify:\n%s", out)
}
