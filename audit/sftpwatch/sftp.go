package sftpwatch

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"
	"sync"
)

// Operation kinds reported by a Watcher in Op.Kind.
const (
	// KindOpen is SSH_FXP_OPEN; Path, Mode and Perm describe the request.
	KindOpen = "open"
	// KindClose is SSH_FXP_CLOSE of a file handle, with the bytes the
	// person read from and wrote to the file through that handle.
	KindClose = "close"
	// KindOpendir is SSH_FXP_OPENDIR: a directory listing.
	KindOpendir = "opendir"
	// KindStat is SSH_FXP_STAT or SSH_FXP_LSTAT of a path. OpenSSH's sftp
	// client stats the paths of most commands first, so a get of a
	// missing file shows as a stat with Status "no_such_file" and no
	// open.
	KindStat = "stat"
	// KindRemove is SSH_FXP_REMOVE of a file.
	KindRemove = "remove"
	// KindRename is SSH_FXP_RENAME or posix-rename@openssh.com.
	KindRename = "rename"
	// KindMkdir is SSH_FXP_MKDIR.
	KindMkdir = "mkdir"
	// KindRmdir is SSH_FXP_RMDIR.
	KindRmdir = "rmdir"
	// KindSetstat is SSH_FXP_SETSTAT, SSH_FXP_FSETSTAT (Path is the
	// handle's file) or lsetstat@openssh.com: chmod, chown, utimes,
	// truncate.
	KindSetstat = "setstat"
	// KindSymlink is SSH_FXP_SYMLINK.
	KindSymlink = "symlink"
	// KindLink is hardlink@openssh.com.
	KindLink = "link"
	// KindCopy is the copy-data extension: a server-side copy from the
	// file open as Path to the file open as NewPath.
	KindCopy = "copy"
	// KindUnparsed reports that the observer stopped following the
	// session; Reason says why. It is reported at most once and is the
	// last operation of its session.
	KindUnparsed = "unparsed"
)

// StatusOK is Op.Status for a request the server answered with success.
const StatusOK = "ok"

// Op is one operation of an SFTP session.
type Op struct {
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Path is the file or directory the operation is on. For rename, link
	// and symlink, Path and NewPath are in the order of the sftp client's
	// rename and ln commands: Path is the existing name (for a symlink, the
	// text the link will point to) and NewPath the name created.
	Path    string `json:"path,omitempty"`
	NewPath string `json:"new_path,omitempty"`
	// Mode is, for open and close, the open flags as a comma-separated
	// list in this order: "read", "write", "create", "truncate", "append",
	// "exclusive" (so "read", "write,create,truncate", "read,write").
	Mode string `json:"mode,omitempty"`
	// Perm is, for open, mkdir and setstat, the permissions field of the
	// request's attributes as the client sent it (POSIX mode bits); nil
	// when the request carries none.
	Perm *uint32 `json:"perm,omitempty"`
	// BytesRead and BytesWritten are, for close, the bytes the person read
	// from and wrote to the file through this handle: the sizes of the
	// SSH_FXP_DATA replies, and of the SSH_FXP_WRITE requests the server
	// answered with success.
	BytesRead    int64 `json:"bytes_read,omitempty"`
	BytesWritten int64 `json:"bytes_written,omitempty"`
	// Status is "ok" or the name of the SFTP status the server replied
	// with: "eof", "no_such_file", "permission_denied", "failure",
	// "bad_message", "no_connection", "connection_lost", "op_unsupported",
	// a later draft's name ("file_already_exists", "dir_not_empty", …), or
	// "status_N" for an unnamed code. It is empty when Aborted.
	Status string `json:"status,omitempty"`
	// Aborted reports that the session ended before the server replied:
	// a close reported by Close for a handle still open, or a request
	// still waiting for its reply.
	Aborted bool `json:"aborted,omitempty"`
	// Reason says, for "unparsed", why the Watcher stopped.
	Reason string `json:"reason,omitempty"`
	// SHA256 is, for the close of a file transferred whole, the SHA-256
	// (hex) of its contents and Size their length: a file read from its
	// start to its end, or written from its start after an open that
	// truncated or created it, in one pass, each request answered with
	// success. Partial says, for the close of any other file that data
	// moved through, why its contents were not seen whole.
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size,omitempty"`
	Partial string `json:"partial,omitempty"`
}

