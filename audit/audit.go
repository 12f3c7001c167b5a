// Package audit writes the bastion's audit trail: one JSON object per line,
// one line per event, in the order the events happened.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// SchemaVersion is the version of the event schema, written in every event
// as "v". It changes when a field changes meaning or goes away.
const SchemaVersion = 1

// Event types.
const (
	TypeAuthSuccess    = "auth_success"
	TypeAuthFailure    = "auth_failure"
	TypeTargetResolved = "target_resolved"
	TypeTargetError    = "target_error"
	TypePolicyDenied   = "policy_denied"
	TypeUpstreamError  = "upstream_error"
	TypeUpstreamOpen   = "upstream_connected"
	TypeSessionEnd     = "session_end"
	// TypeHostKeyLearned records a host key trusted on first use.
	TypeHostKeyLearned = "host_key_learned"
)

// Event is one audit record. Empty fields are left out of the JSON.
type Event struct {
	Version int       `json:"v"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	// SessionID identifies the person's connection to the bastion; every
	// event of one connection carries the same one.
	SessionID  string `json:"session_id,omitempty"`
	User       string `json:"user,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	// KeyFingerprint is the SHA256 fingerprint of the key that
	// authenticated (or failed to).
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	Method         string `json:"method,omitempty"`
	// Mode is "jump" (ProxyJump) or "direct" (target in the user name).
	Mode string `json:"mode,omitempty"`
	// Typed is the target as the person typed it; Target is the resolved
	// one.
	Typed        string `json:"typed,omitempty"`
	Target       string `json:"target,omitempty"`
	Provider     string `json:"provider,omitempty"`
	InstanceID   string `json:"instance_id,omitempty"`
	OSUser       string `json:"os_user,omitempty"`
	UpstreamAddr string `json:"upstream_addr,omitempty"`
	Capability   string `json:"capability,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// Error is the internal detail of a failure (never key material).
	Error     string `json:"error,omitempty"`
	RequestID string `json:"aws_request_id,omitempty"`
	// DurationMS is the length of a session, in milliseconds.
	DurationMS int64 `json:"duration_ms,omitempty"`
}

// Logger writes events as JSON lines. Each event is written with one write
// call and, for files, synced to disk, so that a crash loses at most the
// event being written. The zero value and a nil *Logger discard events.
type Logger struct {
	mu sync.Mutex // protects w, and orders writes
	w  io.Writer
	f  *os.File // the file behind w, if the logger owns one
	// now returns the time for events; tests replace it.
	now func() time.Time
}

// NewLogger returns a logger writing to w.
func NewLogger(w io.Writer) *Logger { return &Logger{w: w, now: time.Now} }

// Open returns a logger for path: "" or "stdout" means standard output,
// anything else a file opened for appending (mode 0600, folder created).
func Open(path string) (*Logger, error) {
	if path == "" || path == "stdout" {
		return NewLogger(os.Stdout), nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("creating audit log folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	return &Logger{w: f, f: f, now: time.Now}, nil
}

// Emit writes e, filling in the version and time. Errors are reported by
// the returned error; callers usually log and go on.
func (l *Logger) Emit(e Event) error {
	if l == nil || l.w == nil {
		return nil
	}
	e.Version = SchemaVersion
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding audit event: %w", err)
	}
	if _, err := l.w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("writing audit event: %w", err)
	}
	if l.f != nil {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("syncing audit log: %w", err)
		}
	}
	return nil
}

// Close closes the file behind the logger, if it owns one.
func (l *Logger) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
