package recording

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
)

// Ext is the file name extension of a recording. Every name given to
// [Create] ends in it.
const Ext = ".cast"

// EncryptedExt is the file name extension of a recording encrypted with
// age (see [WithRecipients]): an age file whose plaintext is an asciicast
// v2 recording.
const EncryptedExt = Ext + ".age"

// PartExt is appended to a recording's name while it is being written;
// Close renames the file to its name without it.
const PartExt = ".part"

// DefaultFlushInterval is how long an event may wait in memory, at most,
// before it is written to the file (and the file fsynced).
const DefaultFlushInterval = time.Second

// Sizes and modes of recording files.
const (
	// flushSize is the buffer size at which events are written to the file
	// at once, without waiting for the flush interval.
	flushSize = 32 << 10

	defaultWidth  = 80
	defaultHeight = 24

	dirMode  = 0o750
	fileMode = 0o600
)

// Event types of asciicast v2.
const (
	TypeOutput = "o"
	TypeInput  = "i"
	TypeResize = "r"
	TypeMarker = "m"
)

// TruncatedMarker is the label of the marker event a recorder writes when
// it reaches its size limit (see [WithMaxBytes]).
const TruncatedMarker = "recording truncated: size limit reached"

// ErrLimit is what the failure func of [WithFailureFunc] is given when the
// recording reaches its size limit.
var ErrLimit = errors.New("recording reached its size limit")

// ErrBadName is returned by [Create] for a name that is not a plain file
// name ending in [Ext], or in [EncryptedExt] for an encrypted recording.
var ErrBadName = errors.New("recording name must be a file name ending in " + Ext + " (" + EncryptedExt + " when encrypted)")

// Header describes a recorded session; it becomes the asciicast header.
type Header struct {
	// Width and Height are the terminal size in columns and rows. Zero
	// means 80 and 24, for sessions without a pty.
	Width, Height int
	// Start is when the session started. Event times are measured from
	// it on the monotonic clock when it carries one (pass time.Now());
	// zero means when Create is called.
	Start time.Time
	// Command is the command of an exec session; empty for a shell.
	Command string
	// Title is a free-form title, such as "alice@web-1 as ec2-user".
	Title string
	// Env holds the session's TERM and SHELL. Other variables are not
	// written: SSH env requests can carry secrets.
	Env map[string]string
}

// recordedEnv lists the environment variables a header keeps.
var recordedEnv = []string{"TERM", "SHELL"}

// An Option changes how [Create] sets up a recorder.
type Option func(*options)

type options struct {
	maxBytes      int64
	flushInterval time.Duration
	failed        func(error)
	recipients    []age.Recipient
	// wrap, if not nil, wraps the file the recorder writes; tests use it
	// to make writes fail.
	wrap func(file) file
}

// WithMaxBytes caps the size of the recording file at n bytes (n <= 0, the
// default, means no cap). An event that would take the file over the cap
// is dropped, as is every later event, and a single marker event labelled
// [TruncatedMarker] is written instead, so a capped file can exceed n by
// the length of that one line. [Recorder.Truncated] reports whether the cap
// was hit, and the failure func of [WithFailureFunc] is told.
func WithMaxBytes(n int64) Option { return func(o *options) { o.maxBytes = n } }

// WithFailureFunc has f called once when the recorder stops recording
// before Close: with [ErrLimit] when it reaches its size limit, or with the
// first write or sync error (a full disk). f runs on the goroutine that
// recorded the event or flushed the file, after the recorder's lock is
// released; it must not block. Errors met during Close are only returned
// by Close.
func WithFailureFunc(f func(error)) Option { return func(o *options) { o.failed = f } }

// WithRecipients has the recording encrypted with age to recipients as
// it is written: the file holds the age header and then the age STREAM
// ciphertext, and no plaintext reaches the disk. The name given to
// [Create] must then end in [EncryptedExt]. Without recipients (the
// default) the file is plain asciicast.
//
// age encrypts in chunks of 64 KiB of plaintext, and only a full chunk (or
// the final one, at Close) can be written: a flush hands the buffered
// events to the current chunk, which reaches the file when it fills. Until
// Close the file thus holds the recording up to its last full chunk, and a
// crash loses the chunk in memory, up to 64 KiB of events however old.
// [WithMaxBytes] counts plaintext bytes, the asciicast that decrypting
// gives back; the file is larger by age's header (about 100 bytes plus
// about 100 per recipient) and 16 bytes per chunk. The manifest is of the
// bytes on disk, the ciphertext.
func WithRecipients(recipients ...age.Recipient) Option {
	return func(o *options) { o.recipients = recipients }
}

// WithFlushInterval sets how long events may wait in memory before they
// are written to the file; d <= 0 means [DefaultFlushInterval].
func WithFlushInterval(d time.Duration) Option { return func(o *options) { o.flushInterval = d } }