// Bounds on what a Watcher or SCP holds per session.
const (
	// maxPacket is the largest SFTP packet length accepted: OpenSSH's
	// SFTP_MAX_MSG_LENGTH (256 KiB) plus room for headers.
	maxPacket = 256<<10 + 4<<10
	// maxPending bounds the requests awaiting replies, and the replies
	// that arrived before their requests. OpenSSH's sftp client keeps at
	// most 64 requests in flight unless told otherwise (-R).
	maxPending = 1 << 14
	// maxHandles bounds the open handles tracked.
	maxHandles = 1 << 12
	// maxRetained bounds the bytes of paths, handles and messages held.
	maxRetained = 4 << 20
	// writePrefix is the part of an SSH_FXP_WRITE request buffered: id,
	// handle, offset and the data's length; the data itself is skipped.
	writePrefix = 4 + 4 + maxHandle + 8 + 4
)

// Watcher follows one SFTP session (version 3, as OpenSSH speaks it,
// with OpenSSH's extensions) and reports its operations.
//
// Requests and replies are matched by request id, and an operation is
// reported once both have been seen, whichever came first: the two
// directions may be observed with any lag between them, as long as each
// direction is observed in order.
//
// FromClient and FromServer may be called concurrently with each other
// (one goroutine per direction) and with Close.
type Watcher struct {
	report func(Op)

	mu sync.Mutex // protects everything below, and serialises report
	// client and server are the parsers of the two directions.
	client, server stream
	// pending holds requests awaiting their replies, by request id.
	pending byID[request]
	// early holds replies whose requests have not been observed yet.
	early byID[reply]
	// handles maps open handles to their files.
	handles map[string]*file
	// retained counts the bytes of strings held in the tables above.
	retained int
	// seq numbers requests and opens, to report aborted ones in order.
	seq uint64
	// dead is set once parsing has stopped; closed once Close ran.
	dead, closed bool
}

// stream is the packet parser of one direction.
type stream struct {
	hdr  [5]byte // uint32 length and byte type
	nhdr int     // bytes of hdr filled
	typ  byte
	body int    // length of the packet after the type byte
	left int    // bytes of the body not yet seen
	want int    // bytes of the body to keep in buf; the rest is skipped
	buf  []byte // the kept prefix of the body
	seen bool   // whether the first packet (INIT or VERSION) was seen
	// sink hashes the data of a write or of a data reply as it passes,
	// sinkLeft bytes more of it; unseen marks a data reply whose
	// request was not observed, so that its bytes could not be hashed.
	sink     hash.Hash
	sinkLeft int
	unseen   bool
}

// reqKind says what a pending request is, for completing it.
type reqKind uint8

const (
	reqOther reqKind = iota // needs its reply matched, nothing more
	reqOpen
	reqOpendir
	reqClose
	reqRead
	reqWrite
	reqStat
	reqSetstat
	reqFsetstat
	reqRemove
	reqMkdir
	reqRmdir
	reqRename
	reqSymlink
	reqLink
	reqCopy
)

// handleRef holds a handle without allocating when it is short (OpenSSH's
// are 4 bytes); longer ones are kept as a string in s.
type handleRef struct {
	n uint8
	b [16]byte
	s string
}

func makeHandle(p []byte) handleRef {
	var h handleRef
	if len(p) <= len(h.b) {
		h.n = uint8(len(p))
		copy(h.b[:], p)
	} else {
		h.s = string(p)
	}
	return h
}

// request is a request awaiting its reply.
type request struct {
	kind reqKind
	seq  uint64
	// n is the data length of a write or a read, or an open's flags.
	n int64
	// off is the offset of a read.
	off int64
	// h is the handle of a read, write, close or fsetstat.
	h handleRef
	// path and newPath are the request's paths; for copy-data, the two
	// handles.
	path, newPath string
	perm          uint32
	hasPerm       bool
}

func (q *request) size() int { return len(q.path) + len(q.newPath) + len(q.h.s) }

// reply is a reply that arrived before its request.
type reply struct {
	typ  byte
	code uint32    // status code of SSH_FXP_STATUS
	n    int64     // data length of SSH_FXP_DATA
	h    handleRef // handle of SSH_FXP_HANDLE
	// unseen marks an SSH_FXP_DATA observed before its request, whose
	// bytes could not be hashed.
	unseen bool
}

// file is an open handle.
type file struct {
	path        string
	mode        string
	dir         bool
	read, wrote int64
	seq         uint64
	// up and down follow the contents written and read.
	up, down content
}

// content follows the bytes of one direction of a file's transfer while
// they come in one pass from offset 0.
type content struct {
	sum  hash.Hash // nil before the first byte
	next int64     // the offset the next byte must have
	// partial says why the contents are not whole; set, sum is dropped.
	partial string
	eof     bool // a read at next was answered with end of file
}

