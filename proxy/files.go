package proxy

import (
	"fmt"

	"bastion/audit"
	"bastion/audit/sftpwatch"
)

// newSFTPWatcher returns the observer of an SFTP session, which audits its
// file operations. Successful metadata reads (stat) are not audited: a
// client makes many, and they change nothing; failed ones are (a get of a
// missing file is only a failed stat).
//
// The watcher reports from the copy goroutine, and the audit logger syncs
// each event: an operation costs one fsync on the transfer's path, bytes
// in between cost nothing.
func newSFTPWatcher(s *session) fileWatcher {
	return sftpwatch.New(func(op sftpwatch.Op) {
		if op.Kind == sftpwatch.KindStat && op.Status == "ok" {
			return
		}
		e := audit.Event{Type: audit.TypeSFTP, Channel: s.n, Op: op.Kind, Path: op.Path, NewPath: op.NewPath,
			OpenMode: op.Mode, BytesRead: op.BytesRead, BytesWritten: op.BytesWritten, Status: op.Status,
			Aborted: op.Aborted, Reason: op.Reason, Size: op.Size, SHA256: op.SHA256, Partial: op.Partial}
		if op.Perm != nil {
			e.Perm = fmt.Sprintf("%04o", *op.Perm)
		}
		s.l.audit(e)
	})
}

// newSCPWatcher returns the observer of a legacy scp transfer (scp -t or
// -f on the instance), or nil when command is not one.
func newSCPWatcher(s *session, command string) fileWatcher {
	w, ok := sftpwatch.NewSCP(command, func(op sftpwatch.SCPOp) {
		e := audit.Event{Type: audit.TypeSCP, Channel: s.n, Op: op.Kind, Kind: op.Direction, Path: op.Path,
			Size: op.Size, Status: op.Status, Aborted: op.Aborted, Reason: op.Reason, SHA256: op.SHA256, Partial: op.Partial}
		if op.Mode != 0 {
			e.Perm = fmt.Sprintf("%04o", op.Mode)
		}
		if op.Direction == sftpwatch.Upload {
			e.BytesWritten = op.Bytes
		} else {
			e.BytesRead = op.Bytes
		}
		s.l.audit(e)
	})
	if !ok {
		return nil
	}
	return w
}
