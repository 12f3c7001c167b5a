package sftpwatch

import (
	"crypto/sha256"
	"hash"
	"path"
	"strings"
	"sync"
)

// Operation kinds reported by an SCP in SCPOp.Kind; KindUnparsed is shared
// with Watcher.
const (
	// KindFile is a file transferred (a C record).
	KindFile = "file"
	// KindDir is a directory entered (a D record, scp -r).
	KindDir = "dir"
	// KindError is an error message that belongs to no file or directory:
	// the source's (such as a download of a missing file), or the sink's
	// refusal to start or of a times record.
	KindError = "error"
)

// Directions of an scp transfer, in SCPOp.Direction.
const (
	// Upload is the person sending files to the instance (scp -t there).
	Upload = "upload"
	// Download is the person fetching files from the instance (scp -f).
	Download = "download"
)

// SCPOp is one operation of a legacy scp transfer.
type SCPOp struct {
	// Kind is KindFile, KindDir, KindError or KindUnparsed.
	Kind string `json:"kind"`
	// Direction is Upload or Download.
	Direction string `json:"direction"`
	// Path is the name of the file or directory relative to the transfer's
	// root: the names of the directories entered, joined by "/", then the
	// record's own name. The root is the command's target for an upload
	// (or, for a single file sent to a file name, the target itself) and
	// the directory of the command's source argument for a download.
	Path string `json:"path,omitempty"`
	// Mode is the permission bits the record carried.
	Mode uint32 `json:"mode,omitempty"`
	// Size is the file size the record announced.
	Size int64 `json:"size,omitempty"`
	// Bytes is the file content that passed; equal to Size unless the
	// transfer was refused or cut short.
	Bytes int64 `json:"bytes,omitempty"`
	// Status is "ok" or an error message (the text of an scp \x01 or \x02
	// reply, such as "scp: /tmp/x: Permission denied"). It is empty when
	// Aborted.
	Status string `json:"status,omitempty"`
	// Aborted reports that the session ended in the middle of this file.
	Aborted bool `json:"aborted,omitempty"`
	// Reason says, for "unparsed", why the SCP stopped.
	Reason string `json:"reason,omitempty"`
	// SHA256 is, for a file whose Size bytes all passed and that both
	// sides reported done, the SHA-256 (hex) of its contents. Partial
	// says, for any other file, why its contents were not seen whole.
	SHA256  string `json:"sha256,omitempty"`
	Partial string `json:"partial,omitempty"`
}

// Values of SCPOp.Partial and Op.Partial.
const (
	PartialAborted       = "the session ended during the transfer"
	PartialRefused       = "refused"
	PartialFailed        = "the transfer failed"
	PartialNotSequential = "not read or written in one pass from the start"
	PartialNotToEnd      = "not read to the end of the file"
	PartialNotTruncated  = "written without truncating the file: it may hold more"
	PartialReadWrite     = "read and written through one handle"
	PartialUnseen        = "contents passed that the observer could not follow"
)

// Bounds of an SCP, on top of the shared maxPending and maxRetained.
const (
	// maxLine bounds a control record or message line. OpenSSH's scp
	// reads records into 2 KiB buffers; messages quote paths.
	maxLine = 16 << 10
	// maxLookahead bounds the source bytes kept while the sink's answer
	// to a C record has not been observed yet.
	maxLookahead = 64 << 10
	// maxPath bounds the path of the directories entered (Linux's
	// PATH_MAX is 4 KiB).
	maxPath = 8 << 10
)

