package proxy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// What the person is told when the audit trail cannot be written and the
// bastion fails closed (Server.AuditFailOpen false). See the durability
// section of audit/SCHEMA.md for what each refusal means.
const (
	msgAuditRefused     = "the audit log cannot be written; refusing the connection"
	msgAuditEnded       = "the audit log cannot be written; closing"
	msgRecordingRefused = "the session recording cannot be written; refusing the session"
	msgRecordingEnded   = "the session recording cannot be written; closing the session"
	msgDiskLow          = "the bastion's disk is nearly full; refusing new sessions"
)

// Values of the what label of bastion_audit_write_failures_total.
const (
	whatAuditLog  = "audit_log"
	whatRecording = "recording"
)

// limitMinFreeSpace names the free-space watermark in limit_exceeded.
const limitMinFreeSpace = "min_free_space"

// failureLogEvery is how often, at most, one kind of write failure is
// logged; the ones in between are counted and reported with the next line,
// so that a full disk does not flood the log.
const failureLogEvery = 10 * time.Second

// failureLog logs write failures at error level, at most once per
// failureLogEvery for each kind.
type failureLog struct {
	mu         sync.Mutex // protects the maps
	last       map[string]time.Time
	suppressed map[string]int
}

func (f *failureLog) log(log *zap.Logger, what string, err error) {
	f.mu.Lock()
	if f.last == nil {
		f.last, f.suppressed = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if t, ok := f.last[what]; ok && now.Sub(t) < failureLogEvery {
		f.suppressed[what]++
		f.mu.Unlock()
		return
	}
	n := f.suppressed[what]
	f.last[what], f.suppressed[what] = now, 0
	f.mu.Unlock()
	log.Error("audit_write_failed", zap.String("what", what), zap.Error(err), zap.Int("suppressed", n))
}

// writeFailed counts and logs an audit event or recording that could not
// be written.
func (s *Server) writeFailed(what string, err error) {
	s.Metrics.AuditWriteFailure(what)
	s.writeLog.log(s.log(), what, err)
}

// auditFailed handles an audit event that could not be written: counted
// and logged, and unless the server fails open, every live link is ended
// with a one-line reason, since what it does next could not be audited.
// It does not block: callers may hold any lock. The links are ended by a
// goroutine of their own (owned by s.bg), which runs again if more failures
// arrive while it works.
func (s *Server) auditFailed(err error) {
	s.writeFailed(whatAuditLog, err)
	if s.AuditFailOpen {
		return
	}
	for {
		switch v := s.auditAlarm.Load(); v {
		case alarmIdle:
			if s.auditAlarm.CompareAndSwap(alarmIdle, alarmRunning) {
				s.bg.Add(1)
				go s.endLinksForAudit()
				return
			}
		default:
			if s.auditAlarm.CompareAndSwap(v, alarmAgain) {
				return
			}
		}
	}
}

// States of Server.auditAlarm.
const (
	alarmIdle    = iota // no goroutine ending links
	alarmRunning        // endLinksForAudit runs
	alarmAgain          // it runs, and must run once more
)

// errAuditDown is the cause of links ended because the audit log cannot be
// written.
var errAuditDown = errors.New(msgAuditEnded)

func (s *Server) endLinksForAudit() {
	defer s.bg.Done()
	for {
		s.mu.Lock()
		var links []*link
		for c := range s.conns {
			links = append(links, c.liveLinks()...)
		}
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, l := range links {
			if l.auditDown.CompareAndSwap(false, true) {
				wg.Go(func() { l.endWith(msgAuditEnded, errAuditDown) })
			}
		}
		wg.Wait()
		if s.auditAlarm.CompareAndSwap(alarmRunning, alarmIdle) {
			return
		}
		s.auditAlarm.Store(alarmRunning)
	}
}

// diskLow returns why a new link is refused when the file system of the
// audit log or of the recordings has less than MinFreeSpace free, or "".
func (s *Server) diskLow() (reason string) {
	if s.MinFreeSpace <= 0 {
		return ""
	}
	var dirs []string
	if p := s.Audit.Path(); p != "" {
		dirs = append(dirs, filepath.Dir(p))
	}
	if s.Recording.Dir != "" {
		dirs = append(dirs, s.Recording.Dir)
	}
	for _, dir := range dirs {
		free, err := freeSpace(dir)
		if err != nil {
			s.log().Warn("statfs_failed", zap.String("path", dir), zap.Error(err))
			continue
		}
		if free < s.MinFreeSpace {
			return fmt.Sprintf("%s has %d bytes free, less than min_free_space (%d)", dir, free, s.MinFreeSpace)
		}
	}
	return ""
}

// freeSpace returns the bytes available to the bastion on the file system
// of dir, or of its nearest existing parent (the recordings folder is made
// on first use).
func freeSpace(dir string) (int64, error) {
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			return int64(st.Bavail) * int64(st.Bsize), nil
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, os.ErrNotExist) || parent == dir {
			return 0, fmt.Errorf("checking free space: %w", err)
		}
		dir = parent
	}
}
