package sftpwatch

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// serverPacket handles a complete reply.
func (w *Watcher) serverPacket(s *stream) {
	r := reader{b: s.buf}
	if s.typ == fxpVersion {
		if v := r.u32(); r.bad || v != sftpVersion {
			w.fail(fmt.Sprintf("sftp version %d not supported", v))
		}
		return
	}
	rep := reply{typ: s.typ}
	id := r.u32()
	switch s.typ {
	case fxpStatus:
		rep.code = r.u32()
	case fxpHandle:
		rep.h = w.handleArg(&r)
	case fxpData:
		n := r.u32()
		if !r.bad && uint64(n) > uint64(s.body-r.off) {
			r.bad = true
		}
		rep.n = int64(n)
		rep.unseen = s.unseen
	}
	if r.bad {
		w.fail("malformed server reply")
		return
	}
	if q, ok := w.pending.pop(id); ok {
		w.retained -= q.size()
		w.complete(&q, &rep)
		return
	}
	if w.early.len() >= maxPending {
		w.fail("too many replies to unseen requests")
		return
	}
	w.early.push(id, rep)
	w.retain(len(rep.h.s))
}

// file returns the open file of a handle, or nil.
func (w *Watcher) file(h *handleRef) *file {
	if h.s != "" {
		return w.handles[h.s]
	}
	return w.handles[string(h.b[:h.n])]
}

func (h *handleRef) key() string {
	if h.s != "" {
		return h.s
	}
	return string(h.b[:h.n])
}

// complete handles request q answered by rep.
func (w *Watcher) complete(q *request, rep *reply) {
	status := StatusOK
	if rep.typ == fxpStatus {
		status = statusName(rep.code)
	}
	switch q.kind {
	case reqRead:
		f := w.file(&q.h)
		if rep.typ == fxpData {
			if f != nil {
				f.read += rep.n
				if rep.unseen {
					f.down.fail(PartialUnseen)
				}
			}
			return
		}
		if w.expect(q, rep, fxpStatus) && f != nil {
			switch {
			case rep.code == fxEOF && q.off >= f.down.next:
				f.down.eof = true
			case rep.code != fxEOF:
				f.down.fail(PartialFailed)
			}
		}
	case reqWrite:
		if w.expect(q, rep, fxpStatus) {
			if f := w.file(&q.h); f != nil {
				if rep.code == 0 {
					f.wrote += q.n
				} else {
					f.up.fail(PartialFailed)
				}
			}
		}
	case reqOther:
		// Any reply answers it.
	case reqOpen, reqOpendir:
		op := w.op(q)
		op.Status = status
		if rep.typ == fxpHandle {
			if !w.open(&rep.h, q, op.Mode) {
				return
			}
		} else if !w.expect(q, rep, fxpStatus) {
			return
		}
		w.report(op)
	case reqClose:
		if !w.expect(q, rep, fxpStatus) {
			return
		}
		// OpenSSH's sftp-server frees a handle whether or not close(2)
		// succeeded.
		w.closeHandle(q, Op{Status: status})
	case reqStat:
		if rep.typ == fxpAttrs || w.expect(q, rep, fxpStatus) {
			w.report(Op{Kind: KindStat, Path: q.path, Status: status})
		}
	default:
		if w.expect(q, rep, fxpStatus) {
			op := w.op(q)
			op.Status = status
			w.report(op)
		}
	}
}