// at returns the hash to feed n bytes at offset off, or nil when they are
// not the next ones (which makes the contents partial).
func (c *content) at(off, n int64) hash.Hash {
	if c.partial != "" {
		return nil
	}
	if off != c.next {
		c.fail(PartialNotSequential)
		return nil
	}
	if c.sum == nil {
		c.sum = sha256.New()
	}
	c.next += n
	return c.sum
}

func (c *content) fail(why string) {
	if c.partial == "" {
		c.partial, c.sum = why, nil
	}
}

// New returns a Watcher that calls report for each operation.
//
// report is called synchronously, from whichever of FromClient, FromServer
// or Close completes the operation, with the Watcher's lock held: it is
// never called concurrently with itself, it delays the bytes the caller is
// about to pass on, so it should be quick, and it must not call the
// Watcher's methods.
func New(report func(Op)) *Watcher {
	return &Watcher{
		report:  report,
		pending: newByID[request](),
		early:   newByID[reply](),
		handles: make(map[string]*file),
	}
}

// FromClient observes bytes the person sent to the instance. It does not
// retain p.
func (w *Watcher) FromClient(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.feed(&w.client, true, p)
}

// FromServer observes bytes the instance sent to the person. It does not
// retain p.
func (w *Watcher) FromServer(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.feed(&w.server, false, p)
}

// Close ends the session: requests still awaiting replies are reported with
// Aborted set, then every file handle still open is reported as a close
// with Aborted set, in the order the files were opened. Bytes observed
// after Close are ignored. Close may be called more than once.
func (w *Watcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if !w.dead {
		qs := w.pending.all()
		slices.SortFunc(qs, func(a, b request) int { return cmp.Compare(a.seq, b.seq) })
		for i := range qs {
			w.abort(&qs[i])
		}
		files := make([]*file, 0, len(w.handles))
		for _, f := range w.handles {
			if !f.dir {
				files = append(files, f)
			}
		}
		slices.SortFunc(files, func(a, b *file) int { return cmp.Compare(a.seq, b.seq) })
		for _, f := range files {
			op := Op{Kind: KindClose, Path: f.path, Mode: f.mode,
				BytesRead: f.read, BytesWritten: f.wrote, Aborted: true}
			f.contents(&op)
			w.report(op)
		}
	}
	w.release()
}

// release drops the tables and buffers.
func (w *Watcher) release() {
	w.pending, w.early, w.handles = byID[request]{}, byID[reply]{}, nil
	w.client.buf, w.server.buf = nil, nil
	w.retained = 0
}

// fail stops parsing, reporting why once.
func (w *Watcher) fail(reason string) {
	if w.dead {
		return
	}
	w.dead = true
	w.release()
	w.report(Op{Kind: KindUnparsed, Reason: reason})
}

// feed parses p as the continuation of stream s.
func (w *Watcher) feed(s *stream, fromClient bool, p []byte) {
	for !w.dead && !w.closed {
		if s.nhdr < len(s.hdr) {
			if len(p) == 0 {
				return
			}
			n := copy(s.hdr[s.nhdr:], p)
			s.nhdr += n
			p = p[n:]
			if s.nhdr < len(s.hdr) {
				return
			}
			length := binary.BigEndian.Uint32(s.hdr[:4])
			if length == 0 || length > maxPacket {
				w.fail(fmt.Sprintf("packet length %d out of range", length))
				return
			}
			s.typ = s.hdr[4]
			s.body = int(length) - 1
			s.left = s.body
			s.want = w.prefix(s, fromClient)
			s.buf = s.buf[:0]
			if w.dead {
				return
			}
		}
		if len(s.buf) < s.want {
			n := min(s.want-len(s.buf), len(p))
			s.buf = append(s.buf, p[:n]...)
			p = p[n:]
			s.left -= n
			if len(s.buf) == s.want {
				w.payload(s, fromClient)
			}
		} else {
			// The hot path: skip a payload, only hashing file data.
			n := min(s.left, len(p))
			if k := min(n, s.sinkLeft); k > 0 {
				s.sink.Write(p[:k])
				s.sinkLeft -= k
			}
			p = p[n:]
			s.left -= n
		}
		if s.left > 0 {
			if len(p) == 0 {
				return
			}
			continue
		}
		s.nhdr = 0
		if fromClient {
			w.clientPacket(s)
		} else {
			w.serverPacket(s)
		}
		s.sink, s.sinkLeft, s.unseen = nil, 0, false
	}
}

