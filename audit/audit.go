// Package audit writes the bastion's audit trail: one JSON object per line,
// one line per event, in the order the events happened.
package audit

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// SchemaVersion is the version of the event schema, written in every event
// as "v". It changes when a field changes meaning or goes away; new event
// types and new fields do not change it. The schema is documented in
// SCHEMA.md next to this file.
//
// Version 2: session_end is one session channel (was: one upstream link,
// now link_end); sizes and exit codes added.
const SchemaVersion = 2

// Event types. SCHEMA.md lists the fields each one carries.
const (
	// Connection and authentication.
	TypeConnectionAccepted = "connection_accepted"
	TypeConnectionClosed   = "connection_closed"
	TypeAuthSuccess        = "auth_success"
	TypeAuthFailure        = "auth_failure"
	TypeLimitExceeded      = "limit_exceeded"
	// SSO logins (issue 14): a key bound to an identity provider's
	// account, a login refused, a binding dropped by `logout`.
	TypeSSOLogin  = "sso_login"
	TypeSSODenied = "sso_denied"
	TypeSSOLogout = "sso_logout"

	// Target and upstream.
	TypeTargetResolved    = "target_resolved"
	TypeTargetError       = "target_error"
	TypePolicyAllowed     = "policy_allowed"
	TypePolicyDenied      = "policy_denied"
	TypeCredentialsIssued = "credentials_issued"
	TypeHostKeyVerified   = "host_key_verified"
	TypeHostKeyLearned    = "host_key_learned"
	TypeHostKeyMismatch   = "host_key_mismatch"
	TypeUpstreamOpen      = "upstream_connected"
	TypeUpstreamError     = "upstream_error"
	TypeLinkEnd           = "link_end"

	// Inside a link: session channels and what runs in them.
	TypeSessionStart      = "session_start"
	TypeSessionEnd        = "session_end"
	TypeSFTP              = "sftp"
	TypeSCP               = "scp"
	TypeForwardOpen       = "forward_open"
	TypeForwardClose      = "forward_close"
	TypeForwardListen     = "forward_listen"
	TypeAgentUse          = "agent_forwarding"
	TypeRecordingUploaded = "recording_uploaded"
	// TypeRecordingFailed: a recording could not be created or written.
	TypeRecordingFailed = "recording_failed"
	// TypeRecordingTruncated: a recording reached audit.max_recording_size.
	TypeRecordingTruncated = "recording_truncated"
	// TypeRecordingSealed: a recording was closed; its name, size,
	// SHA-256 and duration are its manifest, covered by the chain.
	TypeRecordingSealed = "recording_sealed"

	// The bastion itself.
	TypeConfigReloaded = "config_reloaded"
	TypeConfigRejected = "config_rejected"
	TypeSessionRevoked = "session_revoked"

	// Own-session commands on live links: `sessions`, `kill`, `watch`.
	TypeSessionsListed = "sessions_listed"
	TypeSessionKilled  = "session_killed"
	TypeKillRefused    = "kill_refused"
	TypeKillRequested  = "kill_requested"
	TypeWatchStart     = "watch_start"
	TypeWatchEnd       = "watch_end"
	TypeWatchRefused   = "watch_refused"
)