// SCP follows one legacy scp transfer (the rcp-style protocol that
// `scp -O` and older scp speak, run on the instance as `scp -t` or
// `scp -f`) and reports the files and directories transferred.
//
// The source (the person for an upload, the instance for a download) sends
// records — C (file), D (directory), E (end of directory), T (times) and
// \x01/\x02 error lines — and file contents; the sink answers each record
// and each file's end with \0, or \x01/\x02 and a message. Contents are
// skipped unbuffered.
//
// Whether a file's contents follow its C record depends on the sink's
// answer. When the answer has not been observed yet (the splice observed
// the source's bytes first), up to 64 KiB of the source is held back until
// it is; beyond that the contents are assumed to follow, and should the
// answer then turn out to be a refusal the SCP reports "unparsed". So the
// answer must be observed no later than about 64 KiB of the source's
// further bytes, which holds whenever a splice observes bytes before
// (or as) it forwards them.
//
// FromClient and FromServer may be called concurrently with each other
// and with Close.
type SCP struct {
	report    func(SCPOp)
	direction string

	mu sync.Mutex // protects everything below, and serialises report

	// The source stream.
	src       srcState
	line      []byte // the record being read
	look      []byte // source bytes held while an answer is unknown
	spare     []byte // look's other buffer
	cur       *scpFile
	remaining int64 // content bytes of cur still to come

	// The sink's answers.
	answering bool   // reading an answer's message line
	msg       []byte // the message line being read
	srcFatal  bool   // the source's error after a file is a \x02

	// items awaits answers in order; answers holds the answers no item
	// has claimed yet (the sink's side was observed first).
	items   queue[scpItem]
	answers queue[scpAnswer]
	// dirs are the names of the directories entered; dirBytes is the
	// length of their path.
	dirs     []string
	dirBytes int
	// retained counts bytes held in items and answers.
	retained     int
	dead, closed bool
}

type srcState uint8

const (
	srcLine     srcState = iota // reading a record
	srcAck                      // waiting for the answer to cur's C record
	srcContent                  // skipping cur's contents
	srcTrail                    // reading the byte after cur's contents
	srcTrailMsg                 // reading the source's error after cur's contents
	srcDone                     // the source sent a fatal error
)

// scpFile is a file announced by a C record.
type scpFile struct {
	name  string // as the C record gave it
	path  string // inside the directories entered, once the sink answered
	mode  uint32
	size  int64
	bytes int64
	// sum hashes the contents as they pass.
	sum hash.Hash
	// ack is the sink's answer to the C record: 0 unknown, 1 yes, 2 no.
	ack uint8
	// guessed is set when contents were assumed to follow before the
	// answer was observed.
	guessed bool
	// srcErr is the source's error after the contents, if srcFailed.
	srcErr    string
	srcFailed bool
	reported  bool
}

type itemKind uint8

const (
	itemStart itemKind = iota // the sink's first answer
	itemC
	itemEnd // a file's end
	itemD
	itemE
	itemT
	// itemNote is a source's error line; the sink does not answer it, but
	// it waits its turn to be reported in order.
	itemNote
)

// scpItem is something of the source's that the sink answers.
type scpItem struct {
	kind itemKind
	f    *scpFile
	name string // of a D record, or a note's message
	mode uint32
}

// scpAnswer is one answer of the sink.
type scpAnswer struct {
	ok  bool
	msg string
}

// NewSCP returns an SCP for a session running command on the instance,
// calling report for each operation, and whether command is an scp sink
// (`scp … -t …`, an upload) or source (`scp … -f …`, a download). The
// command is split like a POSIX shell would split a simple command; the
// program must be named scp (any directory).
//
// report is called as Watcher's is: synchronously, with the SCP's lock
// held, never concurrently with itself; it must not call the SCP's
// methods.
func NewSCP(command string, report func(SCPOp)) (*SCP, bool) {
	dir, ok := scpDirection(command)
	if !ok {
		return nil, false
	}
	s := &SCP{report: report, direction: dir}
	// The sink speaks first: one answer before any record.
	s.items.push(scpItem{kind: itemStart})
	return s, true
}