// prefix returns how much of the body of the packet whose header s holds
// must be buffered, or fails the session for a packet that cannot come
// next.
func (w *Watcher) prefix(s *stream, fromClient bool) int {
	first := !s.seen
	s.seen = true
	if fromClient {
		if first != (s.typ == fxpInit) {
			w.fail(fmt.Sprintf("client packet type %d where INIT is not expected or is missing", s.typ))
			return 0
		}
		switch s.typ {
		case fxpInit:
			return 0
		case fxpWrite:
			return min(s.body, writePrefix)
		case fxpFstat, fxpReaddir, fxpRealpath, fxpReadlink:
			return min(s.body, 4)
		case fxpOpen, fxpClose, fxpRead, fxpLstat, fxpSetstat, fxpFsetstat,
			fxpOpendir, fxpRemove, fxpMkdir, fxpRmdir, fxpStat, fxpRename,
			fxpSymlink, fxpExtended:
			return s.body
		default:
			// OpenSSH's sftp-server logs an unknown type and sends no
			// reply, so the packet is skipped the same way.
			return 0
		}
	}
	if first != (s.typ == fxpVersion) {
		w.fail(fmt.Sprintf("server packet type %d where VERSION is not expected or is missing", s.typ))
		return 0
	}
	switch s.typ {
	case fxpVersion, fxpName, fxpAttrs, fxpExtendedReply:
		return min(s.body, 4)
	case fxpStatus, fxpData:
		return min(s.body, 8)
	case fxpHandle:
		if s.body > 4+4+maxHandle {
			w.fail("handle reply too long")
			return 0
		}
		return s.body
	default:
		w.fail(fmt.Sprintf("unknown server packet type %d", s.typ))
		return 0
	}
}

// clientPacket handles a complete request.
func (w *Watcher) clientPacket(s *stream) {
	r := reader{b: s.buf}
	var q request
	switch s.typ {
	case fxpInit:
		return
	case fxpWrite:
		id := r.u32()
		q.kind = reqWrite
		q.h = w.handleArg(&r)
		r.u64()
		n := r.u32()
		// The data runs to at most the end of the packet; what the
		// server writes is the string, whatever trails it.
		if !r.bad && uint64(n) > uint64(s.body-r.off) {
			r.bad = true
		}
		q.n = int64(n)
		w.request(&r, id, &q)
		return
	case fxpOpen, fxpClose, fxpRead, fxpLstat, fxpFstat, fxpSetstat,
		fxpFsetstat, fxpOpendir, fxpReaddir, fxpRemove, fxpMkdir, fxpRmdir,
		fxpRealpath, fxpStat, fxpRename, fxpReadlink, fxpSymlink, fxpExtended:
	default:
		return
	}
	id := r.u32()
	switch s.typ {
	case fxpOpen:
		q.kind = reqOpen
		q.path = r.str()
		q.n = int64(r.u32())
		q.perm, q.hasPerm = r.attrs()
	case fxpOpendir:
		q.kind, q.path = reqOpendir, r.str()
	case fxpClose:
		q.kind, q.h = reqClose, w.handleArg(&r)
	case fxpRead:
		q.kind, q.h = reqRead, w.handleArg(&r)
		q.off, q.n = int64(r.u64()), int64(r.u32())
	case fxpLstat, fxpStat:
		q.kind, q.path = reqStat, r.str()
	case fxpSetstat:
		q.kind, q.path = reqSetstat, r.str()
		q.perm, q.hasPerm = r.attrs()
	case fxpFsetstat:
		q.kind, q.h = reqFsetstat, w.handleArg(&r)
		q.perm, q.hasPerm = r.attrs()
	case fxpRemove:
		q.kind, q.path = reqRemove, r.str()
	case fxpMkdir:
		q.kind, q.path = reqMkdir, r.str()
		q.perm, q.hasPerm = r.attrs()
	case fxpRmdir:
		q.kind, q.path = reqRmdir, r.str()
	case fxpRename:
		q.kind, q.path, q.newPath = reqRename, r.str(), r.str()
	case fxpSymlink:
		// OpenSSH sends the link's target first and the link's path
		// second, the reverse of the draft (PROTOCOL.sftp §4.1).
		q.kind, q.path, q.newPath = reqSymlink, r.str(), r.str()
	case fxpExtended:
		w.extended(&r, &q)
	}
	w.request(&r, id, &q)
}