// Event is one audit record. Empty fields are left out of the JSON.
type Event struct {
	Version int `json:"v"`
	// Seq numbers the lines of the chain from 1, across restarts and
	// rotated files; Prev is the SHA-256 (hex) of the bytes of the line
	// before, without its newline, or 64 zeros before the first. The
	// Logger sets both; see chain.go and SCHEMA.md.
	Seq  int64     `json:"seq,omitempty"`
	Prev string    `json:"prev,omitempty"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	// SessionID identifies the person's connection to the bastion; every
	// event of one connection carries the same one.
	SessionID string `json:"session_id,omitempty"`
	// Channel numbers the session and forwarding channels of one
	// connection from 1, so that a channel's start and end pair up.
	Channel    int    `json:"channel,omitempty"`
	User       string `json:"user,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	// ProxyAddr is the load balancer's address when RemoteAddr came from a
	// PROXY protocol header.
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// Login is the user name the person's client sent to the bastion.
	Login string `json:"login,omitempty"`
	// KeyFingerprint is the SHA256 fingerprint of the key that
	// authenticated (or failed to).
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	// CertKeyID is the key id of the user certificate that authenticated.
	CertKeyID string `json:"cert_key_id,omitempty"`
	// Subject is the identity provider's subject (sub) of a person who
	// logged in through SSO: every event of their connection carries it.
	// Issuer is the provider, Groups the claimed groups, comma-separated
	// (sso_login).
	Subject string `json:"subject,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
	Groups  string `json:"groups,omitempty"`
	Method  string `json:"method,omitempty"`
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
	// Limit names the limit hit (limit_exceeded).
	Limit string `json:"limit,omitempty"`
	// Error is the internal detail of a failure (never key material).
	Error     string `json:"error,omitempty"`
	RequestID string `json:"aws_request_id,omitempty"`
	// Expires is when upstream credentials stop working.
	Expires *time.Time `json:"expires,omitempty"`
	// HostKeyFingerprint and HostKeySource describe the upstream host key
	// and how it was trusted ("lightsail", "pinned", "known_hosts", "tofu").
	HostKeyFingerprint string `json:"host_key_fingerprint,omitempty"`
	HostKeySource      string `json:"host_key_source,omitempty"`

	// Kind is what a session channel runs: "shell", "exec" or
	// "subsystem"; for forwards "local" (-L/-D) or "remote" (-R).
	Kind      string `json:"kind,omitempty"`
	Command   string `json:"command,omitempty"`
	Subsystem string `json:"subsystem,omitempty"`
	// Term is the pty's terminal type, when the session has a pty.
	Term string `json:"term,omitempty"`
	// Recording is the asciicast file of a session (the local path; the
	// S3 key in recording_uploaded).
	Recording string `json:"recording,omitempty"`
	// ExitStatus and ExitSignal are how the command ended, when the
	// instance said.
	ExitStatus *int   `json:"exit_status,omitempty"`
	ExitSignal string `json:"exit_signal,omitempty"`
	// BytesUp counts bytes from the person to the instance, BytesDown the
	// other way (channel payload, stderr included).
	BytesUp   int64 `json:"bytes_up,omitempty"`
	BytesDown int64 `json:"bytes_down,omitempty"`
	// Dest is a forward's destination (host:port or socket path); Origin
	// is the address the forward came from, as the opener reported it.
	Dest   string `json:"dest,omitempty"`
	Origin string `json:"origin,omitempty"`

	// SFTP and scp operations. Op is the operation ("open", "close",
	// "remove", "rename", "mkdir", "rmdir", "setstat", …; scp: "upload",
	// "download", "mkdir"), Path and NewPath the files, OpenMode the open
	// flags, Perm the permission bits as octal text, Size a file's size,
	// BytesRead/BytesWritten what moved through one open file, Status the
	// result ("ok" or the SFTP status name).
	Op           string `json:"op,omitempty"`
	Path         string `json:"path,omitempty"`
	NewPath      string `json:"new_path,omitempty"`
	OpenMode     string `json:"open_mode,omitempty"`
	Perm         string `json:"perm,omitempty"`
	Size         int64  `json:"size,omitempty"`
	BytesRead    int64  `json:"bytes_read,omitempty"`
	BytesWritten int64  `json:"bytes_written,omitempty"`
	Status       string `json:"status,omitempty"`
	// Aborted marks a file still open when the session ended.
	Aborted bool `json:"aborted,omitempty"`

	// Action is what the bastion did about a recording that could not be
	// written or reached its size limit: "refused" (the session did not
	// start), "ended" (the session was closed) or "continued" (it went on
	// unrecorded, with audit.on_failure: continue).
	Action string `json:"action,omitempty"`

	// DurationMS is the length of a connection, link or session, in
	// milliseconds.
	DurationMS int64 `json:"duration_ms,omitempty"`

	// LinkID is the fleet-wide id of a live link (as `ssh bastion
	// sessions` lists it), By the bastion user who listed, killed or
	// watched links, Count how many links a listing showed.
	LinkID string `json:"link_id,omitempty"`
	By     string `json:"by,omitempty"`
	Count  int    `json:"count,omitempty"`

	// SHA256 is the SHA-256 (hex) of a sealed recording's bytes, or of
	// a file an SFTP or scp session moved whole; Partial says why a
	// file's contents were not seen whole.
	SHA256  string `json:"sha256,omitempty"`
	Partial string `json:"partial,omitempty"`

	// Signature is an audit_checkpoint's ed25519 signature (base64) over
	// its seq and prev, SigningKey the public key that made it
	// (authorized_keys form), TornBytes the length of a torn line just
	// before it that the bastion found at start and chained over.
	Signature  string `json:"signature,omitempty"`
	SigningKey string `json:"signing_key,omitempty"`
	TornBytes  int64  `json:"torn_bytes,omitempty"`
}

