// Package sftpwatch observes file transfers inside spliced SSH channels for
// the audit trail: SFTP sessions (Watcher, for the "sftp" subsystem) and
// legacy scp transfers (SCP, for an "exec" of scp -t or scp -f, which
// `scp -O` and older clients use).
//
// An observer is handed copies of the bytes that flow each way, in
// whatever chunks the splice reads them, and reports what happened: files
// opened, written, read and closed, renames, removals, directories. It
// never alters or delays the bytes beyond the time it takes to look at
// them: it buffers only packet headers, small requests and control lines,
// skips file contents without copying them, and allocates nothing per
// chunk while contents flow.
//
// Each observer is safe for one goroutine per direction plus Close, and
// calls its report function synchronously, with its lock held, so reports
// are never concurrent. Each direction must be observed in order; the lag
// between the two directions may be arbitrary for a Watcher and is bounded
// for an SCP (see SCP).
//
// Memory is bounded per session: packets up to 256 KiB plus headers (the
// largest OpenSSH's sftp-server accepts), a bounded number of requests in
// flight and of handles open, a bounded number of bytes of paths and
// messages. On input it cannot follow — not SFTP or scp at all, a protocol
// version it does not know, a malformed packet, or tables grown past
// their bounds — an observer reports one operation of kind "unparsed",
// with the reason, and ignores the rest of the session. A person can
// therefore blind the observer on purpose only in a way that is itself
// reported.
package sftpwatch
