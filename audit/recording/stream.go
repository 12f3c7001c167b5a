package recording

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
)

// EncryptedContentType is the Content-Type of encrypted recordings and
// of the pieces of encrypted live recordings.
const EncryptedContentType = "application/octet-stream"

// PiecesSuffix follows a recording's object key to make the prefix of the
// pieces of that recording uploaded while it was live:
// KEY.parts/000000, KEY.parts/000001, ... (see audit/SCHEMA.md).
const PiecesSuffix = ".parts/"

// Streaming bounds.
const (
	// DefaultS3FlushInterval is audit.s3.flush_interval's default.
	DefaultS3FlushInterval = 30 * time.Second
	// maxStreams bounds the piece uploads in flight at once, across
	// every live recording.
	maxStreams = 4
	// maxPiece bounds one piece; a recording that grew more in one
	// interval is sent in several pieces.
	maxPiece = 64 << 20
)

// PieceKey returns the key of piece seq of the recording whose final
// object is key.
func PieceKey(key string, seq int) string {
	return fmt.Sprintf("%s%s%06d", key, PiecesSuffix, seq)
}

// contentType returns the Content-Type of the recording (or its piece)
// named name.
func contentType(name string) string {
	if strings.HasSuffix(strings.TrimSuffix(name, PartExt), EncryptedExt) {
		return EncryptedContentType
	}
	return ContentType
}

// live is what the Uploader keeps per live recording: the bytes already in
// S3 and the next piece's number, plus its retry state.
type live struct {
	offset    int64
	seq       int
	failures  int
	notBefore time.Time
	busy      bool
	resumed   bool // offset and seq account for pieces an earlier run left
}

// stream uploads, every FlushInterval, the bytes appended to each live
// recording (a PartExt file in root) since its last piece. The local file
// stays the source of truth: the finished recording is uploaded whole, and
// its pieces are deleted then.
func (u *Uploader) stream(ctx context.Context, root rootFS) {
	t := time.NewTicker(u.FlushInterval)
	defer t.Stop()
	sem := make(chan struct{}, maxStreams)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range u.liveNames(root) {
			st := u.claim(name)
			if st == nil {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				u.release(name, st, 0, errors.New("closing"))
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				n, err := u.piece(ctx, root, name, st)
				u.release(name, st, n, err)
			}()
		}
	}
}

// liveNames lists the live recordings in root and forgets the state of
// those that are gone.
func (u *Uploader) liveNames(root rootFS) []string {
	d, err := root.Open(".")
	if err != nil {
		return nil
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasSuffix(n, PartExt) && finished(strings.TrimSuffix(n, PartExt)) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	u.mu.Lock()
	defer u.mu.Unlock()
	for n, st := range u.lives {
		if !st.busy && !slices.Contains(names, n) {
			delete(u.lives, n)
		}
	}
	return names
}

// claim returns the state of the live recording name, marked busy, or nil
// when it is busy or backing off.
func (u *Uploader) claim(name string) *live {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lives == nil {
		u.lives = make(map[string]*live)
	}
	st := u.lives[name]
	if st == nil {
		st = &live{}
		u.lives[name] = st
	}
	if st.busy || time.Now().Before(st.notBefore) {
		return nil
	}
	st.busy = true
	return st
}

// release ends a piece attempt: n bytes went to S3, or err.
func (u *Uploader) release(name string, st *live, n int64, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st.busy = false
	if err != nil {
		st.failures++
		st.notBefore = time.Now().Add(u.backoff(st.failures))
		return
	}
	st.failures = 0
	if n > 0 {
		st.offset += n
		st.seq++
	}
}

// piece uploads the bytes of the live recording name past st.offset, if
// any, as the piece st.seq. It holds u.pieces shared, so that a finished
// recording's pieces are deleted only after no piece of it is in flight.
func (u *Uploader) piece(ctx context.Context, root rootFS, name string, st *live) (int64, error) {
	u.pieces.RLock()
	defer u.pieces.RUnlock()
	f, err := root.Open(name)
	if err != nil {
		// Finished (renamed) or gone: nothing more to stream.
		return 0, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, nil
	}
	final := u.Prefix + strings.TrimSuffix(name, PartExt)
	if !st.resumed {
		if err := u.resume(ctx, final, st); err != nil {
			return 0, err
		}
	}
	n := fi.Size() - st.offset
	if n <= 0 {
		return 0, nil
	}
	n = min(n, maxPiece)
	key := PieceKey(final, st.seq)
	actx, cancel := context.WithTimeout(ctx, u.timeout())
	defer cancel()
	in := &s3.PutObjectInput{
		Bucket:               aws.String(u.Bucket),
		Key:                  aws.String(key),
		Body:                 io.NewSectionReader(f, st.offset, n),
		ContentLength:        aws.Int64(n),
		ContentType:          aws.String(contentType(name)),
		ServerSideEncryption: u.ServerSideEncryption,
	}
	if u.SSEKMSKeyID != "" {
		in.SSEKMSKeyId = aws.String(u.SSEKMSKeyID)
	}
	if _, err := u.Client.PutObject(actx, in); err != nil {
		if ctx.Err() == nil {
			u.logger().Warn("recording_piece_failed", zap.String("key", key), zap.Error(err))
		}
		return 0, fmt.Errorf("putting s3://%s/%s: %w", u.Bucket, key, err)
	}
	u.logger().Debug("recording_piece_uploaded", zap.String("key", key), zap.Int64("bytes", n))
	return n, nil
}

// resume sets st past the contiguous pieces of final already in S3 (an
// earlier run's, which streamed the same file), so that the next piece
// follows them.
func (u *Uploader) resume(ctx context.Context, final string, st *live) error {
	actx, cancel := context.WithTimeout(ctx, u.timeout())
	defer cancel()
	p := s3.NewListObjectsV2Paginator(u.Client, &s3.ListObjectsV2Input{Bucket: aws.String(u.Bucket), Prefix: aws.String(final + PiecesSuffix)})
	var offset int64
	seq := 0
	for p.HasMorePages() {
		out, err := p.NextPage(actx)
		if err != nil {
			return fmt.Errorf("listing s3://%s/%s%s: %w", u.Bucket, final, PiecesSuffix, err)
		}
		for _, o := range out.Contents {
			if aws.ToString(o.Key) != PieceKey(final, seq) {
				break
			}
			offset += aws.ToInt64(o.Size)
			seq++
		}
	}
	st.offset, st.seq, st.resumed = offset, seq, true
	return nil
}

// deletePieces deletes the pieces of the recording whose final object is
// key, once that object is in S3. It waits for pieces in flight first.
func (u *Uploader) deletePieces(ctx context.Context, key string) error {
	u.pieces.Lock()
	defer u.pieces.Unlock()
	actx, cancel := context.WithTimeout(ctx, u.timeout())
	defer cancel()
	keys, err := listPieces(actx, u.Client, u.Bucket, key)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := u.Client.DeleteObject(actx, &s3.DeleteObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(k)}); err != nil {
			return fmt.Errorf("deleting s3://%s/%s: %w", u.Bucket, k, err)
		}
	}
	return nil
}

// listPieces lists the keys of the pieces of key, in key order.
func listPieces(ctx context.Context, c s3.ListObjectsV2APIClient, bucket, key string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(key + PiecesSuffix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s%s: %w", bucket, key, PiecesSuffix, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	slices.Sort(keys)
	return keys, nil
}

func (u *Uploader) timeout() time.Duration {
	if u.Timeout <= 0 {
		return DefaultUploadTimeout
	}
	return u.Timeout
}
