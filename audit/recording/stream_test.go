package recording

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap/zaptest"
)

// pieceKeys returns the keys of the pieces in f under key, in order.
func pieceKeys(f *fakeS3, key string) []string {
	var out []string
	for _, k := range f.keys() {
		if strings.HasPrefix(k, key+PiecesSuffix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUploaderStreamsLiveRecording checks that a live recording reaches S3
// in pieces while it is written, that the pieces reassemble into the file,
// that the finished recording is one object equal to the file, and that
// its pieces are deleted then; S3 failing is retried with one state per
// live recording.
func TestUploaderStreamsLiveRecording(t *testing.T) {
	dir := t.TempDir()
	f := newFakeS3(t)
	u, attempts := newUploader(t, f, dir)
	u.FlushInterval = 50 * time.Millisecond
	r, err := Create(dir, "live.cast", Header{Start: time.Now()}, WithFlushInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	u.Start(t.Context())
	key := "sessions/live.cast"
	part := r.Path() + PartExt

	r.Output([]byte("first"))
	waitFor(t, "piece 000000", func() bool { return len(pieceKeys(f, key)) >= 1 })

	f.down.Store(true)
	r.Output([]byte("second"))
	time.Sleep(300 * time.Millisecond) // several intervals of failures
	u.mu.Lock()
	if n := len(u.lives); n != 1 {
		t.Errorf("got %d live states, want 1", n)
	}
	if st := u.lives["live.cast"+PartExt]; st == nil || st.failures == 0 {
		t.Errorf("got state %+v while S3 is down, want failures counted", st)
	}
	u.mu.Unlock()
	f.down.Store(false)
	waitFor(t, "the bytes after S3 came back", func() bool {
		data, _ := os.ReadFile(part)
		var buf bytes.Buffer
		_, err := Fetch(t.Context(), f.client(), testBucket, key, &buf)
		return err == nil && bytes.Equal(buf.Bytes(), data) && bytes.Contains(data, []byte("second"))
	})
	if got := pieceKeys(f, key); len(got) < 2 || len(got) > 3 {
		t.Errorf("got pieces %q, want 2 or 3 (one per interval with new bytes)", got)
	}
	if _, err := os.Stat(dir + "/live.cast"); err == nil {
		t.Fatal("recording finished early")
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	u.Enqueue(r.Path())
	waitUploaded(t, attempts, r.Path())
	body, _, err := f.object(key)
	if err != nil || !bytes.Equal(body, data) {
		t.Errorf("got final object %q (%v), want the file %q", body, err, data)
	}
	if got := pieceKeys(f, key); len(got) != 0 {
		t.Errorf("got pieces %q after the final upload, want none", got)
	}
	var buf bytes.Buffer
	if n, err := Fetch(t.Context(), f.client(), testBucket, key, &buf); err != nil || n != 0 || !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("got Fetch %d pieces, %v, want the final object", n, err)
	}
}

// hangingS3 holds every call until its context ends, counting the calls
// in flight.
type hangingS3 struct {
	blockingS3
	inFlight, most atomic.Int32
}

func (h *hangingS3) PutObject(ctx context.Context, _ *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (h *hangingS3) ListObjectsV2(ctx context.Context, _ *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return &s3.ListObjectsV2Output{}, nil
}

// TestUploaderStreamHangingS3 checks that with S3 hanging, each piece
// attempt ends at the uploader's Timeout, at most maxStreams are in flight
// across ten live recordings, and the state stays one entry per recording.
func TestUploaderStreamHangingS3(t *testing.T) {
	dir := t.TempDir()
	api := &hangingS3{}
	u := &Uploader{Client: api, Bucket: testBucket, Dir: dir, Timeout: 50 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, FlushInterval: 20 * time.Millisecond, Logger: zaptest.NewLogger(t)}
	for i := range 10 {
		r, err := Create(dir, fmt.Sprintf("s%d.cast", i), Header{Start: time.Now()}, WithFlushInterval(10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		r.Output([]byte("x"))
	}
	u.Start(t.Context())
	t.Cleanup(u.Close)
	waitFor(t, "every live recording to have failed twice", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		n := 0
		for _, st := range u.lives {
			if st.failures >= 2 {
				n++
			}
		}
		return n == 10
	})
	u.mu.Lock()
	if n := len(u.lives); n != 10 {
		t.Errorf("got %d live states, want 10", n)
	}
	u.mu.Unlock()
	if m := api.most.Load(); m > maxStreams {
		t.Errorf("got %d piece uploads in flight at once, want at most %d", m, maxStreams)
	}
}
