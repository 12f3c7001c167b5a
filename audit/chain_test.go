package audit

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newSigner(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeChained writes n connection events to a new log at path with
// checkpoints every `every` events, and closes it.
func writeChained(t *testing.T, path string, key ed25519.PrivateKey, n, every int) {
	t.Helper()
	l, err := OpenWith(path, Options{SigningKey: key, CheckpointEvents: every, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Emit(Event{Type: TypeConnectionAccepted, SessionID: strings.Repeat("a", i%7+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func verifyFiles(t *testing.T, key ed25519.PrivateKey, files ...string) *Report {
	t.Helper()
	var opt VerifyOptions
	if key != nil {
		opt.PublicKey = key.Public().(ed25519.PublicKey)
	}
	rep, err := Verify(files, opt)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func summary(r *Report) string {
	var b bytes.Buffer
	r.WriteSummary(&b)
	return b.String()
}

// TestChainVerifyUnit writes a signed log, tampers with copies of it the
// ways an intruder would and checks that Verify names the line where each
// shows; the untouched log verifies.
func TestChainVerifyUnit(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t)
	orig := filepath.Join(dir, "audit.jsonl")
	// 1 start checkpoint, 20 events with a checkpoint after every 5th,
	// 1 stop checkpoint: 26 lines.
	writeChained(t, orig, key, 20, 5)
	lines := readLines(t, orig)
	if len(lines) != 26 {
		t.Fatalf("got %d lines, want 26:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	edit := func(i int) []string {
		l := append([]string(nil), lines...)
		l[i] = strings.Replace(l[i], `"session_id":"`, `"session_id":"X`, 1)
		return l
	}
	tests := []struct {
		name   string
		lines  []string
		line   int    // the line the problem names; 0: verifies
		reason string // held by the problem
	}{
		{name: "untouched", lines: lines},
		{name: "delete a line", lines: append(append([]string(nil), lines[:9]...), lines[10:]...), line: 10, reason: "1 line(s) removed"},
		{name: "edit a field", lines: edit(4), line: 5, reason: "changed"},
		{name: "swap two lines", lines: func() []string {
			l := append([]string(nil), lines...)
			l[11], l[12] = l[12], l[11]
			return l
		}(), line: 12, reason: "out of order"},
		{name: "insert a copy", lines: append(append(append([]string(nil), lines[:8]...), lines[7]), lines[8:]...), line: 9, reason: "does not follow"},
		{name: "not JSON", lines: append(append(append([]string(nil), lines[:3]...), "hello"), lines[3:]...), line: 4, reason: "not an audit event"},
		{name: "edit the last line, a checkpoint", lines: func() []string {
			l := append([]string(nil), lines...)
			l[len(l)-1] = strings.Replace(l[len(l)-1], `"reason":"stop"`, `"reason":"stop","x":1`, 1)
			return l
		}()},
		{name: "forged signature", lines: func() []string {
			l := append([]string(nil), lines...)
			var e map[string]any
			json.Unmarshal([]byte(l[6]), &e)
			if e["type"] != TypeAuditCheckpoint {
				t.Fatalf("line 7 is %v, want a checkpoint", e["type"])
			}
			l[6] = strings.Replace(l[6], `"signature":"`, `"signature":"AAAA`, 1)
			return l
		}(), line: 7, reason: "does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.jsonl")
			writeLines(t, p, tc.lines)
			rep := verifyFiles(t, key, p)
			if tc.line == 0 {
				// The stop checkpoint's edit is the last line: after
				// it nothing chains, but its signature still verifies
				// (it signs seq and prev, not the line).
				if !rep.OK() {
					t.Fatalf("got problems, want none:\n%s", summary(rep))
				}
				return
			}
			if rep.OK() {
				t.Fatalf("verified, want a problem at line %d:\n%s", tc.line, summary(rep))
			}
			p0 := rep.Problems[0]
			if p0.Line != tc.line || !strings.Contains(p0.Text, tc.reason) {
				t.Errorf("got %s, want line %d with %q", p0, tc.line, tc.reason)
			}
		})
	}
	if rep := verifyFiles(t, key, orig); !rep.OK() || rep.Checkpoints != 6 || rep.Uncovered != 0 || rep.Events != 26 {
		t.Errorf("untouched: got checkpoints %d, uncovered %d, events %d, want 6, 0, 26:\n%s", rep.Checkpoints, rep.Uncovered, rep.Events, summary(rep))
	}
	if rep := verifyFiles(t, newSigner(t), orig); rep.OK() || !strings.Contains(rep.Problems[0].Text, "another key") || rep.Problems[0].Line != 1 {
		t.Errorf("another key: got\n%s\nwant line 1 signed by another key", summary(rep))
	}
}

// TestChainTruncatedTailUnit cuts the log before its last checkpoints, as
// an intruder erasing their traces would: the head file beside the log
// shows it to Verify, and a restart goes on from the head so that the cut
// shows in the log itself.
func TestChainTruncatedTailUnit(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t)
	path := filepath.Join(dir, "audit.jsonl")
	writeChained(t, path, key, 20, 5)
	lines := readLines(t, path)
	writeLines(t, path, lines[:15])
	rep := verifyFiles(t, key, path)
	if rep.OK() || rep.Problems[0].Line != 15 || !strings.Contains(rep.Problems[0].Text, "removed") {
		t.Fatalf("cut log: got\n%s\nwant a problem at line 15", summary(rep))
	}
	// Without the head file (the intruder removed it too), the bastion
	// restarts from the file, and the cut lines are only as good as
	// not covered.
	keep, _ := os.ReadFile(path + HeadSuffix)
	os.Remove(path + HeadSuffix)
	if rep := verifyFiles(t, key, path); !rep.OK() || rep.Uncovered == 0 {
		t.Errorf("cut log without its head file: got\n%s\nwant intact with uncovered events", summary(rep))
	}
	// With it, a restart goes on from the head: the next line names the
	// gap.
	os.WriteFile(path+HeadSuffix, keep, 0o600)
	writeChained(t, path, key, 2, 5)
	rep = verifyFiles(t, key, path)
	if rep.OK() || rep.Problems[0].Line != 16 || !strings.Contains(rep.Problems[0].Text, "removed before this line") {
		t.Errorf("restarted after the cut: got\n%s\nwant a problem at line 16", summary(rep))
	}
}

// TestChainRestartAndRotationUnit checks that the chain goes on from the
// file's last line after a restart, and into a new file after a rotation,
// and that the rotated and new files verify as one chain.
func TestChainRestartAndRotationUnit(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t)
	path := filepath.Join(dir, "audit.jsonl")
	writeChained(t, path, key, 3, 1000)
	writeChained(t, path, key, 3, 1000)
	if rep := verifyFiles(t, key, path); !rep.OK() || rep.Events != 10 || rep.LastSeq != 10 {
		t.Fatalf("after a restart: got\n%s\nwant 10 events intact", summary(rep))
	}
	l, err := OpenWith(path, Options{SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(Event{Type: TypeConnectionAccepted})
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Emit(Event{Type: TypeConnectionClosed})
	// A second Reopen of the same file writes nothing.
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	now := readLines(t, path)
	if len(now) != 3 || !strings.Contains(now[0], `"reason":"reopen"`) {
		t.Errorf("new file: got\n%s\nwant the reopen checkpoint, the event and the stop checkpoint", strings.Join(now, "\n"))
	}
	if rep := verifyFiles(t, key, path+".1", path); !rep.OK() || rep.LastSeq != 15 || len(rep.Notes) != 0 {
		t.Errorf("rotated and new file: got\n%s\nwant intact to seq 15, no notes", summary(rep))
	}
	rep := verifyFiles(t, key, path)
	if !rep.OK() || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0].Text, "earlier file") {
		t.Errorf("new file alone: got\n%s\nwant intact with a note about the earlier file", summary(rep))
	}
	// Given in the wrong order, the files do not chain.
	if rep := verifyFiles(t, key, path, path+".1"); rep.OK() {
		t.Errorf("files in the wrong order: verified, want a problem")
	}
}

// TestChainTornLastLineUnit is a crash in the middle of a write:
// the file ends with part of an event. The restart ends that line, chains
// over it with a checkpoint that names it, and Verify says what happened
// and passes.
func TestChainTornLastLineUnit(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t)
	path := filepath.Join(dir, "audit.jsonl")
	writeChained(t, path, key, 3, 1000)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"v":2,"seq":6,"prev":"ab`)
	f.Close()
	if rep := verifyFiles(t, key, path); !rep.OK() || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0].Text, "torn") {
		t.Errorf("torn log before the restart: got\n%s\nwant intact with a note on the torn line", summary(rep))
	}
	writeChained(t, path, key, 2, 1000)
	rep := verifyFiles(t, key, path)
	if !rep.OK() || len(rep.Notes) != 1 || rep.Notes[0].Line != 6 || !strings.Contains(rep.Notes[0].Text, "chained over it") {
		t.Errorf("after the restart: got\n%s\nwant intact with a note on line 6", summary(rep))
	}
	lines := readLines(t, path)
	if !strings.Contains(lines[6], `"torn_bytes":25`) {
		t.Errorf("line 7: got %s, want a checkpoint with torn_bytes 25", lines[6])
	}
	// The same fragment without the bastion's checkpoint is an insertion.
	edited := append(append([]string(nil), lines[:6]...), lines[7:]...)
	p2 := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLines(t, p2, edited)
	if rep := verifyFiles(t, key, p2); rep.OK() || rep.Problems[0].Line != 6 {
		t.Errorf("fragment not chained over: got\n%s\nwant a problem at line 6", summary(rep))
	}
}

// TestChainHugeLastLineUnit appends a line of 8 MiB: the bastion
// reads only a bounded tail, starts a new chain after it, and Verify
// fails at that line.
func TestChainHugeLastLineUnit(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t)
	path := filepath.Join(dir, "audit.jsonl")
	writeChained(t, path, key, 2, 1000)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(bytes.Repeat([]byte("x"), 8<<20))
	f.Close()
	writeChained(t, path, key, 2, 1000)
	rep := verifyFiles(t, key, path)
	if rep.OK() || rep.Problems[0].Line != 5 || !strings.Contains(rep.Problems[0].Text, "not an audit event") {
		t.Errorf("got\n%s\nwant a problem at line 5", summary(rep))
	}
	lines := readLines(t, path)
	if last := lines[len(lines)-1]; !strings.Contains(last, `"reason":"stop"`) {
		t.Errorf("last line: got %.200s, want the stop checkpoint", last)
	}
}

