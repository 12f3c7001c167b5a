package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// The hash chain. Every line carries seq (1, 2, 3, … across restarts and
// rotated files) and prev, the SHA-256 of the bytes of the line before it
// without its newline (64 zeros before the first line of a chain). A line
// removed, added, changed or moved breaks the chain at the next line; a
// signed audit_checkpoint, written at most CheckpointInterval or
// CheckpointEvents after the events it covers, makes the chain up to it
// impossible to rewrite without the signing key. Verify checks both.

// TypeAuditCheckpoint is the signed checkpoint of the chain.
const TypeAuditCheckpoint = "audit_checkpoint"

// Reasons of an audit_checkpoint.
const (
	checkpointStart    = "start"    // the logger opened the file
	checkpointReopen   = "reopen"   // the first line of a rotated-in file
	checkpointInterval = "interval" // CheckpointInterval after an event
	checkpointCount    = "count"    // CheckpointEvents events
	checkpointStop     = "stop"     // Close: the last line of a clean stop
	// checkpointRecovered follows the part of a line a failed write
	// left in the file and could not take back.
	checkpointRecovered = "recovered"
)

// genesisPrev is the prev of the first line of a chain.
var genesisPrev = strings.Repeat("0", 64)

// errLoggerClosed is returned by Emit on a file logger after Close.
var errLoggerClosed = errors.New("the audit log is closed")

// HeadSuffix names the file beside the audit log that holds the last
// checkpoint line written (audit.jsonl.head). On start, a log whose last
// line comes before that checkpoint was cut while the bastion was stopped:
// the chain goes on from the checkpoint, so that the cut shows at the next
// line, and Verify compares the log with it.
const HeadSuffix = ".head"

// chainState is where the chain stands: the last line written.
type chainState struct {
	seq  int64    // seq of the last line; 0 before the first
	head [32]byte // SHA-256 of the last line; zero before the first
	// genesis is set before the first line of a chain.
	genesis bool
	// uncovered counts the events since the last checkpoint; firstAt is
	// when the first of them was written.
	uncovered int
}

func (c *chainState) reset() { *c = chainState{genesis: true} }

func (c *chainState) advance(line []byte) {
	c.seq++
	c.head = sha256.Sum256(line)
	c.genesis = false
}

func (c *chainState) prevHex() string {
	if c.genesis {
		return genesisPrev
	}
	return hex.EncodeToString(c.head[:])
}

// CheckpointMessage is what an audit_checkpoint at seq with prev signs:
// that the line before seq hashes to prev, and so every line before it.
func CheckpointMessage(seq int64, prev string) []byte {
	return fmt.Appendf(nil, "bastion-audit-checkpoint-v1 %d %s", seq, prev)
}

// tail is the end of an audit file, read without reading all of it.
type tail struct {
	size int64
	// last is the last complete line (without its newline), nil if none.
	last []byte
	// torn holds the bytes after the last newline, when the file does
	// not end with one (a crash in the middle of a write).
	torn []byte
	// oversize is set when the last line (complete or torn) is longer
	// than any event: it was not written by the bastion.
	oversize bool
	// unended is set when the file does not end with a newline.
	unended bool
}

// tailWindow bounds what readTail reads: a torn line and the complete
// line before it, each at most MaxEventLen bytes.
const tailWindow = 2*(MaxEventLen+1) + 1

// readTail reads at most tailWindow bytes from the end of f.
func readTail(f *os.File) (tail, error) {
	fi, err := f.Stat()
	if err != nil {
		return tail{}, err
	}
	t := tail{size: fi.Size()}
	if t.size == 0 {
		return t, nil
	}
	n := min(t.size, int64(tailWindow))
	off := t.size - n
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		return tail{}, err
	}
	// whole reports whether buf[:i] reaches back to a line start.
	lastLine := func(b []byte) ([]byte, bool) {
		i := bytes.LastIndexByte(b, '\n')
		if i < 0 && off > 0 {
			return nil, false
		}
		return b[i+1:], true
	}
	if buf[n-1] == '\n' {
		last, ok := lastLine(buf[:n-1])
		t.last, t.oversize = last, !ok || len(last) > MaxEventLen
		return t, nil
	}
	t.unended = true
	torn, ok := lastLine(buf)
	t.torn, t.oversize = torn, !ok || len(torn) > MaxEventLen
	if t.oversize {
		return t, nil
	}
	if i := len(buf) - len(torn); i > 0 {
		if last, ok := lastLine(buf[:i-1]); ok {
			t.last = last
		}
	}
	return t, nil
}

// lineSeq returns the seq of an event line, or 0.
func lineSeq(line []byte) int64 {
	var e struct {
		Seq int64 `json:"seq"`
	}
	if json.Unmarshal(line, &e) != nil {
		return 0
	}
	return e.Seq
}

