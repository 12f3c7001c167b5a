package proxy

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/audit/recording"
	"bastion/config"
)

// Recording configures session recordings.
type Recording struct {
	// Dir is the folder recordings are written to; "" records nothing.
	Dir string
	// Input records what the person types as well as the output.
	Input bool
	// Exec records exec sessions without a pty (their output) too.
	Exec bool
	// Finished, if non-nil, is given the path of each closed recording
	// (the S3 uploader's queue).
	Finished func(path string)
	// MaxBytes caps one recording. Reaching it ends the recording with a
	// recording_truncated event and, unless the server fails open, the
	// session. If zero, recordings have no cap.
	MaxBytes int64
	// Recipients, if set, are the age recipients recordings are
	// encrypted to as they are written (files ending in
	// recording.EncryptedExt). If nil, recordings are plain asciicast.
	Recipients []age.Recipient
}

// session is the observer of one session channel: it audits what runs in
// it (shell, exec command line, subsystem, and SFTP or scp operations
// inside), records pty sessions, and reports how the session ended.
type session struct {
	counted
	n      int
	start  time.Time
	person ssh.Channel

	mu sync.Mutex // protects everything below
	// From the person's requests.
	kind, command, subsystem, term string
	cols, rows                     int
	started                        bool
	rec                            *recording.Recorder
	files                          fileWatcher
	// early holds the person's bytes that arrived before the shell, exec
	// or subsystem request was seen. x/crypto delivers a channel's
	// requests and data on separate streams, so a client that sends data
	// right behind its request (sftp's INIT) can have it copied first;
	// the file watcher must still see it.
	early []byte
	// From the instance's.
	exitStatus *int
	exitSignal string
	// pty is set once the person asked for a pty: its output is
	// watched. mu protects it.
	pty bool
}

// fileWatcher is what observes file transfers inside a session: SFTP or
// legacy scp.
type fileWatcher interface {
	FromClient(p []byte)
	FromServer(p []byte)
	Close()
}

func newSession(l *link, n int, person ssh.Channel) *session {
	return &session{counted: counted{l: l}, n: n, start: time.Now(), person: person}
}

func (s *session) request(dir direction, req *ssh.Request) (refuse string) {
	if dir == fromUpstream {
		s.upstreamRequest(req)
		return ""
	}
	switch req.Type {
	case "pty-req":
		var p struct {
			Term       string
			Cols, Rows uint32
			W, H       uint32
			Modes      string
		}
		if ssh.Unmarshal(req.Payload, &p) == nil {
			s.mu.Lock()
			s.term, s.cols, s.rows, s.pty = p.Term, int(p.Cols), int(p.Rows), true
			s.mu.Unlock()
		}
		s.l.ptyStarted()
	case "window-change":
		var p struct{ Cols, Rows, W, H uint32 }
		if ssh.Unmarshal(req.Payload, &p) == nil {
			s.mu.Lock()
			s.cols, s.rows = int(p.Cols), int(p.Rows)
			if s.rec != nil {
				s.rec.Resize(int(p.Cols), int(p.Rows))
			}
			s.mu.Unlock()
		}
	case reqShell:
		return s.begin("shell", "", "")
	case reqExec:
		var p struct{ Command string }
		if ssh.Unmarshal(req.Payload, &p) == nil {
			return s.begin("exec", p.Command, "")
		}
	case reqSubsystem:
		var p struct{ Name string }
		if ssh.Unmarshal(req.Payload, &p) == nil {
			return s.begin("subsystem", "", p.Name)
		}
	case reqAgent:
		s.l.audit(audit.Event{Type: audit.TypeAgentUse, Channel: s.n, Op: "request"})
	}
	return ""
}

func (s *session) upstreamRequest(req *ssh.Request) {
	switch req.Type {
	case reqExitStatus:
		var p struct{ Status uint32 }
		if ssh.Unmarshal(req.Payload, &p) == nil {
			s.mu.Lock()
			s.exitStatus = audit.Int(int(p.Status))
			s.mu.Unlock()
		}
	case reqExitSignal:
		var p struct {
			Signal     string
			CoreDumped bool
			Message    string
			Lang       string
		}
		if ssh.Unmarshal(req.Payload, &p) == nil {
			s.mu.Lock()
			s.exitSignal = p.Signal
			s.mu.Unlock()
		}
	}
}