// Int returns a pointer to v, for ExitStatus.
func Int(v int) *int { return &v }

// MaxEventLen bounds the size of one event line. Emit clips every string
// field to [MaxFieldLen] bytes plus the marker; JSON escaping can grow a
// byte to six ("\u0001"), and an event has fewer than 48 string fields.
const MaxEventLen = 48 * 6 * (MaxFieldLen + len(clipMarker))

// Logger writes events as JSON lines, each one a link of a hash chain
// (chain.go). Each event is written with one write call and, for files,
// synced to disk, so that a crash loses at most the event being written.
// The zero value and a nil *Logger discard events.
type Logger struct {
	// mu protects every field below and orders writes; the checkpoint
	// timer's function takes it too.
	mu sync.Mutex
	w  io.Writer
	f  *os.File // the file behind w, if the logger owns one
	// path is the file f was opened from, for Reopen; "" for a writer.
	path string
	// now returns the time for events; tests replace it.
	now func() time.Time

	chain chainState
	// opt holds the signing key and how often checkpoints are written.
	opt Options
	// resync is set after a failed write: the next Emit first reads the
	// file's tail again, in case part of the line stayed there.
	resync bool
	// cpDue is set when a checkpoint the timer wanted could not be
	// written; the next Emit writes it first.
	cpDue  bool
	timer  *time.Timer // the armed checkpoint timer, or nil
	closed bool
}

// Options are what a chained log may add to its lines: signed checkpoints.
// The zero value writes the chain (seq, prev) without checkpoints.
type Options struct {
	// SigningKey, if non-nil, signs an audit_checkpoint event at most
	// CheckpointInterval or CheckpointEvents events after the last one,
	// and one at start, after a rotation and at Close.
	SigningKey ed25519.PrivateKey
	// CheckpointInterval is how long an event may wait for the
	// checkpoint that covers it; if 0, DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// CheckpointEvents is how many events may wait; if 0,
	// DefaultCheckpointEvents.
	CheckpointEvents int
	// Sink, if non-nil, is given every line once it is written
	// (checkpoints included), in chain order: CloudWatch Logs. While its
	// Err is not nil, Emit returns that error after writing the line.
	Sink Sink
}

// Checkpoint defaults (audit.checkpoint_interval).
const (
	DefaultCheckpointInterval = time.Minute
	DefaultCheckpointEvents   = 1000
)

// NewLogger returns a logger writing to w. Its chain starts at seq 1.
func NewLogger(w io.Writer) *Logger { return NewLoggerWith(w, Options{}) }

// NewLoggerWith is NewLogger with signed checkpoints as opt says.
func NewLoggerWith(w io.Writer, opt Options) *Logger {
	l := &Logger{w: w, now: time.Now, opt: opt.withDefaults()}
	l.chain.reset()
	return l
}