// scpDirection returns the direction of an scp -t or scp -f command line.
func scpDirection(command string) (string, bool) {
	args, ok := shellSplit(command)
	if !ok || len(args) == 0 || path.Base(args[0]) != "scp" {
		return "", false
	}
	var sink, source bool
args:
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			switch c := a[j]; {
			case c == 't':
				sink = true
			case c == 'f':
				source = true
			case strings.IndexByte("DFJMPSXcilo", c) >= 0:
				// An option with an argument: the rest of this word, or
				// the next word.
				if j == len(a)-1 {
					i++
				}
				continue args
			}
		}
	}
	switch {
	case sink && !source:
		return Upload, true
	case source && !sink:
		return Download, true
	}
	return "", false
}

// shellSplit splits a command line into words the way a POSIX shell splits
// a simple command without expansions: blanks separate words, and single
// quotes, double quotes and backslashes quote. It reports false for an
// unterminated quote.
func shellSplit(s string) ([]string, bool) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					w.WriteByte(s[i])
				}
			}
		case c == '\'':
			inWord = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, false
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, false
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
		default:
			inWord = true
			w.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, true
}

// FromClient observes bytes the person sent to the instance. It does not
// retain p.
func (s *SCP) FromClient(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.direction == Upload {
		s.feedSource(p)
	} else {
		s.feedSink(p)
	}
}

// FromServer observes bytes the instance sent to the person. It does not
// retain p.
func (s *SCP) FromServer(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.direction == Upload {
		s.feedSink(p)
	} else {
		s.feedSource(p)
	}
}

// Close ends the session: a file announced but not finished is reported
// with Aborted set, and errors the source sent are reported if they were
// still waiting for earlier answers. Bytes observed after Close are ignored. Close may be
// called more than once.
func (s *SCP) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if !s.dead {
		for i := s.items.head; i < len(s.items.q); i++ {
			switch it := &s.items.q[i]; {
			case it.kind == itemNote:
				s.note(it)
			case it.f != nil:
				s.abort(it.f)
			}
		}
		if s.cur != nil {
			s.abort(s.cur)
		}
	}
	s.release()
}

func (s *SCP) abort(f *scpFile) {
	if f.reported {
		return
	}
	f.reported = true
	if f.path == "" {
		f.path = s.join(f.name)
	}
	s.report(SCPOp{Kind: KindFile, Direction: s.direction, Path: f.path,
		Mode: f.mode, Size: f.size, Bytes: f.bytes, Aborted: true, Partial: PartialAborted})
}

func (s *SCP) release() {
	s.line, s.look, s.spare, s.msg = nil, nil, nil, nil
	s.items, s.answers = queue[scpItem]{}, queue[scpAnswer]{}
	s.dirs, s.dirBytes, s.cur = nil, 0, nil
	s.retained = 0
}

// fail stops parsing, reporting why once.
func (s *SCP) fail(reason string) {
	if s.dead {
		return
	}
	s.dead = true
	s.release()
	s.report(SCPOp{Kind: KindUnparsed, Direction: s.direction, Reason: reason})
}

func (s *SCP) retain(n int) {
	s.retained += n
	if s.retained > maxRetained {
		s.fail("too much state held")
	}
}

// feedSource parses p as the continuation of the source's stream.
func (s *SCP) feedSource(p []byte) {
	for len(p) > 0 && !s.dead && !s.closed {
		switch s.src {
		case srcDone:
			return
		case srcAck:
			if len(s.look)+len(p) <= maxLookahead {
				s.look = append(s.look, p...)
				return
			}
			// Too far ahead of the sink: assume it said yes, as it does
			// unless the file cannot be written.
			s.cur.guessed = true
			s.afterAck()
			s.replay()
		case srcContent:
			n := int64(len(p))
			if n > s.remaining {
				n = s.remaining
			}
			s.cur.bytes += n
			s.cur.sum.Write(p[:n])
			s.remaining -= n
			p = p[n:]
			if s.remaining == 0 {
				s.src = srcTrail
			}
		case srcTrail:
			switch p[0] {
			case 0:
				s.endFile()
			case 1, 2:
				s.srcFatal = p[0] == 2
				s.line = s.line[:0]
				s.src = srcTrailMsg
			default:
				s.fail("no status byte after file contents")
				return
			}
			p = p[1:]
		case srcLine, srcTrailMsg:
			if len(s.line) == 0 && len(p) > 0 && p[0] != '\n' && s.src == srcLine && !validRecordStart(p[0]) {
				s.fail("source sent no scp record")
				return
			}
			var complete bool
			if p, complete = s.appendLine(&s.line, p, "scp record too long"); !complete {
				return
			}
			if s.src == srcTrailMsg {
				s.trailMessage()
			} else {
				s.record()
			}
		}
	}
}