// file is what a recorder needs of its *os.File.
type file interface {
	io.WriteCloser
	Sync() error
	Truncate(size int64) error
}

// A Recorder writes one session as an asciicast v2 file, encrypted with age
// if [WithRecipients] was given. Its methods are safe for concurrent use:
// the output and input copy loops of a session call Output and Input from
// their own goroutines. They never block on more than an append to memory
// or, every 32 KiB, one write(2) (encrypted: a copy into age's chunk and,
// every 64 KiB, the chunk's encryption and one write(2)), and they do not
// retain the slices they are given.
type Recorder struct {
	path  string // the finished file, dir/name
	part  string // the file while it is being written, path+PartExt
	start time.Time
	max   int64
	every time.Duration

	// f is set by Create and closed by Close only after flushLoop has
	// returned; flushLoop calls f.Sync without holding mu.
	f file
	// enc, if not nil, is age's STREAM writer over cipherFile{r}: events
	// are written to it instead of f. It is only used under mu.
	enc io.WriteCloser

	dirty chan struct{} // capacity 1; signalled when buf stops being empty
	done  chan struct{} // closed by Close to stop flushLoop
	wg    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	// sealed is the manifest, set by Close.
	sealed Manifest

	mu        sync.Mutex // protects the fields below
	buf       []byte     // whole event lines not yet written to f (or enc)
	off       int64      // bytes written to f
	sum       hash.Hash  // SHA-256 of the bytes written to f
	size      int64      // plaintext bytes recorded: off + len(buf) when not encrypted
	last      time.Duration
	out, in   stream
	pending   bool // flushLoop has been signalled and has not flushed since
	unsynced  bool // f has been written since its last Sync
	truncated bool
	closed    bool
	err       error // the first write error; set, every event is dropped
	// failed is the failure func, if any; nil once it has been called
	// or taken for a call.
	failed func(error)
}

// Create starts a recording in dir/name, which must not exist: it creates
// dir (mode 0750) if needed and the file dir/name.part (mode 0600,
// exclusively), and writes the header. Close renames the file to
// dir/name. The name must be a plain file name ending in [Ext], unique
// among recordings (a session ID makes a good one).
func Create(dir, name string, h Header, opts ...Option) (*Recorder, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.flushInterval <= 0 {
		o.flushInterval = DefaultFlushInterval
	}
	ext := Ext
	if len(o.recipients) > 0 {
		ext = EncryptedExt
	}
	if name != filepath.Base(name) || !strings.HasSuffix(name, ext) || name == ext {
		return nil, fmt.Errorf("creating recording %q: %w", name, ErrBadName)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("creating recordings folder: %w", err)
	}
	path := filepath.Join(dir, name)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("creating recording %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	if h.Start.IsZero() {
		h.Start = time.Now()
	}
	line, err := headerLine(h)
	if err != nil {
		return nil, fmt.Errorf("encoding recording header: %w", err)
	}

	part := path + PartExt
	osf, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	var f file = osf
	if o.wrap != nil {
		f = o.wrap(f)
	}
	r := &Recorder{
		path:     path,
		part:     part,
		start:    h.Start,
		max:      o.maxBytes,
		every:    o.flushInterval,
		f:        f,
		dirty:    make(chan struct{}, 1),
		done:     make(chan struct{}),
		sum:      sha256.New(),
		size:     int64(len(line)),
		unsynced: true,
		failed:   o.failed,
	}
	if len(o.recipients) > 0 {
		// age.Encrypt writes the age header through cipherFile; the
		// asciicast header goes into the first chunk, in memory.
		enc, err := age.Encrypt(cipherFile{r}, o.recipients...)
		if err == nil {
			_, err = enc.Write(line)
		}
		if err != nil {
			f.Close()
			os.Remove(part)
			return nil, fmt.Errorf("starting encrypted recording %s: %w", part, err)
		}
		r.enc = enc
	} else {
		if _, err := f.Write(line); err != nil {
			f.Close()
			os.Remove(part)
			return nil, fmt.Errorf("writing recording header %s: %w", part, err)
		}
		r.off = int64(len(line))
		r.sum.Write(line)
	}
	r.wg.Add(1)
	go r.flushLoop()
	return r, nil
}