// TestChainSecondWriterUnit opens the log twice: the second
// writer is refused rather than forking the chain.
func TestChainSecondWriterUnit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l2, err := Open(path); err == nil {
		l2.Close()
		t.Fatal("second Open of one log: got no error, want a lock error")
	} else if !strings.Contains(err.Error(), "another bastion") {
		t.Errorf("second Open: got %v, want it to name another bastion", err)
	}
}

// TestChainConcurrentUnit emits from many goroutines with frequent
// checkpoints: the lines form one chain.
func TestChainConcurrentUnit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newSigner(t)
	l, err := OpenWith(path, Options{SigningKey: key, CheckpointEvents: 7, CheckpointInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				l.Emit(Event{Type: TypeForwardOpen})
			}
		})
	}
	wg.Wait()
	l.Close()
	if rep := verifyFiles(t, key, path); !rep.OK() || rep.Uncovered != 0 {
		t.Errorf("got\n%s\nwant intact and covered", summary(rep))
	}
}

// TestChainIntervalUnit checks that a quiet log still gets its events
// signed within the interval.
func TestChainIntervalUnit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newSigner(t)
	l, err := OpenWith(path, Options{SigningKey: key, CheckpointInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Emit(Event{Type: TypeConnectionAccepted})
	deadline := time.Now().Add(20 * time.Second)
	for {
		lines := readLines(t, path)
		if len(lines) == 3 && strings.Contains(lines[2], `"reason":"interval"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no interval checkpoint after 20s:\n%s", strings.Join(lines, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failingWriter fails its writes while fail is set, writing half first.
type failingWriter struct {
	bytes.Buffer
	fail bool
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, errors.New("no space left on device")
	}
	return w.Buffer.Write(p)
}

// TestChainWriteFailureUnit checks that a failed write does not advance
// the chain: the next event written takes the seq the failed one had.
func TestChainWriteFailureUnit(t *testing.T) {
	w := &failingWriter{}
	l := NewLogger(w)
	l.Emit(Event{Type: TypeConnectionAccepted})
	w.fail = true
	if err := l.Emit(Event{Type: TypeConnectionClosed}); err == nil {
		t.Fatal("write to a full disk: got no error")
	}
	w.fail = false
	l.Emit(Event{Type: TypeConnectionClosed})
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(p, w.Bytes(), 0o600)
	if rep := verifyFiles(t, nil, p); !rep.OK() || rep.LastSeq != 2 {
		t.Errorf("got\n%s\nwant intact to seq 2", summary(rep))
	}
}

// TestSigningKeyUnit checks that a missing key is created with mode 0600
// and read back the same, and that a loose mode is refused.
func TestSigningKeyUnit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "audit_ed25519")
	k, err := LoadSigningKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode: got %o, want 600", fi.Mode().Perm())
	}
	k2, err := LoadSigningKey(path, false)
	if err != nil || !k.Equal(k2) {
		t.Errorf("read back: got %v, want the same key", err)
	}
	pub, err := ParsePublicKey(PublicKeyText(k.Public().(ed25519.PublicKey)))
	if err != nil || !pub.Equal(k.Public()) {
		t.Errorf("public key text round trip: %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadSigningKey(path, true); err == nil {
		t.Errorf("mode 0644: got no error")
	}
	if _, err := LoadSigningKey(filepath.Join(t.TempDir(), "none"), false); err == nil {
		t.Errorf("missing without create: got no error")
	}
}

// TestChainLegacyAndGzipUnit checks a log written before the chain: the
// chain starts after its lines, naming the last of them; and that a
// rotated, compressed file verifies with the current one.
func TestChainLegacyAndGzipUnit(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t)
	path := filepath.Join(dir, "audit.jsonl")
	writeLines(t, path, []string{`{"v":2,"time":"2026-01-01T00:00:00Z","type":"connection_accepted"}`, `{"v":2,"time":"2026-01-01T00:00:01Z","type":"connection_closed"}`})
	writeChained(t, path, key, 2, 1000)
	rep := verifyFiles(t, key, path)
	if !rep.OK() || rep.Legacy != 2 || rep.FirstSeq != 1 || rep.Events != 4 {
		t.Fatalf("log with a legacy prefix: got\n%s\nwant 2 unchained lines, then seq 1 to 4", summary(rep))
	}
	// A legacy line changed: the first chained line shows it.
	lines := readLines(t, path)
	lines[1] = strings.Replace(lines[1], "closed", "accepted", 1)
	p2 := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLines(t, p2, lines)
	if rep := verifyFiles(t, key, p2); rep.OK() || rep.Problems[0].Line != 2 {
		t.Errorf("changed legacy line: got\n%s\nwant a problem at line 2", summary(rep))
	}

	// Rotation with compression, as logrotate's compress does.
	l, err := OpenWith(path, Options{SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	os.Rename(path, path+".1")
	l.Reopen()
	l.Emit(Event{Type: TypeConnectionAccepted})
	l.Close()
	data, _ := os.ReadFile(path + ".1")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	os.WriteFile(path+".1.gz", gz.Bytes(), 0o600)
	os.Remove(path + ".1")
	if rep := verifyFiles(t, key, path+".1.gz", path); !rep.OK() || len(rep.Notes) != 0 || rep.Legacy != 2 {
		t.Errorf("compressed rotated file and the current one: got\n%s\nwant intact", summary(rep))
	}
}

// TestChainCutWhileRunningUnit cuts the log under a running logger: the
// next line it writes names the gap.
func TestChainCutWhileRunningUnit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newSigner(t)
	l, err := OpenWith(path, Options{SigningKey: key, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		l.Emit(Event{Type: TypeConnectionAccepted})
	}
	writeLines(t, path, readLines(t, path)[:3])
	l.Emit(Event{Type: TypeConnectionClosed})
	l.Close()
	rep := verifyFiles(t, key, path)
	if rep.OK() || rep.Problems[0].Line != 4 || !strings.Contains(rep.Problems[0].Text, "3 line(s) removed before this line") {
		t.Errorf("got\n%s\nwant line 4 naming 3 removed lines", summary(rep))
	}
}
