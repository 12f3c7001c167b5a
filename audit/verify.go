package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// VerifyOptions are what Verify checks the log against.
type VerifyOptions struct {
	// PublicKey is the bastion's audit signing key. If nil, checkpoints
	// are checked against the key the first one names, which proves the
	// log was not rewritten after it but not who wrote it.
	PublicKey ed25519.PublicKey
	// Recordings, if set, is a folder holding the recordings the log
	// sealed: each is checked against its recording_sealed event.
	Recordings string
}

// Finding is something Verify found, at a line of a file.
type Finding struct {
	File string
	Line int
	Text string
}

func (f Finding) String() string {
	if f.Line == 0 {
		return fmt.Sprintf("%s: %s", f.File, f.Text)
	}
	return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Text)
}

// Report is the result of Verify.
type Report struct {
	Files []string
	// Events counts the lines of the chain; Legacy the lines before it
	// written by a bastion without the chain.
	Events, Legacy    int
	FirstSeq, LastSeq int64
	// Checkpoints counts the checkpoints whose signature verified, with
	// the key of fingerprint SigningKey; KeyGiven says the key came from
	// VerifyOptions, not from the log.
	Checkpoints int
	SigningKey  string
	KeyGiven    bool
	// Covered is the last checkpoint that verified; Uncovered counts
	// the events after it, which no signature covers yet.
	Covered   *Finding
	Uncovered int
	// Recordings counts the recordings checked against their manifests;
	// Unsealed the recording files in the folder that no recording_sealed
	// event of the log names (a live session, one cut by a crash, or a
	// file from elsewhere).
	Recordings, Unsealed int
	// Notes are what is worth knowing but breaks nothing (a torn line
	// chained over, a chain that began in an earlier file).
	Notes []Finding
	// Problems are the failures: the first break of the chain or of a
	// signature, and each recording that does not match. Empty when the
	// log verifies.
	Problems []Finding
}

// OK reports whether the log verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// WriteSummary writes the report for a person: the problems first, then
// what holds.
func (r *Report) WriteSummary(w io.Writer) {
	for _, p := range r.Problems {
		fmt.Fprintf(w, "FAIL %s\n", p)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note %s\n", n)
	}
	state := "intact"
	if !r.OK() {
		state = "NOT intact"
	}
	fmt.Fprintf(w, "chain %s: %d events (seq %d to %d) in %d file(s)", state, r.Events, r.FirstSeq, r.LastSeq, len(r.Files))
	if r.Legacy > 0 {
		fmt.Fprintf(w, ", after %d unchained lines", r.Legacy)
	}
	fmt.Fprintln(w)
	switch {
	case r.Checkpoints == 0:
		fmt.Fprintln(w, "no signed checkpoint: no event is covered by a signature")
	case r.KeyGiven:
		fmt.Fprintf(w, "%d checkpoints verified with the given key %s\n", r.Checkpoints, r.SigningKey)
	default:
		fmt.Fprintf(w, "%d checkpoints verified with the key the log names, %s (pass --pubkey to check it is the bastion's)\n", r.Checkpoints, r.SigningKey)
	}
	if r.Covered != nil {
		fmt.Fprintf(w, "signed up to %s:%d (%s)\n", r.Covered.File, r.Covered.Line, r.Covered.Text)
	}
	if r.Uncovered > 0 {
		fmt.Fprintf(w, "%d events after the last checkpoint are not yet covered by a signature\n", r.Uncovered)
	}
	if r.Recordings > 0 {
		fmt.Fprintf(w, "%d recordings checked against their manifests\n", r.Recordings)
	}
	if r.Unsealed > 0 {
		fmt.Fprintf(w, "%d recording files have no manifest in this log (see the notes)\n", r.Unsealed)
	}
}