// payload is called once the buffered prefix of a packet is complete:
// for a write, or a data reply, to a file being transferred in one pass,
// it points s.sink at the file's hash for the data that follows.
func (w *Watcher) payload(s *stream, fromClient bool) {
	r := reader{b: s.buf}
	switch {
	case fromClient && s.typ == fxpWrite:
		r.u32()
		h := makeHandle(w.handleBytes(&r))
		off, n := r.u64(), r.u32()
		f := w.file(&h)
		if r.bad || f == nil {
			return
		}
		sum := f.up.at(int64(off), int64(n))
		if sum == nil {
			return
		}
		// With a short handle the prefix holds the first bytes of data.
		k := min(len(s.buf)-r.off, int(n))
		sum.Write(s.buf[r.off : r.off+k])
		s.sink, s.sinkLeft = sum, int(n)-k
	case !fromClient && s.typ == fxpData:
		id, n := r.u32(), r.u32()
		q, ok := w.pending.peek(id)
		if r.bad {
			return
		}
		if !ok || q.kind != reqRead {
			s.unseen = n > 0
			return
		}
		if f := w.file(&q.h); f != nil {
			if sum := f.down.at(q.off, int64(n)); sum != nil {
				s.sink, s.sinkLeft = sum, int(n)
			}
		}
	}
}

// extended decodes an SSH_FXP_EXTENDED request after its id.
func (w *Watcher) extended(r *reader, q *request) {
	switch string(r.bytes()) {
	case extPosixRename:
		q.kind, q.path, q.newPath = reqRename, r.str(), r.str()
	case extHardlink:
		q.kind, q.path, q.newPath = reqLink, r.str(), r.str()
	case extLsetstat:
		q.kind, q.path = reqSetstat, r.str()
		q.perm, q.hasPerm = r.attrs()
	case extCopyData:
		// read-from-handle, read-from-offset, read-data-length,
		// write-to-handle, write-to-offset.
		q.kind = reqCopy
		q.path = string(w.handleBytes(r))
		r.u64()
		r.u64()
		q.newPath = string(w.handleBytes(r))
	default:
		q.kind = reqOther
	}
}

func (w *Watcher) handleBytes(r *reader) []byte {
	h := r.bytes()
	if len(h) > maxHandle {
		r.bad = true
	}
	return h
}

func (w *Watcher) handleArg(r *reader) handleRef { return makeHandle(w.handleBytes(r)) }

// request records request q with id, or completes it at once when its
// reply has already been observed.
func (w *Watcher) request(r *reader, id uint32, q *request) {
	if r.bad {
		w.fail("malformed client request")
		return
	}
	if rep, ok := w.early.pop(id); ok {
		w.retained -= len(rep.h.s)
		w.complete(q, &rep)
		return
	}
	if w.pending.len() >= maxPending {
		w.fail("too many requests awaiting replies")
		return
	}
	w.seq++
	q.seq = w.seq
	w.pending.push(id, *q)
	w.retain(q.size())
}

// retain accounts for n more bytes held, failing past the bound.
func (w *Watcher) retain(n int) {
	w.retained += n
	if w.retained > maxRetained {
		w.fail("too much state held")
	}
}

// byID holds values by request id, first in first out for each id: a
// client may reuse an id once its reply has arrived, and when one side is
// observed ahead of the other, a reused id's requests (or replies) wait
// together. The first value of an id is kept in a plain map, so that the
// usual case, one request in flight per id, does not allocate.
type byID[T any] struct {
	first map[uint32]T
	more  map[uint32][]T
	n     int
}

func newByID[T any]() byID[T] {
	return byID[T]{first: make(map[uint32]T), more: make(map[uint32][]T)}
}

func (m *byID[T]) len() int { return m.n }

// peek returns the value pop would return, without removing it.
func (m *byID[T]) peek(id uint32) (T, bool) {
	v, ok := m.first[id]
	return v, ok
}

func (m *byID[T]) push(id uint32, v T) {
	if _, ok := m.first[id]; ok {
		m.more[id] = append(m.more[id], v)
	} else {
		m.first[id] = v
	}
	m.n++
}

// pop removes and returns the oldest value of id.
func (m *byID[T]) pop(id uint32) (T, bool) {
	if m.n == 0 {
		var zero T
		return zero, false
	}
	v, ok := m.first[id]
	if !ok {
		return v, false
	}
	if rest := m.more[id]; len(rest) > 0 {
		m.first[id] = rest[0]
		if len(rest) == 1 {
			delete(m.more, id)
		} else {
			m.more[id] = rest[1:]
		}
	} else {
		delete(m.first, id)
	}
	m.n--
	return v, true
}

// all returns every value held.
func (m *byID[T]) all() []T {
	vs := make([]T, 0, m.n)
	for _, v := range m.first {
		vs = append(vs, v)
	}
	for _, rest := range m.more {
		vs = append(vs, rest...)
	}
	return vs
}