// headerLine returns the asciicast v2 header for h, newline included.
func headerLine(h Header) ([]byte, error) {
	hj := headerJSON{
		Version:   2,
		Width:     h.Width,
		Height:    h.Height,
		Timestamp: h.Start.Unix(),
		Command:   h.Command,
		Title:     h.Title,
	}
	if hj.Width <= 0 {
		hj.Width = defaultWidth
	}
	if hj.Height <= 0 {
		hj.Height = defaultHeight
	}
	for _, k := range recordedEnv {
		if v, ok := h.Env[k]; ok {
			if hj.Env == nil {
				hj.Env = make(map[string]string)
			}
			hj.Env[k] = v
		}
	}
	b, err := json.Marshal(hj)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Path returns the path of the finished recording, dir/name. Until Close
// has returned, the data is in Path()+PartExt.
func (r *Recorder) Path() string { return r.path }

// Bytes returns the size of the recording so far, header included,
// counting events that are still buffered in memory. For an encrypted
// recording it is the size of the asciicast before encryption.
func (r *Recorder) Bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size
}

// Truncated reports whether the recording reached its size limit and
// dropped events.
func (r *Recorder) Truncated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.truncated
}

// Output records p as terminal output (what the session printed).
func (r *Recorder) Output(p []byte) {
	r.mu.Lock()
	r.addLocked(TypeOutput, func(dst []byte) []byte { return r.out.appendData(dst, p) })
	r.unlockAndNotify()
}

// Input records p as terminal input (what the person typed).
func (r *Recorder) Input(p []byte) {
	r.mu.Lock()
	r.addLocked(TypeInput, func(dst []byte) []byte { return r.in.appendData(dst, p) })
	r.unlockAndNotify()
}

// Resize records a change of the terminal size to cols columns and rows
// rows. Sizes that are not positive are ignored.
func (r *Recorder) Resize(cols, rows int) {
	if cols <= 0 || rows <= 0 {
		return
	}
	r.mu.Lock()
	r.addLocked(TypeResize, func(dst []byte) []byte {
		dst = strconv.AppendInt(dst, int64(cols), 10)
		dst = append(dst, 'x')
		return strconv.AppendInt(dst, int64(rows), 10)
	})
	r.unlockAndNotify()
}

// unlockAndNotify releases r.mu and, if the recording has just stopped
// (size limit or write error) and nobody was told yet, calls the failure
// func.
func (r *Recorder) unlockAndNotify() {
	var f func(error)
	var err error
	if r.failed != nil && !r.closed && (r.err != nil || r.truncated) {
		f, r.failed = r.failed, nil
		err = r.err
		if err == nil {
			err = ErrLimit
		}
	}
	r.mu.Unlock()
	if f != nil {
		f(err)
	}
}

// addLocked appends one event of type typ whose escaped data appendData
// appends, unless the data is empty or events are being dropped. r.mu must
// be held.
func (r *Recorder) addLocked(typ string, appendData func(dst []byte) []byte) {
	if r.closed || r.err != nil || r.truncated {
		return
	}
	mark := len(r.buf)
	r.buf = r.appendPrefix(r.buf, typ)
	n := len(r.buf)
	r.buf = appendData(r.buf)
	if len(r.buf) == n {
		r.buf = r.buf[:mark]
		return
	}
	r.buf = append(r.buf, '"', ']', '\n')

	if r.max > 0 && r.size+int64(len(r.buf)-mark) > r.max {
		r.buf = r.appendPrefix(r.buf[:mark], TypeMarker)
		r.buf = append(r.buf, TruncatedMarker...)
		r.buf = append(r.buf, '"', ']', '\n')
		r.truncated = true
	}
	r.size += int64(len(r.buf) - mark)
	if len(r.buf) >= flushSize {
		// Write now, and still have flushLoop fsync within the interval.
		r.flushLocked()
	}
	if !r.pending {
		r.pending = true
		select {
		case r.dirty <- struct{}{}:
		default:
		}
	}
}

// appendPrefix appends the start of an event line of type typ, up to the
// opening quote of its data. Times are taken under r.mu and never go
// backwards, so they are monotonic in file order.
func (r *Recorder) appendPrefix(dst []byte, typ string) []byte {
	d := time.Since(r.start)
	if d < r.last {
		d = r.last
	}
	r.last = d
	dst = append(dst, '[')
	dst = strconv.AppendFloat(dst, d.Seconds(), 'f', 6, 64)
	dst = append(dst, ", \""...)
	dst = append(dst, typ...)
	return append(dst, "\", \""...)
}

