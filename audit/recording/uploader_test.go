package recording

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"go.uber.org/zap/zaptest"
)

const testBucket = "recordings"

// fakeS3 is gofakes3 with its in-memory backend behind an HTTP server on
// loopback, which can answer 503 (down) or be stopped and restarted on the
// same address.
type fakeS3 struct {
	t       *testing.T
	handler http.Handler
	addr    string
	down    atomic.Bool // answer every request with 503 SlowDown

	mu   sync.Mutex // protects srv and puts
	srv  *httptest.Server
	puts []http.Header // headers of the PUT requests that reached gofakes3
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	f := &fakeS3{t: t}
	s3h := gofakes3.New(backend).Server()
	f.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<Error><Code>SlowDown</Code><Message>down for the test</Message></Error>`)
			return
		}
		if r.Method == http.MethodPut {
			f.mu.Lock()
			f.puts = append(f.puts, r.Header.Clone())
			f.mu.Unlock()
		}
		s3h.ServeHTTP(w, r)
	})
	f.srv = httptest.NewServer(f.handler)
	f.addr = f.srv.Listener.Addr().String()
	t.Cleanup(f.stop)
	return f
}

// stop closes the server; requests are refused until restart.
func (f *fakeS3) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// restart serves again on the address the server had.
func (f *fakeS3) restart() {
	f.t.Helper()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatalf("listening again on %s: %v", f.addr, err)
	}
	srv := httptest.NewUnstartedServer(f.handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
}

// client returns the real SDK client for the fake. The aws.Config is built
// by hand, so AWS_CA_BUNDLE and the rest of the environment do not apply;
// the client does not retry, so that the Uploader's own retries are what
// is tested.
func (f *fakeS3) client() *s3.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String("http://" + f.addr)
		o.UsePathStyle = true
		o.Retryer = aws.NopRetryer{}
	})
}

// object returns the object at key and its Content-Type.
func (f *fakeS3) object(key string) (body []byte, contentType string, err error) {
	out, err := f.client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		return nil, "", err
	}
	defer out.Body.Close()
	body, err = io.ReadAll(out.Body)
	return body, aws.ToString(out.ContentType), err
}

// keys lists the bucket.
func (f *fakeS3) keys() []string {
	f.t.Helper()
	out, err := f.client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)})
	if err != nil {
		f.t.Fatalf("listing the bucket: %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// attempt is one call of AfterUpload.
type attempt struct {
	path string
	err  error
}

// newUploader returns an Uploader for dir and the fake whose AfterUpload
// reports to the returned channel; Close is a cleanup.
func newUploader(t *testing.T, f *fakeS3, dir string) (*Uploader, chan attempt) {
	attempts := make(chan attempt, 1000) // retries every 20ms at most: 20s of them
	u := &Uploader{
		Client:      f.client(),
		Bucket:      testBucket,
		Prefix:      "sessions/",
		Dir:         dir,
		Timeout:     waitTimeout,
		MinBackoff:  5 * time.Millisecond,
		MaxBackoff:  20 * time.Millisecond,
		Logger:      zaptest.NewLogger(t),
		AfterUpload: func(path string, err error) { attempts <- attempt{path, err} },
	}
	t.Cleanup(u.Close)
	return u, attempts
}

// waitAttempt returns the next upload attempt.
func waitAttempt(t *testing.T, attempts <-chan attempt) attempt {
	t.Helper()
	select {
	case a := <-attempts:
		return a
	case <-time.After(waitTimeout):
		t.Fatalf("no upload attempt within %v", waitTimeout)
		return attempt{}
	}
}

// waitUploaded waits for attempts until one at path succeeds, and returns
// the failures before it.
func waitUploaded(t *testing.T, attempts <-chan attempt, path string) []error {
	t.Helper()
	var failed []error
	for {
		a := waitAttempt(t, attempts)
		if a.path != path {
			t.Fatalf("got an attempt at %s, want %s", a.path, path)
		}
		if a.err == nil {
			return failed
		}
		failed = append(failed, a.err)
	}
}

// finishedRecording records text in dir/name and returns its path and
// content.
func finishedRecording(t *testing.T, dir, name, text string) (string, []byte) {
	t.Helper()
	r, err := Create(dir, name, Header{Start: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	r.Output([]byte(text))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	return r.Path(), data
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestUploaderUploads(t *testing.T) {
	tests := []struct {
		name      string
		keepLocal bool
		sse       types.ServerSideEncryption
	}{
		{"delete after upload", false, ""},
		{"keep local", true, ""},
		{"server-side encryption", false, types.ServerSideEncryptionAes256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeS3(t)
			dir := t.TempDir()
			u, attempts := newUploader(t, f, dir)
			u.KeepLocal = tc.keepLocal
			u.ServerSideEncryption = tc.sse
			u.Start(t.Context())

			path, want := finishedRecording(t, dir, "s1.cast", "hello \u20ac\r\n")
			u.Enqueue(path)
			if failed := waitUploaded(t, attempts, path); len(failed) != 0 {
				t.Errorf("got failures %v, want none", failed)
			}

			body, ctype, err := f.object("sessions/s1.cast")
			if err != nil {
				t.Fatalf("getting the object: %v", err)
			}
			if string(body) != string(want) {
				t.Errorf("got object %q, want %q", body, want)
			}
			if ctype != ContentType {
				t.Errorf("got Content-Type %q, want %q", ctype, ContentType)
			}
			f.mu.Lock()
			gotSSE := f.puts[len(f.puts)-1].Get("X-Amz-Server-Side-Encryption")
			f.mu.Unlock()
			if gotSSE != string(tc.sse) {
				t.Errorf("got x-amz-server-side-encryption %q, want %q", gotSSE, tc.sse)
			}
			if got := exists(t, path); got {
				t.Errorf("got the recording still in %s, want it gone", path)
			}
			kept := filepath.Join(dir, UploadedDir, "s1.cast")
			if got := exists(t, kept); got != tc.keepLocal {
				t.Errorf("got %s existing %v, want %v", kept, got, tc.keepLocal)
			}
		})
	}
}

func TestUploaderRetries(t *testing.T) {
	tests := []struct {
		name       string
		down, back func(*fakeS3)
	}{
		{"503", func(f *fakeS3) { f.down.Store(true) }, func(f *fakeS3) { f.down.Store(false) }},
		{"server closed", (*fakeS3).stop, (*fakeS3).restart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeS3(t)
			dir := t.TempDir()
			u, attempts := newUploader(t, f, dir)
			path, want := finishedRecording(t, dir, "s1.cast", "retry me")
			tc.down(f)
			u.Start(t.Context())
			u.Enqueue(path)

			for i := range 3 {
				a := waitAttempt(t, attempts)
				if a.path != path || a.err == nil {
					t.Fatalf("attempt %d: got %s, %v; want a failure at %s", i+1, a.path, a.err, path)
				}
				if !exists(t, path) {
					t.Fatalf("attempt %d: got the recording gone after a failed upload, want it kept", i+1)
				}
			}
			tc.back(f)
			waitUploaded(t, attempts, path)
			body, _, err := f.object("sessions/s1.cast")
			if err != nil || string(body) != string(want) {
				t.Errorf("got object %q, %v; want %q", body, err, want)
			}
			if exists(t, path) {
				t.Errorf("got the recording still in %s after the upload, want it gone", path)
			}
		})
	}
}

func TestUploaderStartupScan(t *testing.T) {
	f := newFakeS3(t)
	dir := t.TempDir()
	outside := t.TempDir()
	a, _ := finishedRecording(t, dir, "a.cast", "left from the last run")
	b, _ := finishedRecording(t, dir, "b.cast", "this one too")
	// Names that sort before a.cast: anything wrongly queued by the scan
	// would be attempted before a.cast.
	busy, err := Create(dir, "0-busy.cast", Header{Start: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	busy.Output([]byte("still being written"))
	defer busy.Close()
	secret, _ := finishedRecording(t, outside, "secret.cast", "not for the bucket")
	if err := os.Symlink(secret, filepath.Join(dir, "0-link.cast")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "0-dir.cast"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0-notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	u, attempts := newUploader(t, f, dir)
	u.Start(t.Context())
	waitUploaded(t, attempts, a)
	waitUploaded(t, attempts, b)
	u.Close()
	select {
	case at := <-attempts:
		t.Errorf("got an attempt at %s, want none after the finished recordings", at.path)
	default:
	}

	if got, want := f.keys(), []string{"sessions/a.cast", "sessions/b.cast"}; !slices.Equal(got, want) {
		t.Errorf("got keys %q, want %q", got, want)
	}
	if !exists(t, busy.Path()+PartExt) {
		t.Errorf("got the recording being written gone, want it left alone")
	}
	if !exists(t, secret) {
		t.Errorf("got the file outside the folder gone, want it left alone")
	}
}

func TestUploaderEnqueueOutsideDir(t *testing.T) {
	f := newFakeS3(t)
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	outside := t.TempDir()
	u, attempts := newUploader(t, f, dir)
	u.Start(t.Context())

	secret, _ := finishedRecording(t, outside, "secret.cast", "x")
	nested, _ := finishedRecording(t, sub, "nested.cast", "x")
	txt := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(txt, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		secret,
		filepath.Join(dir, "..", filepath.Base(outside), "secret.cast"),
		nested,
		txt,
		filepath.Join(dir, "s.cast.part"),
		"",
	} {
		u.Enqueue(p)
	}
	// Attempts are made in queue order: had any path above been queued,
	// its attempt would come first.
	ok, _ := finishedRecording(t, dir, "ok.cast", "x")
	u.Enqueue(ok)
	waitUploaded(t, attempts, ok)
	if got, want := f.keys(), []string{"sessions/ok.cast"}; !slices.Equal(got, want) {
		t.Errorf("got keys %q, want %q", got, want)
	}
}

func TestUploaderVanishedFile(t *testing.T) {
	f := newFakeS3(t)
	dir := t.TempDir()
	u, attempts := newUploader(t, f, dir)
	u.Start(t.Context())
	u.Enqueue(filepath.Join(dir, "gone.cast"))
	a := waitAttempt(t, attempts)
	if !errors.Is(a.err, fs.ErrNotExist) {
		t.Errorf("got error %v, want not exist", a.err)
	}
	// Dropped, not retried: the next file is the next attempt.
	ok, _ := finishedRecording(t, dir, "ok.cast", "x")
	u.Enqueue(ok)
	waitUploaded(t, attempts, ok)
}

// blockingS3 holds every PutObject until its context ends.
type blockingS3 struct {
	entered  chan struct{}
	returned atomic.Bool
}

func (b *blockingS3) PutObject(ctx context.Context, _ *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	b.entered <- struct{}{}
	<-ctx.Done()
	b.returned.Store(true)
	return nil, ctx.Err()
}

func TestUploaderCloseWaits(t *testing.T) {
	dir := t.TempDir()
	path, _ := finishedRecording(t, dir, "s.cast", "x")
	api := &blockingS3{entered: make(chan struct{}, 1)}
	u := &Uploader{Client: api, Bucket: testBucket, Dir: dir, Logger: zaptest.NewLogger(t),
		AfterUpload: func(string, error) { t.Errorf("got AfterUpload for an attempt cut by Close, want none") }}
	u.Start(t.Context())
	select {
	case <-api.entered:
	case <-time.After(waitTimeout):
		t.Fatalf("no upload started within %v", waitTimeout)
	}
	u.Close()
	if !api.returned.Load() {
		t.Errorf("got Close returning before the upload goroutine, want it to wait")
	}
	if !exists(t, path) {
		t.Errorf("got the recording gone after Close cut its upload, want it kept")
	}
	u.Close()
	u.Start(t.Context()) // does nothing after Close
	u.Enqueue(path)
	u.Close()

	var never Uploader
	never.Close() // without Start
}

func TestUploaderBackoff(t *testing.T) {
	u := &Uploader{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{4, 8 * time.Second},
		{5, 10 * time.Second},
		{1000, 10 * time.Second},
	}
	for _, tc := range tests {
		if got := u.backoff(tc.failures); got != tc.want {
			t.Errorf("backoff(%d): got %v, want %v", tc.failures, got, tc.want)
		}
	}
	var zero Uploader
	if got := zero.backoff(100); got != DefaultMaxBackoff {
		t.Errorf("zero Uploader backoff(100): got %v, want %v", got, DefaultMaxBackoff)
	}
}

func (b *blockingS3) DeleteObject(ctx context.Context, _ *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return nil, errors.New("blockingS3 deletes nothing")
}

func (b *blockingS3) ListObjectsV2(ctx context.Context, _ *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return nil, errors.New("blockingS3 lists nothing")
}
