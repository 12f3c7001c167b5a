package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEmit(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf)
	at := time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)
	l.now = func() time.Time { return at }
	if err := l.Emit(Event{Type: TypeSessionEnd, SessionID: "s1", ExitStatus: Int(0), BytesUp: 5}); err != nil {
		t.Fatal(err)
	}
	if err := l.Emit(Event{Type: TypeAuthFailure, Reason: "unknown_key"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	want := `{"v":2,"time":"2026-11-23T01:02:03Z","type":"session_end","session_id":"s1","exit_status":0,"bytes_up":5}`
	if lines[0] != want {
		t.Errorf("line 1:\ngot  %s\nwant %s", lines[0], want)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil {
		t.Fatal(err)
	}
	if e["reason"] != "unknown_key" || e["v"] != float64(SchemaVersion) {
		t.Errorf("line 2: got %v", e)
	}
	for _, empty := range []string{"user", "exit_status", "bytes_up", "expires"} {
		if _, ok := e[empty]; ok {
			t.Errorf("line 2: empty field %s written", empty)
		}
	}
}

func TestOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Emit(Event{Type: TypeConnectionAccepted}); err != nil {
		t.Fatal(err)
	}
	// Written (and synced) before Emit returned, without Close.
	data, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(data), `"type":"connection_accepted"`) {
		t.Errorf("file after Emit: got %q, %v", data, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode: got %o, want 600", mode)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var nilLogger *Logger
	if err := nilLogger.Emit(Event{Type: TypeConnectionAccepted}); err != nil {
		t.Errorf("nil logger: got %v, want nil", err)
	}
}
