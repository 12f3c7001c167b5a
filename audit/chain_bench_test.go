package audit

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchEvent is a typical event: a session_end with its link fields.
func benchEvent() Event {
	return Event{Type: TypeSessionEnd, SessionID: "0123456789abcdef", Channel: 1, User: "alice",
		RemoteAddr: "203.0.113.7:53122", Mode: "jump", Typed: "web-1", Target: "web-1.us-east-1.lightsail",
		Provider: "lightsail", InstanceID: "i-0123456789abcdef0", OSUser: "ec2-user", Kind: "shell",
		ExitStatus: Int(0), BytesUp: 1234, BytesDown: 56789, DurationMS: 4242}
}

// unchainedEmit is Emit as it was before the chain: clip, encode, one
// write, fsync for a file. It is the baseline of BenchmarkEmit.
func unchainedEmit(w io.Writer, f *os.File, e Event) error {
	e.Version = SchemaVersion
	clipStrings(&e)
	e.Time = time.Now().UTC()
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return err
	}
	if f != nil {
		return f.Sync()
	}
	return nil
}

// BenchmarkEmit measures the cost per event of the chain (seq, prev) and
// of signing checkpoints, against the unchained write: to memory (the CPU
// cost) and to a file with its fsync per event (what the bastion pays).
//
//	go test -run '^$' -bench BenchmarkEmit -benchtime 20000x ./audit/
func BenchmarkEmit(b *testing.B) {
	key := newSigner(b)
	cases := []struct {
		name string
		opt  *Options // nil: the unchained baseline
	}{
		{"unchained", nil},
		{"chained", &Options{}},
		{"chained+signed_every_1000", &Options{SigningKey: key, CheckpointInterval: time.Hour}},
		{"chained+signed_every_event", &Options{SigningKey: key, CheckpointEvents: 1, CheckpointInterval: time.Hour}},
	}
	for _, sink := range []string{"memory", "file"} {
		for _, tc := range cases {
			b.Run(sink+"/"+tc.name, func(b *testing.B) {
				e := benchEvent()
				var f *os.File
				var w io.Writer = io.Discard
				if sink == "file" {
					var err error
					f, err = os.OpenFile(filepath.Join(b.TempDir(), "audit.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					w = f
				}
				if tc.opt == nil {
					for b.Loop() {
						if err := unchainedEmit(w, f, e); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				var l *Logger
				if f != nil {
					f.Close()
					var err error
					if l, err = OpenWith(f.Name(), *tc.opt); err != nil {
						b.Fatal(err)
					}
				} else {
					l = NewLoggerWith(w, *tc.opt)
				}
				defer l.Close()
				for b.Loop() {
					if err := l.Emit(e); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