// op describes a request that changes the file system.
func (w *Watcher) op(q *request) Op {
	op := Op{Path: q.path, NewPath: q.newPath}
	switch q.kind {
	case reqOpen:
		op.Kind, op.Mode, op.Perm = KindOpen, openMode(uint32(q.n)), perm(q)
	case reqOpendir:
		op.Kind = KindOpendir
	case reqStat:
		op.Kind = KindStat
	case reqSetstat:
		op.Kind, op.Perm = KindSetstat, perm(q)
	case reqFsetstat:
		op.Kind, op.Perm = KindSetstat, perm(q)
		if f := w.file(&q.h); f != nil {
			op.Path = f.path
		}
	case reqRemove:
		op.Kind = KindRemove
	case reqMkdir:
		op.Kind, op.Perm = KindMkdir, perm(q)
	case reqRmdir:
		op.Kind = KindRmdir
	case reqRename:
		op.Kind = KindRename
	case reqSymlink:
		op.Kind = KindSymlink
	case reqLink:
		op.Kind = KindLink
	case reqCopy:
		op.Kind, op.Path, op.NewPath = KindCopy, "", ""
		if f := w.handles[q.path]; f != nil {
			op.Path = f.path
		}
		if f := w.handles[q.newPath]; f != nil {
			op.NewPath = f.path
		}
	}
	return op
}

func perm(q *request) *uint32 {
	if !q.hasPerm {
		return nil
	}
	p := q.perm
	return &p
}

// expect reports whether rep has type typ, failing the session if not.
func (w *Watcher) expect(q *request, rep *reply, typ byte) bool {
	if rep.typ == typ {
		return true
	}
	w.fail(fmt.Sprintf("reply type %d does not answer request kind %d", rep.typ, q.kind))
	return false
}

// open registers the handle an open or opendir returned.
func (w *Watcher) open(h *handleRef, q *request, mode string) bool {
	if old := w.file(h); old != nil {
		// The server handed out a handle it had not closed; forget the
		// old file.
		w.drop(h, old)
	} else if len(w.handles) >= maxHandles {
		w.fail("too many open handles")
		return false
	}
	w.seq++
	f := &file{path: q.path, mode: mode, dir: q.kind == reqOpendir, seq: w.seq}
	key := h.key()
	w.handles[key] = f
	w.retain(len(key) + len(f.path))
	return !w.dead
}

// closeHandle forgets the handle q closes and reports the close of its
// file (not of a directory), with the outcome fields of done.
func (w *Watcher) closeHandle(q *request, done Op) {
	f := w.file(&q.h)
	if f == nil {
		return
	}
	w.drop(&q.h, f)
	if !f.dir {
		done.Kind, done.Path, done.Mode, done.BytesRead, done.BytesWritten = KindClose, f.path, f.mode, f.read, f.wrote
		f.contents(&done)
		w.report(done)
	}
}

// contents fills in the SHA256 and Size of a close, when f's contents were
// seen whole, or Partial.
func (f *file) contents(op *Op) {
	var c *content
	switch {
	case f.read == 0 && f.wrote == 0:
		return
	case op.Aborted:
		op.Partial = PartialAborted
		return
	case f.read > 0 && f.wrote > 0:
		op.Partial = PartialReadWrite
		return
	case f.wrote > 0:
		c = &f.up
		switch {
		case c.partial != "":
		case c.next != f.wrote:
			c.fail(PartialFailed)
		case !strings.Contains(f.mode, "truncate") && !strings.Contains(f.mode, "exclusive"):
			c.fail(PartialNotTruncated)
		}
	default:
		c = &f.down
		switch {
		case c.partial != "":
		case !c.eof:
			c.fail(PartialNotToEnd)
		case c.next != f.read:
			c.fail(PartialUnseen)
		}
	}
	if c.partial != "" {
		op.Partial = c.partial
		return
	}
	op.SHA256, op.Size = hex.EncodeToString(c.sum.Sum(nil)), c.next
}

// drop forgets handle h of file f.
func (w *Watcher) drop(h *handleRef, f *file) {
	key := h.key()
	delete(w.handles, key)
	w.retained -= len(key) + len(f.path)
}

// abort reports, from Close, a request that got no reply.
func (w *Watcher) abort(q *request) {
	switch q.kind {
	case reqOther, reqRead, reqWrite:
		return
	case reqClose:
		w.closeHandle(q, Op{Aborted: true})
		return
	}
	op := w.op(q)
	op.Aborted = true
	w.report(op)
}