// chainedLine is the part of an event Verify reads.
type chainedLine struct {
	Seq        int64  `json:"seq"`
	Prev       string `json:"prev"`
	Type       string `json:"type"`
	Reason     string `json:"reason"`
	Error      string `json:"error"`
	Signature  string `json:"signature"`
	SigningKey string `json:"signing_key"`
	TornBytes  int64  `json:"torn_bytes"`
	Recording  string `json:"recording"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
}

// rawLine is one line of a file as read: data is nil for a line longer
// than any event, whose hash is still known.
type rawLine struct {
	file  string
	num   int
	data  []byte
	size  int64
	hash  [32]byte
	ended bool // ended with a newline
	ev    *chainedLine
}

func (l *rawLine) at() Finding { return Finding{File: l.file, Line: l.num} }

// lineReader reads the lines of the files in order, with one line of
// look-ahead, holding at most one line of MaxEventLen bytes each.
type lineReader struct {
	files []string
	cur   int
	f     io.Closer
	br    *bufio.Reader
	num   int
	peek  *rawLine
	err   error
}

func (r *lineReader) open() bool {
	for r.br == nil {
		if r.cur >= len(r.files) {
			return false
		}
		f, err := os.Open(r.files[r.cur])
		if err != nil {
			r.err = fmt.Errorf("opening %s: %w", r.files[r.cur], err)
			return false
		}
		var rd io.Reader = f
		if strings.HasSuffix(r.files[r.cur], ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				r.err = fmt.Errorf("reading %s: %w", r.files[r.cur], err)
				return false
			}
			rd = zr
		}
		r.f, r.br, r.num = f, bufio.NewReaderSize(rd, 64<<10), 0
	}
	return true
}

// next returns the next line, or nil at the end (r.err tells why).
func (r *lineReader) next() *rawLine {
	if p := r.peek; p != nil {
		r.peek = nil
		return p
	}
	for r.open() {
		l, err := r.read()
		if l != nil {
			return l
		}
		r.f.Close()
		r.br = nil
		if err != nil && err != io.EOF {
			r.err = fmt.Errorf("reading %s: %w", r.files[r.cur], err)
			return nil
		}
		r.cur++
	}
	return nil
}

// peekNext returns the line next will return, within the same file.
func (r *lineReader) peekNext(file string) *rawLine {
	if r.peek == nil && r.br != nil {
		l, err := r.read()
		if l == nil && err != nil && err != io.EOF {
			r.err = err
		}
		r.peek = l
	}
	if r.peek != nil && r.peek.file == file {
		return r.peek
	}
	return nil
}

func (r *lineReader) read() (*rawLine, error) {
	h := sha256.New()
	var data []byte
	var size int64
	for {
		chunk, err := r.br.ReadSlice('\n')
		ended := err == nil
		body := chunk
		if ended {
			body = chunk[:len(chunk)-1]
		}
		h.Write(body)
		size += int64(len(body))
		if size <= int64(MaxEventLen) {
			data = append(data, body...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if size == 0 && !ended {
			return nil, err
		}
		r.num++
		l := &rawLine{file: r.files[r.cur], num: r.num, size: size, ended: ended}
		h.Sum(l.hash[:0])
		if size <= int64(MaxEventLen) {
			l.data = data
			var ev chainedLine
			if json.Unmarshal(data, &ev) == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte{'{'}) {
				l.ev = &ev
			}
		}
		return l, nil
	}
}

// sealed is a recording_sealed event.
type sealed struct {
	at   Finding
	name string
	size int64
	sum  string
}

// Verify checks the audit files, given oldest first, as one chain: every
// line's seq and prev, and every checkpoint's signature. It stops at the
// first break, naming the line where it shows. With opt.Recordings it
// checks each sealed recording found there. The error is for files it
// could not read; what it found is in the report.
func Verify(files []string, opt VerifyOptions) (*Report, error) {
	rep := &Report{Files: files, KeyGiven: opt.PublicKey != nil}
	key := opt.PublicKey
	if key != nil {
		rep.SigningKey = Fingerprint(key)
	}
	// The head file beside the newest file: the last checkpoint the
	// bastion wrote there. Read before the log: it is replaced after
	// its line reached the log.
	var headSeq int64
	var headHash [32]byte
	var headLine []byte
	if len(files) > 0 {
		if data, err := os.ReadFile(files[len(files)-1] + HeadSuffix); err == nil && len(data) <= MaxEventLen+1 {
			headLine = bytes.TrimSuffix(data, []byte{'\n'})
			headSeq, headHash = lineSeq(headLine), sha256.Sum256(headLine)
		}
	}
	r := &lineReader{files: files}
	var (
		started  bool
		last     *rawLine
		lastSeq  int64
		lastHash [32]byte
		seals    []sealed
		headSeen bool
	)
	fail := func(at Finding, format string, args ...any) {
		at.Text = fmt.Sprintf(format, args...)
		rep.Problems = append(rep.Problems, at)
	}
	note := func(at Finding, format string, args ...any) {
		at.Text = fmt.Sprintf(format, args...)
		rep.Notes = append(rep.Notes, at)
	}
lines:
	for {
		l := r.next()
		if l == nil {
			break
		}
		ev := l.ev
		if ev == nil || ev.Seq == 0 {
			switch {
			case ev == nil && !l.ended && r.peekNext(l.file) == nil && r.cur >= len(files)-1:
				note(l.at(), "the last line is torn (%d bytes, no newline): the event being written when the bastion stopped, or still being written", l.size)
				break lines
			case ev == nil:
				if n := r.peekNext(l.file); n != nil && n.ev != nil && n.ev.Type == TypeAuditCheckpoint &&
					n.ev.TornBytes == l.size && n.ev.Prev == hex.EncodeToString(l.hash[:]) && (!started || n.ev.Seq == lastSeq+1) {
					note(l.at(), "a torn event (%d bytes), cut off when the bastion stopped; the bastion chained over it at line %d", l.size, n.num)
					last, lastHash = l, l.hash
					continue
				}
				fail(l.at(), "not an audit event (%d bytes): a line inserted, or changed so that it no longer parses", l.size)
				break lines
			case started:
				fail(l.at(), "no seq: a line inserted, or not written by the bastion")
				break lines
			default:
				rep.Legacy++
				last, lastHash = l, l.hash
				continue
			}
		}
		switch {
		case !started:
			started = true
			rep.FirstSeq = ev.Seq
			switch {
			case ev.Prev == genesisPrev:
				if ev.Seq != 1 {
					fail(l.at(), "starts a chain at seq %d, not 1", ev.Seq)
					break lines
				}
			case last != nil:
				if ev.Prev != hex.EncodeToString(lastHash[:]) {
					fail(last.at(), "changed: its SHA-256 is not the prev that line %d names", l.num)
					break lines
				}
			default:
				note(l.at(), "the chain begins at seq %d, going on from a line in an earlier file not given here: what came before is not checked", ev.Seq)
			}
		case ev.Seq == lastSeq+1 && ev.Prev == hex.EncodeToString(lastHash[:]):
		case ev.Seq == 1 && ev.Prev == genesisPrev:
			fail(l.at(), "the chain starts again (seq 1) instead of going on from seq %d at %s: the lines after it were removed, or the log was replaced", lastSeq, last.at())
			break lines
		case ev.Seq == lastSeq+1:
			if last.ev == nil {
				fail(last.at(), "not an audit event (%d bytes) and its SHA-256 is not the prev that line %d names", last.size, l.num)
			} else {
				fail(last.at(), "changed: its SHA-256 is not the prev that %s names", l.at())
			}
			break lines
		case ev.Seq > lastSeq+1:
			if n := r.peekNext(l.file); n != nil && n.ev != nil && n.ev.Seq == lastSeq+1 {
				fail(l.at(), "out of order: seq %d comes before seq %d (lines swapped or moved)", ev.Seq, lastSeq+1)
			} else {
				fail(l.at(), "seq %d follows seq %d: %d line(s) removed before this line", ev.Seq, lastSeq, ev.Seq-lastSeq-1)
			}
			break lines
		default:
			fail(l.at(), "seq %d does not follow seq %d: a line inserted, repeated or moved here", ev.Seq, lastSeq)
			break lines
		}
		last, lastSeq, lastHash = l, ev.Seq, l.hash
		rep.Events++
		rep.LastSeq = ev.Seq
		if headSeq != 0 && ev.Seq == headSeq {
			headSeen = true
			if l.hash != headHash {
				fail(l.at(), "differs from the checkpoint the bastion wrote in %s: the log was rewritten", filepath.Base(l.file)+HeadSuffix)
				break lines
			}
		}
		switch ev.Type {
		case TypeAuditCheckpoint:
			if ev.Signature == "" {
				if ev.Error != "" {
					note(l.at(), "the bastion found at start: %s", ev.Error)
				}
				rep.Uncovered++
				continue
			}
			pub, err := ParsePublicKey(ev.SigningKey)
			if err != nil {
				fail(l.at(), "checkpoint names no usable signing key: %v", err)
				break lines
			}
			if key == nil {
				key, rep.SigningKey = pub, Fingerprint(pub)
			}
			if !pub.Equal(key) {
				fail(l.at(), "checkpoint signed by another key (%s), not %s", Fingerprint(pub), rep.SigningKey)
				break lines
			}
			sig, err := base64.StdEncoding.DecodeString(ev.Signature)
			if err != nil || !ed25519.Verify(key, CheckpointMessage(ev.Seq, ev.Prev), sig) {
				fail(l.at(), "checkpoint signature does not verify with %s", rep.SigningKey)
				break lines
			}
			if ev.Error != "" {
				note(l.at(), "the bastion found at start: %s", ev.Error)
			}
			rep.Checkpoints++
			rep.Covered = &Finding{File: l.file, Line: l.num, Text: fmt.Sprintf("seq %d", ev.Seq)}
			rep.Uncovered = 0
		case TypeRecordingSealed:
			seals = append(seals, sealed{at: l.at(), name: ev.Recording, size: ev.Size, sum: ev.SHA256})
			rep.Uncovered++
		default:
			rep.Uncovered++
		}
	}
	if r.err != nil {
		return rep, r.err
	}
	if rep.OK() && headSeq > rep.LastSeq && !headSeen {
		if headCheckpointValid(headLine, key) {
			at := Finding{File: files[len(files)-1]}
			if last != nil {
				at = last.at()
			}
			fail(at, "the log ends at seq %d, but the bastion wrote checkpoint seq %d (%s): the lines after this one were removed", rep.LastSeq, headSeq, filepath.Base(at.File)+HeadSuffix)
		}
	}
	if opt.Recordings != "" {
		checkRecordings(rep, opt.Recordings, seals)
	}
	return rep, nil
}

// headCheckpointValid reports whether line is a checkpoint signed by key
// (or, without a key, by the key it names).
func headCheckpointValid(line []byte, key ed25519.PublicKey) bool {
	var ev chainedLine
	if json.Unmarshal(line, &ev) != nil || ev.Type != TypeAuditCheckpoint {
		return false
	}
	pub, err := ParsePublicKey(ev.SigningKey)
	if err != nil || (key != nil && !pub.Equal(key)) {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(ev.Signature)
	return err == nil && ed25519.Verify(pub, CheckpointMessage(ev.Seq, ev.Prev), sig)
}

// checkRecordings compares each sealed recording with the file of its name
// in dir: size and SHA-256.
func checkRecordings(rep *Report, dir string, seals []sealed) {
	defer noteUnsealed(rep, dir, seals)
	for _, s := range seals {
		at := s.at
		name := filepath.Base(s.name)
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			at.Text = fmt.Sprintf("recording %s, sealed here, is not in %s", name, dir)
			if !errors.Is(err, os.ErrNotExist) {
				at.Text = fmt.Sprintf("recording %s, sealed here: %v", name, err)
			}
			rep.Problems = append(rep.Problems, at)
			continue
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		switch {
		case err != nil:
			at.Text = fmt.Sprintf("reading recording %s: %v", name, err)
		case n != s.size:
			at.Text = fmt.Sprintf("recording %s is %d bytes, its manifest here says %d: changed since it was sealed", name, n, s.size)
		case hex.EncodeToString(h.Sum(nil)) != s.sum:
			at.Text = fmt.Sprintf("recording %s: its SHA-256 differs from its manifest here: changed since it was sealed", name)
		default:
			rep.Recordings++
			continue
		}
		rep.Problems = append(rep.Problems, at)
	}
}

// maxUnsealedNamed bounds the unsealed recordings named one by one.
const maxUnsealedNamed = 10

// noteUnsealed counts the recording files in dir (".cast", ".cast.age")
// that no seal names, and notes the first maxUnsealedNamed of them: no
// manifest vouches for them. They break nothing: a session still live, or
// cut by a crash, never sealed its recording.
func noteUnsealed(rep *Report, dir string, seals []sealed) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // checkRecordings reported each missing file already
	}
	named := make(map[string]bool, len(seals))
	for _, s := range seals {
		named[filepath.Base(s.name)] = true
	}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || named[n] || !(strings.HasSuffix(n, ".cast") || strings.HasSuffix(n, ".cast.age")) {
			continue
		}
		rep.Unsealed++
		if rep.Unsealed <= maxUnsealedNamed {
			rep.Notes = append(rep.Notes, Finding{File: filepath.Join(dir, n), Text: "no recording_sealed event of this log names it (a live session, one cut by a crash, or a file from elsewhere)"})
		}
	}
	if extra := rep.Unsealed - maxUnsealedNamed; extra > 0 {
		rep.Notes = append(rep.Notes, Finding{File: dir, Text: fmt.Sprintf("and %d more recording files without a manifest", extra)})
	}
}
