package recording

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 10 * time.Second

// op is one call on a recorder.
type op struct {
	out, in    []byte
	cols, rows int // a Resize when cols or rows is set
}

func output(s string) op        { return op{out: []byte(s)} }
func input(s string) op         { return op{in: []byte(s)} }
func resize(cols, rows int) op  { return op{cols: cols, rows: rows} }
func ev(typ, data string) Event { return Event{Type: typ, Data: data} }

func (o op) apply(r *Recorder) {
	switch {
	case o.cols != 0 || o.rows != 0:
		r.Resize(o.cols, o.rows)
	case o.in != nil:
		r.Input(o.in)
	default:
		r.Output(o.out)
	}
}

// readRecording parses the finished file at path.
func readRecording(t *testing.T, path string) (Header, []Event) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, events, err := Parse(f)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return h, events
}

// withoutTimes returns events with their times zeroed, for comparison.
func withoutTimes(events []Event) []Event {
	out := slices.Clone(events)
	for i := range out {
		out[i].Time = 0
	}
	return out
}

func TestRecorderEvents(t *testing.T) {
	euro := "\u20ac"     // E2 82 AC
	grin := "\U0001F600" // F0 9F 98 80
	const bad = "\ufffd"
	tests := []struct {
		name string
		ops  []op
		want []Event
	}{
		{"plain output", []op{output("hello\r\n")}, []Event{ev("o", "hello\r\n")}},
		{"empty chunks make no event", []op{output(""), input(""), output("x")}, []Event{ev("o", "x")}},
		{"three-byte character split in two", []op{output(euro[:1]), output(euro[1:] + "!")},
			[]Event{ev("o", euro+"!")}},
		{"four-byte character split byte by byte", []op{output(grin[:1]), output(grin[1:2]), output(grin[2:3]), output(grin[3:])},
			[]Event{ev("o", grin)}},
		{"two characters split twice", []op{output("a" + euro[:2]), output(euro[2:] + grin[:1]), output(grin[1:])},
			[]Event{ev("o", "a"), ev("o", euro), ev("o", grin)}},
		{"invalid bytes", []op{output("a\xff\xfeb")}, []Event{ev("o", "a"+bad+bad+"b")}},
		{"surrogate half", []op{output("\xed\xa0\x80")}, []Event{ev("o", bad+bad+bad)}},
		{"split sequence that turns out invalid", []op{output(euro[:2]), output("A")},
			[]Event{ev("o", bad+bad+"A")}},
		{"sequence left incomplete at close", []op{output("A" + euro[:2])},
			[]Event{ev("o", "A"), ev("o", bad+bad)}},
		{"streams carry separately", []op{output(euro[:1]), input("ls" + grin[:2]), output(euro[1:]), input(grin[2:] + "\r")},
			[]Event{ev("i", "ls"), ev("o", euro), ev("i", grin+"\r")}},
		{"escapes", []op{output("\x1b[31m\"q\"\\\t\x00\x7f</b>\u2028")},
			[]Event{ev("o", "\x1b[31m\"q\"\\\t\x00\x7f</b>\u2028")}},
		{"resize", []op{resize(132, 43), resize(0, 10), resize(10, -1), output("x")},
			[]Event{ev("r", "132x43"), ev("o", "x")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			h := Header{Width: 100, Height: 30, Start: start, Command: "uptime", Title: "t",
				Env: map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/bash", "AWS_SECRET_ACCESS_KEY": "s"}}
			r, err := Create(t.TempDir(), "s.cast", h)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tc.ops {
				o.apply(r)
			}
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			gotH, events := readRecording(t, r.Path())
			if got := withoutTimes(events); !slices.Equal(got, tc.want) {
				t.Errorf("got events %q, want %q", got, tc.want)
			}
			wantEnv := map[string]string{"TERM": "xterm-256color", "SHELL": "/bin/bash"}
			if gotH.Width != 100 || gotH.Height != 30 || gotH.Command != "uptime" || gotH.Title != "t" ||
				gotH.Start.Unix() != start.Unix() || len(gotH.Env) != 2 || gotH.Env["TERM"] != wantEnv["TERM"] || gotH.Env["SHELL"] != wantEnv["SHELL"] {
				t.Errorf("got header %+v, want 100x30 uptime/t at %d with env %v", gotH, start.Unix(), wantEnv)
			}
		})
	}
}

func TestRecorderHeaderDefaults(t *testing.T) {
	r, err := Create(t.TempDir(), "s.cast", Header{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	h, events := readRecording(t, r.Path())
	if h.Width != 80 || h.Height != 24 || h.Start.IsZero() || h.Env != nil || len(events) != 0 {
		t.Errorf("got header %+v and %d events, want 80x24, a start time, no env, no events", h, len(events))
	}
}

func TestRecorderTimes(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	r, err := Create(t.TempDir(), "s.cast", Header{Start: start})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		r.Output([]byte("x"))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_, events := readRecording(t, r.Path()) // Parse checks the times never decrease
	if len(events) != 100 {
		t.Fatalf("got %d events, want 100", len(events))
	}
	if got := events[0].Time; got < time.Hour || got > time.Hour+waitTimeout {
		t.Errorf("got first event at %v, want about 1h after Start", got)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	// Output and input each come from their own goroutine, as from a
	// splice's two copy loops, in chunks that split characters.
	outText := strings.Repeat("out \u20ac\U0001F600 \x1b[0m\r\n", 500)
	inText := strings.Repeat("in \u00e9\u4e2d\r", 500)
	r, err := Create(t.TempDir(), "s.cast", Header{Start: time.Now()}, WithFlushInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	send := func(text string, rec func([]byte)) {
		buf := make([]byte, 7)
		for s := text; s != ""; {
			n := copy(buf, s)
			rec(buf[:n])
			clear(buf) // the recorder must not have kept buf
			s = s[n:]
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { send(outText, r.Output) })
	wg.Go(func() { send(inText, r.Input) })
	wg.Go(func() {
		for i := 1; i <= 100; i++ {
			r.Resize(80+i, 24)
			r.Bytes()
		}
	})
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_, events := readRecording(t, r.Path())
	var out, in strings.Builder
	resizes := 0
	for _, e := range events {
		switch e.Type {
		case TypeOutput:
			out.WriteString(e.Data)
		case TypeInput:
			in.WriteString(e.Data)
		case TypeResize:
			resizes++
		}
	}
	if out.String() != outText {
		t.Errorf("got output of %d bytes, want the %d sent", out.Len(), len(outText))
	}
	if in.String() != inText {
		t.Errorf("got input of %d bytes, want the %d sent", in.Len(), len(inText))
	}
	if resizes != 100 {
		t.Errorf("got %d resizes, want 100", resizes)
	}
}

func TestRecorderClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "recordings")
	r, err := Create(dir, "s.cast", Header{Start: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Path(), filepath.Join(dir, "s.cast"); got != want {
		t.Errorf("got Path %s, want %s", got, want)
	}
	if _, err := os.Stat(r.Path() + PartExt); err != nil {
		t.Errorf("got %v for the file being written, want it to exist", err)
	}
	if _, err := os.Stat(r.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v for the finished file before Close, want not exist", err)
	}
	r.Output([]byte("before"))
	for i := range 3 {
		if err := r.Close(); err != nil {
			t.Errorf("Close #%d: got %v, want nil", i+1, err)
		}
	}
	size := r.Bytes()
	r.Output([]byte("after"))
	r.Input([]byte("after"))
	r.Resize(1, 1)
	if got := r.Bytes(); got != size {
		t.Errorf("got %d bytes after events following Close, want %d", got, size)
	}

	fi, err := os.Stat(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("got file mode %v, want 0600", got)
	}
	if got := fi.Size(); got != size {
		t.Errorf("got file size %d, Bytes %d; want them equal", got, size)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got&^0o750 != 0 {
		t.Errorf("got folder mode %v, want at most 0750", got)
	}
	if _, err := os.Stat(r.Path() + PartExt); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v for the .part file after Close, want not exist", err)
	}
	_, events := readRecording(t, r.Path())
	if got, want := withoutTimes(events), []Event{ev("o", "before")}; !slices.Equal(got, want) {
		t.Errorf("got events %q, want %q", got, want)
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "done.cast"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busy.cast.part"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file string
		want       error
	}{
		{"empty name", "", ErrBadName},
		{"wrong extension", "s.txt", ErrBadName},
		{"only the extension", ".cast", ErrBadName},
		{"part extension", "s.cast.part", ErrBadName},
		{"path", "sub/s.cast", ErrBadName},
		{"escape", "../s.cast", ErrBadName},
		{"finished file exists", "done.cast", fs.ErrExist},
		{"file being written exists", "busy.cast", fs.ErrExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Create(dir, tc.file, Header{})
			if !errors.Is(err, tc.want) {
				if r != nil {
					r.Close()
				}
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
		})
	}
}

// failingFile passes writes through to the real file until limit bytes
// have been written, then writes what fits and fails with ENOSPC.
type failingFile struct {
	file
	limit, n int
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.n+len(p) <= f.limit {
		n, err := f.file.Write(p)
		f.n += n
		return n, err
	}
	n, _ := f.file.Write(p[:f.limit-f.n])
	f.n += n
	return n, syscall.ENOSPC
}

func TestRecorderWriteError(t *testing.T) {
	line := strings.Repeat("y", 1000) + "\r\n"
	tests := []struct {
		name  string
		limit int
	}{
		{"header fits, first flush fails", 200},
		{"fails in the middle of a flush", 50_000},
		{"fails exactly at a line end", 0}, // set below from the header size
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ff *failingFile
			wrap := func(f file) file {
				ff = &failingFile{file: f, limit: tc.limit}
				if tc.limit == 0 {
					ff.limit = 1 << 30
				}
				return ff
			}
			r, err := Create(t.TempDir(), "s.cast", Header{Start: time.Now()}, func(o *options) { o.wrap = wrap })
			if err != nil {
				t.Fatal(err)
			}
			if tc.limit == 0 {
				// Let exactly the header and the first event line
				// through: the flush fails after a complete line.
				r.Output([]byte(line))
				r.mu.Lock()
				ff.limit = int(r.size)
				r.mu.Unlock()
			}
			for range 100 {
				r.Output([]byte(line)) // 100 KiB: several flushes
			}
			r.Input([]byte("q"))
			err = r.Close()
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("got Close error %v, want ENOSPC", err)
			}
			if err2 := r.Close(); err2 != err {
				t.Errorf("got second Close error %v, want the first, %v", err2, err)
			}
			data, err := os.ReadFile(r.Path())
			if err != nil {
				t.Fatalf("got %v, want the cut recording kept", err)
			}
			if got := int64(len(data)); got != r.Bytes() {
				t.Errorf("got file size %d, Bytes %d; want them equal", got, r.Bytes())
			}
			if len(data) > ff.limit {
				t.Errorf("got %d bytes on disk, want at most the %d that fit", len(data), ff.limit)
			}
			_, events, err := Parse(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("got Parse error %v for the cut file, want it valid", err)
			}
			for i, e := range events {
				if e.Type != TypeOutput || e.Data != line {
					t.Fatalf("event %d: got %s %q, want an output line", i, e.Type, e.Data)
				}
			}
			if len(events) >= 100 {
				t.Errorf("got %d events, want fewer than the 100 sent", len(events))
			}
		})
	}
}

func TestRecorderMaxBytes(t *testing.T) {
	const max = 4000
	r, err := Create(t.TempDir(), "s.cast", Header{Start: time.Now()}, WithMaxBytes(max))
	if err != nil {
		t.Fatal(err)
	}
	chunk := strings.Repeat("z", 100)
	for range 100 {
		r.Output([]byte(chunk))
	}
	r.Resize(10, 10)
	if !r.Truncated() {
		t.Errorf("got Truncated false, want true")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("got Close error %v, want nil", err)
	}
	_, events := readRecording(t, r.Path())
	if len(events) < 2 {
		t.Fatalf("got %d events, want some output and the marker", len(events))
	}
	last := events[len(events)-1]
	if last.Type != TypeMarker || last.Data != TruncatedMarker {
		t.Errorf("got last event %s %q, want marker %q", last.Type, last.Data, TruncatedMarker)
	}
	for _, e := range events[:len(events)-1] {
		if e.Type != TypeOutput || e.Data != chunk {
			t.Errorf("got event %s %q, want only output before the marker", e.Type, e.Data)
		}
	}
	markerLine := int64(len(`[0000.000000, "m", ""]`+"\n") + len(TruncatedMarker))
	if got := r.Bytes(); got > max+markerLine {
		t.Errorf("got %d bytes, want at most %d + the marker line", got, max)
	}
}

// signalFile reports each write and sync of the file it wraps.
type signalFile struct {
	file
	wrote  chan []byte
	synced chan struct{}
}

func (f *signalFile) Write(p []byte) (int, error) {
	n, err := f.file.Write(p)
	select {
	case f.wrote <- bytes.Clone(p[:n]):
	default:
	}
	return n, err
}

func (f *signalFile) Sync() error {
	err := f.file.Sync()
	select {
	case f.synced <- struct{}{}:
	default:
	}
	return err
}

func TestRecorderFlushes(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"small event, after the interval", "hello"},
		{"32 KiB buffered, at once", strings.Repeat("h", flushSize)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sf := &signalFile{wrote: make(chan []byte, 10), synced: make(chan struct{}, 10)}
			wrap := func(f file) file { sf.file = f; return sf }
			r, err := Create(t.TempDir(), "s.cast", Header{Start: time.Now()},
				WithFlushInterval(10*time.Millisecond), func(o *options) { o.wrap = wrap })
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			<-sf.wrote // the header, written by Create

			r.Output([]byte(tc.data))
			deadline := time.After(waitTimeout)
			select {
			case p := <-sf.wrote:
				if want := `"o", "` + tc.data + `"]`; !bytes.Contains(p, []byte(want)) {
					t.Errorf("got write of %d bytes, want the event", len(p))
				}
			case <-deadline:
				t.Fatalf("the event was not written within %v", waitTimeout)
			}
			select {
			case <-sf.synced:
			case <-deadline:
				t.Fatalf("the file was not synced within %v", waitTimeout)
			}
			data, err := os.ReadFile(r.Path() + PartExt)
			if err != nil {
				t.Fatal(err)
			}
			if _, events, err := Parse(bytes.NewReader(data)); err != nil || len(events) != 1 {
				t.Errorf("got %d events, error %v from the file being written, want 1 event, nil", len(events), err)
			}
		})
	}
}

// TestRecorderFailureFunc checks that the failure func is called exactly
// once, with ErrLimit at the size limit and with the write error on a full
// disk, and not for errors Close meets.
func TestRecorderFailureFunc(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want error
	}{
		{"limit", []Option{WithMaxBytes(4000)}, ErrLimit},
		{"disk full", []Option{func(o *options) {
			o.wrap = func(f file) file { return &failingFile{file: f, limit: 200} }
		}}, syscall.ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []error
			var mu sync.Mutex
			opts := append(tc.opts, WithFailureFunc(func(err error) {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, err)
			}))
			r, err := Create(t.TempDir(), "s.cast", Header{Start: time.Now()}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			for range 100 {
				r.Output([]byte(strings.Repeat("z", 1000)))
			}
			r.Close()
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != 1 || !errors.Is(calls[0], tc.want) {
				t.Errorf("got failure calls %v, want one with %v", calls, tc.want)
			}
		})
	}
}