// Open returns a logger for path: "" or "stdout" means standard output,
// anything else a file opened for appending (mode 0600, folder created).
func Open(path string) (*Logger, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with signed checkpoints as opt says. A file's chain
// continues from its last line (read from a bounded tail, chain.go); the
// file is locked (flock) against a second bastion appending to it.
func OpenWith(path string, opt Options) (*Logger, error) {
	if path == "" || path == "stdout" {
		l := NewLoggerWith(os.Stdout, opt)
		if err := l.startCheckpoint(); err != nil {
			return nil, err
		}
		return l, nil
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l := &Logger{w: f, f: f, path: path, now: time.Now, opt: opt.withDefaults()}
	t, err := readTail(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading the audit log's last line: %w", err)
	}
	if err := l.resume(t, true); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func (o Options) withDefaults() Options {
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.CheckpointEvents <= 0 {
		o.CheckpointEvents = DefaultCheckpointEvents
	}
	return o
}

// openFile opens path for appending and takes an exclusive lock on it, so
// that two bastions never fork one chain.
func openFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("creating audit log folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking audit log %s (is another bastion writing it?): %w", path, err)
	}
	return f, nil
}

// Path returns the file the logger appends to, or "" when it writes to
// standard output or a writer.
func (l *Logger) Path() string {
	if l == nil {
		return ""
	}
	return l.path
}

// Reopen opens the logger's file again by its path and writes later events
// there, closing the file it had: after logrotate has renamed the file,
// events go to a new one at the original path (no copytruncate needed). The
// chain goes on from the last line written: with a signing key, the new
// file starts with a checkpoint whose prev is the old file's last hash. A
// logger without a file of its own does nothing, nor does one whose path
// still names the file it has. On error the old file is kept.
func (l *Logger) Reopen() error {
	if l == nil || l.path == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if fi, err := os.Stat(l.path); err == nil {
		if cur, err := l.f.Stat(); err == nil && os.SameFile(fi, cur) {
			return nil
		}
	}
	f, err := openFile(l.path)
	if err != nil {
		return fmt.Errorf("reopening audit log: %w", err)
	}
	old := l.f
	l.f, l.w = f, f
	old.Close()
	if l.opt.SigningKey != nil {
		if err := l.writeCheckpoint(checkpointReopen, 0, ""); err != nil {
			return err
		}
	}
	return nil
}

// Emit writes e, filling in the version, time, seq and prev. Every string
// field is first cut with [Clip], so no event is longer than
// [MaxEventLen] whatever a person typed. A failed write (a full disk, an
// I/O error) is returned, and what part of the line reached the file is
// cut off again, so that the file stays whole lines and the chain does not
// advance; the caller decides whether the session may go on unaudited.
// While a Sink cannot deliver (Options.Sink), Emit returns its error after
// writing the line, for the caller to treat the same way.
func (l *Logger) Emit(e Event) error {
	if l == nil || l.w == nil {
		return nil
	}
	e.Version = SchemaVersion
	// Only the logger writes checkpoints and their fields.
	e.Signature, e.SigningKey, e.TornBytes = "", "", 0
	clipStrings(&e)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed && l.f != nil {
		return errLoggerClosed
	}
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	if l.resync {
		if err := l.resyncTail(); err != nil {
			return err
		}
	}
	if l.cpDue {
		if err := l.writeCheckpoint(checkpointInterval, 0, ""); err != nil {
			return err
		}
	}
	if err := l.writeLocked(&e); err != nil {
		return err
	}
	if err := l.maybeCheckpoint(); err != nil {
		return err
	}
	if l.opt.Sink != nil {
		// The line is in the file; the remote copy is behind or lost,
		// which audit.on_failure treats as a failed write.
		return l.opt.Sink.Err()
	}
	return nil
}

// writeLocked writes e as the next link of the chain; l.mu is held.
func (l *Logger) writeLocked(e *Event) error {
	e.Seq = l.chain.seq + 1
	e.Prev = l.chain.prevHex()
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding audit event: %w", err)
	}
	n, err := l.w.Write(append(line, '\n'))
	if err != nil {
		if n > 0 && l.f != nil {
			// O_APPEND wrote n bytes at the end: take them back.
			if fi, serr := l.f.Stat(); serr == nil && fi.Size() >= int64(n) {
				l.f.Truncate(fi.Size() - int64(n))
			}
			l.resync = true
		}
		return fmt.Errorf("writing audit event: %w", err)
	}
	l.chain.advance(line)
	if l.opt.Sink != nil {
		l.opt.Sink.WriteLine(line, e.Time)
	}
	if e.Type != TypeAuditCheckpoint {
		l.chain.uncovered++
	}
	if l.f != nil {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("syncing audit log: %w", err)
		}
	}
	return nil
}

// clipStrings cuts every string field of e with Clip. All of them are
// listed, not only those a person fills today: a field is cheaper to clip
// than to prove harmless.
func clipStrings(e *Event) {
	for _, p := range []*string{
		&e.Type, &e.SessionID, &e.User, &e.RemoteAddr, &e.ProxyAddr, &e.Login,
		&e.KeyFingerprint, &e.CertKeyID, &e.Subject, &e.Issuer, &e.Groups, &e.Method, &e.Mode, &e.Typed, &e.Target,
		&e.Provider, &e.InstanceID, &e.OSUser, &e.UpstreamAddr, &e.Capability,
		&e.Reason, &e.Limit, &e.Error, &e.RequestID, &e.HostKeyFingerprint,
		&e.HostKeySource, &e.Kind, &e.Command, &e.Subsystem, &e.Term,
		&e.Recording, &e.ExitSignal, &e.Dest, &e.Origin, &e.Op, &e.Path,
		&e.NewPath, &e.OpenMode, &e.Perm, &e.Status, &e.Action, &e.LinkID, &e.By,
		&e.SHA256, &e.Partial,
	} {
		*p = Clip(*p)
	}
}

// Close writes a last checkpoint (with a signing key) and closes the file
// behind the logger, if it owns one. Later Emits fail.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	var err error
	if l.opt.SigningKey != nil && l.w != nil {
		err = l.writeCheckpoint(checkpointStop, 0, "")
	}
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.f != nil {
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
