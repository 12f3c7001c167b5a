package recording

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"filippo.io/age"
)

// BenchmarkRecorder measures the recorder's cost per byte of terminal
// output, plain and encrypted with age to one recipient: MB/s and
// allocations per 4 KiB Output call, to a file on disk (writes and fsyncs
// included; noisy on a shared disk) and to a file that discards what it is
// given (the CPU cost alone). A new recording is started every 16 MiB (off
// the clock) so the disk use stays bounded.
//
//	go test -run '^$' -bench BenchmarkRecorder -benchmem ./audit/recording/
func BenchmarkRecorder(b *testing.B) {
	var line bytes.Buffer
	for i := 0; line.Len() < 4096; i++ {
		fmt.Fprintf(&line, "-rw-r--r-- 1 ec2-user ec2-user %6d Dec  3 23:%02d file-%d.log\r\n", i*97, i%60, i)
	}
	chunk := line.Bytes()[:4096]
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	discard := func(o *options) { o.wrap = func(f file) file { return discardFile{f} } }
	for _, bc := range []struct {
		name string
		opts []Option
		ext  string
	}{
		{"plain/disk", nil, Ext},
		{"age/disk", []Option{WithRecipients(id.Recipient())}, EncryptedExt},
		{"plain/discard", []Option{discard}, Ext},
		{"age/discard", []Option{WithRecipients(id.Recipient()), discard}, EncryptedExt},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			n := 0
			start := func() *Recorder {
				n++
				r, err := Create(dir, fmt.Sprintf("s%d%s", n, bc.ext), Header{Start: time.Now()}, bc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				return r
			}
			r := start()
			var written int64
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r.Output(chunk)
				if written += int64(len(chunk)); written >= 16<<20 {
					b.StopTimer()
					if err := r.Close(); err != nil {
						b.Fatal(err)
					}
					os.Remove(r.Path())
					r, written = start(), 0
					b.StartTimer()
				}
			}
			if err := r.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// discardFile drops what is written to it and never syncs; Close closes
// the real file, so that Create and Close still work on disk.
type discardFile struct{ f file }

func (d discardFile) Write(p []byte) (int, error) { return len(p), nil }
func (d discardFile) Sync() error                 { return nil }
func (d discardFile) Truncate(int64) error        { return nil }
func (d discardFile) Close() error                { return d.f.Close() }

// BenchmarkRecorderMemory reports the heap one live recording holds after
// its first 64 KiB of output (heap-B/recording), plain and encrypted: the
// per-session cost of encryption in memory.
//
//	go test -run '^$' -bench BenchmarkRecorderMemory ./audit/recording/
func BenchmarkRecorderMemory(b *testing.B) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 256)
	for _, bc := range []struct {
		name string
		opts []Option
		ext  string
	}{
		{"plain", nil, Ext},
		{"age", []Option{WithRecipients(id.Recipient())}, EncryptedExt},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const live = 50
			dir := b.TempDir()
			var total float64
			for i := range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				recs := make([]*Recorder, live)
				for j := range recs {
					r, err := Create(dir, fmt.Sprintf("s%d-%d%s", i, j, bc.ext), Header{Start: time.Now()}, bc.opts...)
					if err != nil {
						b.Fatal(err)
					}
					for range 17 { // 68 KiB: past the first chunk
						r.Output(chunk)
					}
					recs[j] = r
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				total += float64(after.HeapAlloc-before.HeapAlloc) / live
				for _, r := range recs {
					r.Close()
					os.Remove(r.Path())
				}
			}
			b.ReportMetric(total/float64(b.N), "heap-B/recording")
		})
	}
}