func validRecordStart(c byte) bool {
	return c == 'C' || c == 'D' || c == 'E' || c == 'T' || c == 1 || c == 2
}

// replay feeds the held-back source bytes through the parser again.
func (s *SCP) replay() {
	held := s.look
	s.look = s.spare[:0]
	s.spare = nil
	s.feedSource(held)
	if !s.dead && !s.closed {
		s.spare = held[:0]
	}
}

// afterAck moves the source parser past cur's C record once the answer is
// known (or assumed).
func (s *SCP) afterAck() {
	f := s.cur
	switch {
	case f.ack == 2:
		s.src = srcLine
	case f.size == 0:
		s.src = srcTrail
	default:
		s.src, s.remaining = srcContent, f.size
	}
}

// endFile handles the end of cur's contents; the sink answers it.
func (s *SCP) endFile() {
	s.src = srcLine
	s.push(scpItem{kind: itemEnd, f: s.cur})
}

// trailMessage handles the source's error line after a file's contents:
// OpenSSH's scp keeps sending a file it failed to read, then says so.
func (s *SCP) trailMessage() {
	msg := string(s.line)
	s.line = s.line[:0]
	if s.srcFatal {
		// The sink exits on \x02 without answering.
		s.src = srcDone
		s.push(scpItem{kind: itemNote, f: s.cur, name: msg})
		return
	}
	s.cur.srcErr, s.cur.srcFailed = msg, true
	s.endFile()
}

// record handles a complete record line in s.line.
func (s *SCP) record() {
	line := s.line
	s.line = s.line[:0]
	if len(line) == 0 {
		s.fail("empty scp record")
		return
	}
	switch line[0] {
	case 1, 2:
		// The source's error: no answer follows.
		s.push(scpItem{kind: itemNote, name: string(line[1:])})
		if line[0] == 2 {
			s.src = srcDone
		}
	case 'E':
		s.push(scpItem{kind: itemE})
	case 'T':
		s.push(scpItem{kind: itemT})
	case 'C', 'D':
		mode, size, name, ok := parseRecord(line)
		if !ok {
			s.fail("malformed scp record")
			return
		}
		if line[0] == 'D' {
			s.push(scpItem{kind: itemD, name: name, mode: mode})
			return
		}
		f := &scpFile{name: name, mode: mode, size: size, sum: sha256.New()}
		s.cur = f
		s.push(scpItem{kind: itemC, f: f})
		if s.dead {
			return
		}
		if f.ack == 0 {
			s.src = srcAck
		} else {
			s.afterAck()
		}
	}
}

// parseRecord parses "Cmmmm size name" or "Dmmmm 0 name" as OpenSSH's
// scp sink does: four octal digits, a space, decimal digits, a space and a
// non-empty name.
func parseRecord(line []byte) (mode uint32, size int64, name string, ok bool) {
	if len(line) < 8 || line[5] != ' ' {
		return 0, 0, "", false
	}
	for _, c := range line[1:5] {
		if c < '0' || c > '7' {
			return 0, 0, "", false
		}
		mode = mode<<3 | uint32(c-'0')
	}
	i := 6
	for ; i < len(line) && line[i] >= '0' && line[i] <= '9'; i++ {
		if size > (1<<62)/10 {
			return 0, 0, "", false
		}
		size = size*10 + int64(line[i]-'0')
	}
	if i == 6 || i >= len(line)-1 || line[i] != ' ' {
		return 0, 0, "", false
	}
	return mode, size, string(line[i+1:]), true
}
