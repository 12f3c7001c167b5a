package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
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
	want := `{"v":2,"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","time":"2026-11-23T01:02:03Z","type":"session_end","session_id":"s1","exit_status":0,"bytes_up":5}`
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

// TestHostileAuditEmitClipsStrings checks that Emit caps every string field
// a stranger can fill: one 200 KB typed name makes an event of a few
// hundred bytes, and an event with every string field that long stays
// bounded too.
func TestHostileAuditEmitClipsStrings(t *testing.T) {
	huge := strings.Repeat("a\x01", 100<<10) // 200 KB, with a byte JSON escapes
	var buf bytes.Buffer
	l := NewLogger(&buf)
	if err := l.Emit(Event{Type: TypeTargetError, Typed: huge, Error: "parsing " + huge}); err != nil {
		t.Fatal(err)
	}
	if n := buf.Len(); n > 4<<10 {
		t.Errorf("event with a 200 KB typed name: got %d bytes, want at most 4096", n)
	}
	var e map[string]any
	if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if s, _ := e["typed"].(string); !strings.HasSuffix(s, clipMarker) {
		t.Errorf("typed: got %.40q…, want it to end in %q", s, clipMarker)
	}

	// Every string field at once.
	buf.Reset()
	var all Event
	v := reflect.ValueOf(&all).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString(huge)
		}
	}
	if err := l.Emit(all); err != nil {
		t.Fatal(err)
	}
	if n := buf.Len(); n > MaxEventLen {
		t.Errorf("event with every string field 200 KB: got %d bytes, want at most %d", n, MaxEventLen)
	}
}

// TestReopen checks that after the file is renamed (as logrotate does),
// Reopen sends later events to a new file at the original path.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Emit(Event{Type: TypeConnectionAccepted}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.Emit(Event{Type: TypeConnectionClosed}); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	now, _ := os.ReadFile(path)
	if !strings.Contains(string(old), TypeConnectionAccepted) || strings.Contains(string(old), TypeConnectionClosed) {
		t.Errorf("rotated file: got %q, want only the first event", old)
	}
	if !strings.Contains(string(now), TypeConnectionClosed) || strings.Contains(string(now), TypeConnectionAccepted) {
		t.Errorf("new file: got %q, want only the second event", now)
	}
}