// flushLocked writes buf to the file. On a write error it records the
// error, cuts the file back to its last complete line and leaves the
// recorder dropping events. r.mu must be held.
func (r *Recorder) flushLocked() {
	r.pending = false
	if len(r.buf) == 0 || r.err != nil {
		r.buf = r.buf[:0]
		return
	}
	if r.enc != nil {
		// Full chunks are encrypted and written through cipherFile,
		// which keeps off and sum and cuts a failed write back.
		_, err := r.enc.Write(r.buf)
		r.buf = r.buf[:0]
		if err != nil {
			r.err = fmt.Errorf("writing recording %s: %w", r.part, err)
			r.buf = nil
		}
		return
	}
	n, err := r.f.Write(r.buf)
	if err == nil && n < len(r.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		r.err = fmt.Errorf("writing recording %s: %w", r.part, err)
		// buf holds whole lines only, so the file's last complete line
		// ends at the last newline of what reached it.
		keep := r.off + int64(bytes.LastIndexByte(r.buf[:n], '\n')+1)
		if terr := r.f.Truncate(keep); terr == nil {
			n = int(keep - r.off)
		}
		r.sum.Write(r.buf[:n])
		r.off += int64(n)
		r.size = r.off
		r.buf = nil
		return
	}
	r.sum.Write(r.buf[:n])
	r.off += int64(n)
	r.unsynced = true
	r.buf = r.buf[:0]
}

// flushLoop writes buffered events to the file, and fsyncs it, no later
// than r.every after they were recorded, until Close.
func (r *Recorder) flushLoop() {
	defer r.wg.Done()
	t := time.NewTimer(r.every)
	t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-r.dirty:
		}
		t.Reset(r.every)
		select {
		case <-r.done:
			t.Stop()
			return
		case <-t.C:
		}
		r.mu.Lock()
		r.flushLocked()
		needSync := r.unsynced && r.err == nil
		r.unsynced = false
		r.unlockAndNotify()
		if !needSync {
			continue
		}
		// The fsync runs without r.mu, so that Output and Input do not
		// wait for the disk.
		if err := r.f.Sync(); err != nil {
			r.mu.Lock()
			if r.err == nil {
				r.err = fmt.Errorf("syncing recording %s: %w", r.part, err)
			}
			r.unlockAndNotify()
		}
	}
}

// cipherFile is where age's STREAM writer of an encrypted recording writes:
// r.f, counted in r.off and r.sum. age writes its header, then one whole
// encrypted chunk per Write, only from flushLocked, Close or Create, so
// r.mu is held (or r not yet shared).
type cipherFile struct{ r *Recorder }

// Write writes p, one header piece or one encrypted chunk, to the file. On
// an error it cuts the file back to the end of the last whole write, so
// that what is on disk is a prefix of whole chunks, which decrypts up to
// there and then reports the file truncated.
func (c cipherFile) Write(p []byte) (int, error) {
	r := c.r
	n, err := r.f.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil && n > 0 {
		if terr := r.f.Truncate(r.off); terr == nil {
			n = 0
		}
	}
	r.sum.Write(p[:n])
	r.off += int64(n)
	if n > 0 {
		r.unsynced = true
	}
	return n, err
}

// Manifest describes a finished recording: what a recording_sealed event
// records, for `bastion audit verify --recordings` to check the file
// against.
type Manifest struct {
	// Name is the file name (Path without its folder).
	Name string
	// Size and SHA256 (hex) are of the bytes written to the file: for an
	// encrypted recording, of the age file, not of the plaintext.
	Size   int64
	SHA256 string
	// Duration is from the recording's start to its Close.
	Duration time.Duration
}

// Manifest returns the recording's manifest once Close has returned; the
// zero Manifest before.
func (r *Recorder) Manifest() Manifest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sealed
}

// Close records what is left of split UTF-8 sequences, writes the buffered
// events, fsyncs and closes the file and renames it to Path. It returns the
// first error the recording met, including a write error that made it
// drop events earlier; the file is renamed even then, cut at its last
// complete line. Events recorded after Close are dropped. Close is
// idempotent: later calls return the first one's result.
func (r *Recorder) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Recorder) close() error {
	close(r.done)
	r.wg.Wait()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(TypeOutput, r.out.appendRest)
	r.addLocked(TypeInput, r.in.appendRest)
	r.closed = true
	r.flushLocked()
	if r.enc != nil && r.err == nil {
		// The final chunk. After a write error the file stays without
		// it, and decrypting it reports it truncated.
		if err := r.enc.Close(); err != nil {
			r.err = fmt.Errorf("writing recording %s: %w", r.part, err)
		}
	}
	if r.err == nil {
		if err := r.f.Sync(); err != nil {
			r.err = fmt.Errorf("syncing recording %s: %w", r.part, err)
		}
	}
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = fmt.Errorf("closing recording %s: %w", r.part, err)
	}
	r.sealed = Manifest{Name: filepath.Base(r.path), Size: r.off, SHA256: hex.EncodeToString(r.sum.Sum(nil)),
		Duration: time.Since(r.start)}
	if err := os.Rename(r.part, r.path); err != nil {
		return errors.Join(r.err, fmt.Errorf("finishing recording: %w", err))
	}
	// Make the rename durable. A folder that cannot be fsynced (some
	// network file systems) still has the renamed file.
	if d, err := os.Open(filepath.Dir(r.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return r.err
}
