package sftpwatch

import (
	"bytes"
	"encoding/hex"
	"strings"
)

// feedSink parses p as the continuation of the sink's answers.
func (s *SCP) feedSink(p []byte) {
	for len(p) > 0 && !s.dead && !s.closed {
		if !s.answering {
			switch p[0] {
			case 0:
				s.answer(scpAnswer{ok: true})
			case 1, 2:
				// \x02 is fatal to the source; either way a message
				// line follows.
				s.answering = true
				s.msg = s.msg[:0]
			default:
				s.fail("sink sent no scp answer")
				return
			}
			p = p[1:]
			continue
		}
		var complete bool
		if p, complete = s.appendLine(&s.msg, p, "scp message too long"); !complete {
			return
		}
		s.answering = false
		s.answer(scpAnswer{msg: string(s.msg)})
	}
}

// appendLine appends to *line the bytes of p up to its first newline and
// returns what follows that newline, and whether the line is complete. A
// line longer than maxLine fails the transfer with tooLong (and is not
// complete).
func (s *SCP) appendLine(line *[]byte, p []byte, tooLong string) (rest []byte, complete bool) {
	i := bytes.IndexByte(p, '\n')
	chunk := p
	if i >= 0 {
		chunk = p[:i]
	}
	if len(*line)+len(chunk) > maxLine {
		s.fail(tooLong)
		return nil, false
	}
	*line = append(*line, chunk...)
	if i < 0 {
		return nil, false
	}
	return p[i+1:], true
}

// push queues an item for the sink's answer, matching it at once with an
// answer already observed.
func (s *SCP) push(it scpItem) {
	if s.items.len() >= maxPending {
		s.fail("too many scp records awaiting answers")
		return
	}
	s.items.push(it)
	s.retain(len(it.name))
	s.match()
}

// answer queues one answer of the sink and matches it; if it releases
// source bytes held back, they are parsed now.
func (s *SCP) answer(a scpAnswer) {
	if s.answers.len() >= maxPending {
		s.fail("too many scp answers to unseen records")
		return
	}
	s.answers.push(a)
	s.retain(len(a.msg))
	s.match()
	if !s.dead && s.src == srcAck && s.cur.ack != 0 {
		s.afterAck()
		s.replay()
	}
}

// match pairs items with answers in order; notes need none.
func (s *SCP) match() {
	for !s.dead && s.items.len() > 0 {
		if s.items.peek().kind == itemNote {
			it := s.items.pop()
			s.retained -= len(it.name)
			s.note(&it)
			continue
		}
		if s.answers.len() == 0 {
			return
		}
		it, a := s.items.pop(), s.answers.pop()
		s.retained -= len(it.name) + len(a.msg)
		s.resolve(&it, &a)
	}
}

// note reports a source's error line: the status of the file it ends, or
// an error of its own.
func (s *SCP) note(it *scpItem) {
	if f := it.f; f != nil {
		if f.reported {
			return
		}
		f.reported = true
		s.report(SCPOp{Kind: KindFile, Direction: s.direction, Path: f.path,
			Mode: f.mode, Size: f.size, Bytes: f.bytes, Status: it.name, Partial: PartialFailed})
		return
	}
	s.report(SCPOp{Kind: KindError, Direction: s.direction, Status: it.name})
}

// resolve handles the sink's answer a to item it.
func (s *SCP) resolve(it *scpItem, a *scpAnswer) {
	status := StatusOK
	if !a.ok {
		status = a.msg
	}
	switch it.kind {
	case itemStart, itemT, itemE:
		if it.kind == itemE && a.ok && len(s.dirs) > 0 {
			last := s.dirs[len(s.dirs)-1]
			s.dirs = s.dirs[:len(s.dirs)-1]
			s.dirBytes -= len(last) + 1
		}
		if !a.ok {
			s.report(SCPOp{Kind: KindError, Direction: s.direction, Status: status})
		}
	case itemD:
		p := s.join(it.name)
		if a.ok {
			if s.dirBytes+len(it.name)+1 > maxPath {
				s.fail("scp directories nested too deep")
				return
			}
			s.dirs = append(s.dirs, it.name)
			s.dirBytes += len(it.name) + 1
		}
		s.report(SCPOp{Kind: KindDir, Direction: s.direction, Path: p, Mode: it.mode, Status: status})
	case itemC:
		f := it.f
		f.path = s.join(f.name)
		if a.ok {
			f.ack = 1
			return
		}
		f.ack = 2
		if f.guessed {
			s.fail("sink refused a file whose contents were assumed to follow")
			return
		}
		f.reported = true
		s.report(SCPOp{Kind: KindFile, Direction: s.direction, Path: f.path,
			Mode: f.mode, Size: f.size, Status: status, Partial: PartialRefused})
	case itemEnd:
		f := it.f
		if a.ok && f.srcFailed {
			status = f.srcErr
		}
		if f.reported {
			return
		}
		f.reported = true
		op := SCPOp{Kind: KindFile, Direction: s.direction, Path: f.path,
			Mode: f.mode, Size: f.size, Bytes: f.bytes, Status: status}
		if status == StatusOK && f.bytes == f.size {
			op.SHA256 = hex.EncodeToString(f.sum.Sum(nil))
		} else {
			op.Partial = PartialFailed
		}
		s.report(op)
	}
}

// join returns name inside the directories entered.
func (s *SCP) join(name string) string {
	if len(s.dirs) == 0 {
		return name
	}
	return strings.Join(s.dirs, "/") + "/" + name
}

// queue is a FIFO that reuses its storage when it drains, as it does after
// every answer in an scp exchange.
type queue[T any] struct {
	q    []T
	head int
}

func (q *queue[T]) len() int { return len(q.q) - q.head }

func (q *queue[T]) push(v T) {
	if q.head > 0 && q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
	q.q = append(q.q, v)
}

func (q *queue[T]) peek() T { return q.q[q.head] }

func (q *queue[T]) pop() T {
	var zero T
	v := q.q[q.head]
	q.q[q.head] = zero
	q.head++
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
	return v
}