// begin records what the session runs, starts its recording and its file
// transfer watcher, and audits the start. Only the first shell, exec or
// subsystem request of a channel starts anything (RFC 4254 §6.5 allows one).
// It returns the message refusing the session when its recording cannot be
// created and the server fails closed.
func (s *session) begin(kind, command, subsystem string) (refuse string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return ""
	}
	s.started = true
	s.kind, s.command, s.subsystem = kind, command, subsystem
	srv := s.l.c.srv
	rc := srv.Recording
	if rc.Dir != "" && (s.term != "" || (kind == "exec" && (rc.Exec || s.l.policyRecords(config.RecordExec))) || s.l.recordAll) {
		// The channel number is unique within the connection, and the
		// connection id among connections, so the name is unique even
		// for sessions started in the same second on one ControlMaster
		// connection.
		ext, opts := recording.Ext, []recording.Option{recording.WithMaxBytes(rc.MaxBytes)}
		if len(rc.Recipients) > 0 {
			ext, opts = recording.EncryptedExt, append(opts, recording.WithRecipients(rc.Recipients...))
		}
		name := fmt.Sprintf("%s-%s-%d%s", s.start.UTC().Format("20060102T150405Z"), s.l.c.id, s.n, ext)
		cols, rows := s.cols, s.rows
		if cols == 0 || rows == 0 {
			cols, rows = 80, 24
		}
		h := recording.Header{Width: cols, Height: rows, Start: s.start, Command: command,
			Title: fmt.Sprintf("%s@%s (%s)", s.l.ev.OSUser, s.l.ev.Target, s.l.c.identity.User)}
		if s.term != "" {
			h.Env = map[string]string{"TERM": s.term}
		}
		path := filepath.Join(rc.Dir, name)
		stopped := func(err error) { s.recordingStopped(path, err) }
		rec, err := recording.Create(rc.Dir, name, h, append(opts, recording.WithFailureFunc(stopped))...)
		if err != nil {
			srv.writeFailed(whatRecording, err)
			e := audit.Event{Type: audit.TypeRecordingFailed, Channel: s.n, Kind: kind, Command: command, Subsystem: subsystem,
				Recording: path, Error: err.Error(), Action: actionContinued}
			if !srv.AuditFailOpen {
				e.Action = actionRefused
				s.l.audit(e)
				return "bastion: " + msgRecordingRefused
			}
			s.l.audit(e)
		} else {
			s.rec = rec
		}
	}
	switch {
	case kind == "subsystem" && subsystem == "sftp":
		s.files = newSFTPWatcher(s)
	case kind == "exec":
		if w := newSCPWatcher(s, command); w != nil {
			s.files = w
		}
	}
	if s.files != nil && len(s.early) > 0 {
		s.files.FromClient(s.early)
	}
	s.early = nil
	e := audit.Event{Type: audit.TypeSessionStart, Channel: s.n, Kind: kind, Command: command, Subsystem: subsystem, Term: s.term}
	if s.rec != nil {
		e.Recording = s.rec.Path()
	}
	s.l.audit(e)
	return ""
}

// Values of the action field of recording_failed and recording_truncated.
const (
	actionRefused   = "refused"
	actionEnded     = "ended"
	actionContinued = "continued"
)

// recordingStopped is the recorder's failure func: the recording reached
// its size limit (recording.ErrLimit) or could not be written. It audits
// that and, unless the server fails open, ends the session. It runs on a
// copy goroutine or the recorder's flush goroutine, without s.mu.
func (s *session) recordingStopped(path string, err error) {
	srv := s.l.c.srv
	action, msg := actionContinued, ""
	if errors.Is(err, recording.ErrLimit) {
		srv.Metrics.LimitHit(limitMaxRecordingSize)
		if !srv.AuditFailOpen {
			action, msg = actionEnded, fmt.Sprintf("the session recording reached its size limit of %s; closing the session", config.Size(srv.Recording.MaxBytes))
		}
		s.l.audit(audit.Event{Type: audit.TypeRecordingTruncated, Channel: s.n, Limit: limitMaxRecordingSize,
			Recording: path, Size: srv.Recording.MaxBytes, Action: action})
	} else {
		srv.writeFailed(whatRecording, err)
		if !srv.AuditFailOpen {
			action, msg = actionEnded, msgRecordingEnded
		}
		s.l.audit(audit.Event{Type: audit.TypeRecordingFailed, Channel: s.n, Recording: path, Error: err.Error(), Action: action})
	}
	if msg != "" {
		s.l.endSession(s.person, msg)
	}
}

// limitMaxRecordingSize names the recording size cap in events and
// metrics.
const limitMaxRecordingSize = "max_recording_size"

// maxEarly bounds the bytes kept from before a session's start: enough for
// the first packets of any file transfer protocol.
const maxEarly = 64 << 10

func (s *session) data(dir direction, ext bool, p []byte) {
	s.counted.data(dir, ext, p)
	s.mu.Lock()
	if !s.started && dir == fromPerson && !ext {
		if len(s.early)+len(p) <= maxEarly {
			s.early = append(s.early, p...)
		}
		s.mu.Unlock()
		return
	}
	rec, files, pty := s.rec, s.files, s.pty
	s.mu.Unlock()
	switch {
	case dir == fromUpstream:
		if rec != nil {
			rec.Output(p)
		}
		if pty {
			s.l.watchedOutput(p)
		}
		if files != nil && !ext {
			files.FromServer(p)
		}
	case !ext:
		if rec != nil && s.l.c.srv.Recording.Input {
			rec.Input(p)
		}
		if files != nil {
			files.FromClient(p)
		}
	}
}

func (s *session) closed(up, down int64) {
	s.counted.closed(up, down)
	s.l.mu.Lock()
	delete(s.l.sessions, s.person)
	s.l.mu.Unlock()

	s.mu.Lock()
	rec, files := s.rec, s.files
	s.rec, s.files = nil, nil
	e := audit.Event{Type: audit.TypeSessionEnd, Channel: s.n, Kind: s.kind, Command: s.command, Subsystem: s.subsystem,
		ExitStatus: s.exitStatus, ExitSignal: s.exitSignal, BytesUp: up, BytesDown: down, DurationMS: time.Since(s.start).Milliseconds()}
	s.mu.Unlock()
	if files != nil {
		files.Close()
	}
	if rec != nil {
		if err := rec.Close(); err != nil {
			// Usually the error the failure func was given already;
			// rate-limited like it, since a full disk fails every
			// session.
			s.l.c.srv.writeLog.log(s.l.c.log, whatRecording, err)
		}
		e.Recording = rec.Path()
		// The manifest is sealed by the chain (and the next signed
		// checkpoint) before the file can be uploaded or removed.
		m := rec.Manifest()
		s.l.audit(audit.Event{Type: audit.TypeRecordingSealed, Channel: s.n, Recording: m.Name, Size: m.Size,
			SHA256: m.SHA256, DurationMS: m.Duration.Milliseconds()})
		if f := s.l.c.srv.Recording.Finished; f != nil {
			f(rec.Path())
		}
	}
	s.l.audit(e)
}
