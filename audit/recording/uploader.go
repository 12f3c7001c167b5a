package recording

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"
)

// ContentType is the Content-Type of uploaded recordings.
const ContentType = "application/x-asciicast"

// UploadedDir is the folder, inside the recordings folder, that an
// Uploader with KeepLocal moves recordings to once they are uploaded. The
// startup scan does not look into it.
const UploadedDir = "uploaded"

// Uploader defaults.
const (
	DefaultUploadTimeout = 60 * time.Second
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 5 * time.Minute
)

// S3API is the part of the S3 client an Uploader uses; *s3.Client
// implements it.
type S3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// An Uploader ships finished recordings from one folder to S3, one at a
// time, in a goroutine it owns from Start to Close. A recording is deleted
// locally (or moved into [UploadedDir]) only after S3 accepted it; until
// then it stays in Dir, through failures and restarts.
//
// When an upload fails the recording goes to the back of the queue and
// the Uploader waits before its next attempt, MinBackoff after the first
// failure in a row, doubling up to MaxBackoff; a success resets the wait.
// A recording that cannot be read (it vanished, it is not a regular file)
// is dropped from the queue and left where it is.
//
// Only regular files directly inside Dir whose names end in [Ext] are ever
// uploaded: Enqueue drops any other path, and files are opened through an
// [os.Root] on Dir so that no symbolic link leads outside it.
//
// The exported fields must not change after Start.
type Uploader struct {
	// Client puts the objects; required.
	Client S3API
	// Bucket receives the recordings, under the key Prefix + file name.
	// Prefix is used as is: end it with "/" for a folder.
	Bucket, Prefix string
	// Dir is the recordings folder (the dir given to Create); required.
	// Start scans it for finished recordings left by an earlier run.
	Dir string
	// KeepLocal keeps a recording after its upload, moved into
	// Dir/uploaded/. By default it is deleted.
	KeepLocal bool
	// Timeout bounds each upload attempt; zero means
	// DefaultUploadTimeout.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after failed attempts;
	// zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// ServerSideEncryption, if not empty, is sent as the objects'
	// x-amz-server-side-encryption ("AES256", "aws:kms"); empty leaves
	// encryption to the bucket's default. SSEKMSKeyID, if not empty,
	// names the KMS key for "aws:kms".
	ServerSideEncryption types.ServerSideEncryption
	SSEKMSKeyID          string
	// Logger logs uploads and failures; if nil, nothing is logged.
	Logger *zap.Logger
	// AfterUpload, if not nil, is called from the upload goroutine after
	// each attempt with the recording's path and the attempt's error, nil
	// on success (by then the local file is gone or moved). It must not
	// block; tests use it to wait for uploads.
	AfterUpload func(path string, err error)

	wg sync.WaitGroup // the run goroutine

	mu      sync.Mutex // protects the fields below
	queue   []string   // names in Dir waiting for an attempt, in order
	queued  map[string]bool
	wake    chan struct{} // capacity 1; signalled when queue grows
	started bool
	closed  bool
	cancel  context.CancelFunc
}

// Start scans Dir for finished recordings and starts uploading them and
// those given to Enqueue, in a goroutine that runs until ctx is done or
// Close is called. Only the first call has an effect; Start after Close
// does nothing.
func (u *Uploader) Start(ctx context.Context) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started || u.closed {
		return
	}
	u.started = true
	u.initLocked()
	ctx, u.cancel = context.WithCancel(ctx)
	u.wg.Add(1)
	go u.run(ctx)
}