// resume sets the chain from the file's tail t and writes what the next
// reader needs to follow it: the newline a torn line lacks, and a
// checkpoint that names the torn line or a cut. At start (start set) the
// head file is consulted, and with a signing key a start checkpoint is
// written in any case. l.mu is held or l is not shared yet.
func (l *Logger) resume(t tail, start bool) error {
	var torn int64
	var problem string
	switch {
	case t.size == 0:
		l.chain.reset()
	case t.oversize:
		// Not a line of ours: its start is beyond what is read, so its
		// hash cannot be known. The chain starts again; Verify reports
		// the line.
		l.chain.reset()
		problem = fmt.Sprintf("the audit log's last line is longer than any event (over %d bytes): the chain starts again after it", MaxEventLen)
	case t.torn != nil:
		l.chain.seq = lineSeq(t.last)
		l.chain.head = sha256.Sum256(t.torn)
		l.chain.genesis = false
		torn = int64(len(t.torn))
	default:
		l.chain.seq = lineSeq(t.last)
		l.chain.head = sha256.Sum256(t.last)
		l.chain.genesis = false
	}
	if t.unended {
		// End the torn line, so that the next event is a line of its own.
		if _, err := l.w.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("ending the torn last line of the audit log: %w", err)
		}
	}
	if start && l.path != "" {
		if hs, hh, ok := readHead(l.path + HeadSuffix); ok && hs > l.chain.seq {
			problem = fmt.Sprintf("the audit log ends at seq %d, before the last checkpoint written (seq %d): lines were removed while the bastion was stopped, or the file was replaced; the chain goes on from the checkpoint", l.chain.seq, hs)
			if t.size == 0 {
				// A new, empty file (rotated while the bastion was
				// stopped) simply continues the chain.
				problem = ""
			}
			l.chain.seq, l.chain.head, l.chain.genesis = hs, hh, false
		}
	}
	switch {
	case torn > 0 || problem != "":
		return l.writeCheckpoint(checkpointStart, torn, problem)
	case start && l.opt.SigningKey != nil:
		return l.writeCheckpoint(checkpointStart, 0, "")
	}
	return nil
}

// startCheckpoint writes the start checkpoint of a logger without a file.
func (l *Logger) startCheckpoint() error {
	if l.opt.SigningKey == nil {
		return nil
	}
	return l.writeCheckpoint(checkpointStart, 0, "")
}

// resyncTail reads the file's tail again after a failed write. When part
// of the line could not be taken back, that part is ended and chained over
// like a torn line; anything else at the end of the file (a line someone
// else appended) leaves the chain where it was, for Verify to report.
func (l *Logger) resyncTail() error {
	t, err := readTail(l.f)
	if err != nil {
		return fmt.Errorf("reading the audit log's last line: %w", err)
	}
	if t.unended && !t.oversize {
		if _, err := l.w.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("ending a partly written audit event: %w", err)
		}
		l.chain.head = sha256.Sum256(t.torn)
		l.chain.genesis = false
		l.resync = false
		return l.writeCheckpoint(checkpointRecovered, int64(len(t.torn)), "")
	}
	l.resync = false
	return nil
}

// maybeCheckpoint writes a checkpoint once CheckpointEvents events wait for
// one, and otherwise arms the timer that writes one CheckpointInterval
// after the first waiting event. l.mu is held.
func (l *Logger) maybeCheckpoint() error {
	if l.opt.SigningKey == nil || l.chain.uncovered == 0 {
		return nil
	}
	if l.chain.uncovered >= l.opt.CheckpointEvents {
		return l.writeCheckpoint(checkpointCount, 0, "")
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(l.opt.CheckpointInterval, l.timerFired)
	}
	return nil
}

// timerFired writes the interval checkpoint. A failure is kept for the next
// Emit, which returns it (audit.on_failure decides what follows).
func (l *Logger) timerFired() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if l.closed || l.chain.uncovered == 0 {
		return
	}
	if err := l.writeCheckpoint(checkpointInterval, 0, ""); err != nil {
		l.cpDue = true
	}
}

// writeCheckpoint writes an audit_checkpoint: signed when the logger has a
// key, with torn and problem describing what was found at start. On
// success the head file is replaced by it. l.mu is held.
func (l *Logger) writeCheckpoint(reason string, torn int64, problem string) error {
	e := Event{Version: SchemaVersion, Time: l.now().UTC(), Type: TypeAuditCheckpoint,
		Reason: reason, TornBytes: torn, Error: Clip(problem)}
	if k := l.opt.SigningKey; k != nil {
		e.SigningKey = PublicKeyText(k.Public().(ed25519.PublicKey))
		sig := ed25519.Sign(k, CheckpointMessage(l.chain.seq+1, l.chain.prevHex()))
		e.Signature = base64.StdEncoding.EncodeToString(sig)
	}
	if err := l.writeLocked(&e); err != nil {
		l.cpDue = l.opt.SigningKey != nil
		return err
	}
	l.cpDue = false
	if l.opt.SigningKey == nil {
		return nil
	}
	l.chain.uncovered = 0
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if l.path != "" {
		if line, err := json.Marshal(e); err == nil {
			// Best effort: the head file is a second witness, the chain
			// and the signatures are the proof.
			writeHead(l.path+HeadSuffix, line)
		}
	}
	return nil
}

// writeHead replaces the head file with line, atomically.
func writeHead(path string, line []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(line, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readHead returns the seq and hash of the checkpoint line in the head
// file at path.
func readHead(path string) (int64, [32]byte, bool) {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > MaxEventLen+1 {
		return 0, [32]byte{}, false
	}
	line := bytes.TrimSuffix(data, []byte{'\n'})
	seq := lineSeq(line)
	if seq == 0 {
		return 0, [32]byte{}, false
	}
	return seq, sha256.Sum256(line), true
}

// lockFile takes an exclusive lock on f without waiting.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