// Enqueue queues the finished recording at path for upload; a path
// already queued is not queued twice. It never blocks. Paths that are not
// directly inside Dir or do not end in [Ext] are dropped and logged. A
// recording enqueued after Close is not uploaded until the next Start
// finds it.
func (u *Uploader) Enqueue(path string) {
	name, ok := u.nameIn(path)
	if !ok {
		u.logger().Warn("recording_not_in_dir", zap.String("path", path), zap.String("dir", u.Dir))
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	u.initLocked()
	u.pushLocked(name)
}

// Close stops the upload loop, cancelling an attempt in flight, and waits
// for it to return. Recordings not yet uploaded stay in Dir for the next
// Start.
func (u *Uploader) Close() {
	u.mu.Lock()
	u.closed = true
	cancel := u.cancel
	u.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	u.wg.Wait()
}

func (u *Uploader) initLocked() {
	if u.wake == nil {
		u.wake = make(chan struct{}, 1)
		u.queued = make(map[string]bool)
	}
}

// pushLocked appends name to the queue unless it is already there or in
// flight. u.mu must be held.
func (u *Uploader) pushLocked(name string) {
	if u.queued[name] {
		return
	}
	u.queued[name] = true
	u.queue = append(u.queue, name)
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// nameIn returns the base name of path if path is a recording directly
// inside Dir.
func (u *Uploader) nameIn(path string) (string, bool) {
	if u.Dir == "" {
		return "", false
	}
	dir, err := filepath.Abs(u.Dir)
	if err != nil {
		return "", false
	}
	abs, err := filepath.Abs(path)
	if err != nil || filepath.Dir(abs) != dir {
		return "", false
	}
	name := filepath.Base(abs)
	return name, finished(name)
}

// finished reports whether name is the name of a finished recording,
// plain or encrypted.
func finished(name string) bool {
	return strings.HasSuffix(name, Ext) && name != Ext || strings.HasSuffix(name, EncryptedExt) && name != EncryptedExt
}

func (u *Uploader) logger() *zap.Logger {
	if u.Logger == nil {
		return zap.NewNop()
	}
	return u.Logger
}

// run is the upload loop. Between a failure and the next attempt it waits
// for the backoff even when new recordings arrive: failures are mostly
// S3's or the network's, and hold for every file alike.
func (u *Uploader) run(ctx context.Context) {
	defer u.wg.Done()
	log := u.logger().With(zap.String("bucket", u.Bucket), zap.String("dir", u.Dir))
	if err := os.MkdirAll(u.Dir, dirMode); err != nil {
		log.Error("recording_dir_unusable", zap.Error(err))
		return
	}
	root, err := os.OpenRoot(u.Dir)
	if err != nil {
		log.Error("recording_dir_unusable", zap.Error(err))
		return
	}
	defer root.Close()
	if err := u.scan(root); err != nil {
		log.Error("recording_dir_scan_failed", zap.Error(err))
	}

	failures := 0
	for {
		name, ok := u.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-u.wake:
			}
			continue
		}
		key := u.Prefix + name
		size, retry, err := u.upload(ctx, root, name, key)
		if ctx.Err() != nil {
			// Close (or the caller's context) cut the attempt short;
			// the file stays for the next Start.
			return
		}
		u.finish(name, retry)
		path := filepath.Join(u.Dir, name)
		switch {
		case err == nil:
			failures = 0
			log.Info("recording_uploaded", zap.String("path", path), zap.String("key", key), zap.Int64("bytes", size))
		case !retry:
			log.Error("recording_not_uploadable", zap.String("path", path), zap.Error(err))
		default:
			failures++
		}
		if u.AfterUpload != nil {
			u.AfterUpload(path, err)
		}
		if err == nil || !retry {
			continue
		}
		wait := u.backoff(failures)
		log.Warn("recording_upload_failed", zap.String("path", path), zap.String("key", key),
			zap.Int("failures", failures), zap.Duration("retry_in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// scan queues the finished recordings in root, in name order.
func (u *Uploader) scan(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && finished(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, name := range names {
		u.pushLocked(name)
	}
	return nil
}

// next takes the name at the head of the queue; it stays in u.queued, so
// that Enqueue does not queue it again while it is in flight.
func (u *Uploader) next() (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.queue) == 0 {
		return "", false
	}
	name := u.queue[0]
	u.queue = slices.Delete(u.queue, 0, 1)
	return name, true
}

// finish ends an attempt at name: back to the tail of the queue if it is
// to be retried, forgotten otherwise.
func (u *Uploader) finish(name string, retry bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if retry {
		u.queue = append(u.queue, name)
		return
	}
	delete(u.queued, name)
}

// backoff returns the wait after the given number of failures in a row.
func (u *Uploader) backoff(failures int) time.Duration {
	lo, hi := u.MinBackoff, u.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// upload puts one recording to S3 and then deletes or moves it. It returns
// the size uploaded and, on failure, whether the upload is worth retrying:
// not when the file cannot be read.
func (u *Uploader) upload(ctx context.Context, root *os.Root, name, key string) (size int64, retry bool, err error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return 0, false, fmt.Errorf("opening recording: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return 0, false, fmt.Errorf("opening recording %s: not a regular file", name)
	}
	f, err := root.Open(name)
	if err != nil {
		return 0, false, fmt.Errorf("opening recording: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return 0, false, fmt.Errorf("opening recording: %w", err)
	}
	size = fi.Size()

	timeout := u.Timeout
	if timeout <= 0 {
		timeout = DefaultUploadTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in := &s3.PutObjectInput{
		Bucket:               aws.String(u.Bucket),
		Key:                  aws.String(key),
		Body:                 f,
		ContentLength:        aws.Int64(size),
		ContentType:          aws.String(ContentType),
		ServerSideEncryption: u.ServerSideEncryption,
	}
	if u.SSEKMSKeyID != "" {
		in.SSEKMSKeyId = aws.String(u.SSEKMSKeyID)
	}
	if _, err := u.Client.PutObject(actx, in); err != nil {
		return size, true, fmt.Errorf("putting s3://%s/%s: %w", u.Bucket, key, err)
	}
	f.Close()

	// S3 has the recording. Failing to delete or move it now only means
	// the next Start uploads it again, to the same key.
	if err := u.retire(root, name); err != nil {
		u.logger().Error("recording_not_removed", zap.String("path", filepath.Join(u.Dir, name)), zap.Error(err))
	}
	return size, false, nil
}

// retire deletes an uploaded recording, or moves it into UploadedDir with
// KeepLocal.
func (u *Uploader) retire(root *os.Root, name string) error {
	if !u.KeepLocal {
		err := root.Remove(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := root.MkdirAll(UploadedDir, dirMode); err != nil {
		return err
	}
	return root.Rename(name, filepath.Join(UploadedDir, name))
}

var _ S3API = (*s3.Client)(nil)
