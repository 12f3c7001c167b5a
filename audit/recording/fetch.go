package recording

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// FetchAPI is the part of the S3 client Fetch uses.
type FetchAPI interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	s3.ListObjectsV2APIClient
}

// Fetch writes the recording whose object is key in bucket to w. When the
// object is missing (the recording was live when its bastion stopped),
// it reassembles the recording from its pieces, in sequence order, and
// reports pieces > 0; it fails when the pieces are not contiguous
// (000000, 000001, ...), after writing those before the gap.
func Fetch(ctx context.Context, c FetchAPI, bucket, key string, w io.Writer) (pieces int, err error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err == nil {
		defer out.Body.Close()
		if _, err := io.Copy(w, out.Body); err != nil {
			return 0, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
		}
		return 0, nil
	}
	var nsk *types.NoSuchKey
	if !errors.As(err, &nsk) {
		return 0, fmt.Errorf("getting s3://%s/%s: %w", bucket, key, err)
	}
	keys, lerr := listPieces(ctx, c, bucket, key)
	if lerr != nil {
		return 0, lerr
	}
	if len(keys) == 0 {
		return 0, fmt.Errorf("getting s3://%s/%s: neither the recording nor pieces of it are there: %w", bucket, key, err)
	}
	for i, k := range keys {
		if k != PieceKey(key, i) {
			return i, fmt.Errorf("reassembling s3://%s/%s: piece %s missing (next is %s)", bucket, key, PieceKey(key, i), k)
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		if err != nil {
			return i, fmt.Errorf("getting s3://%s/%s: %w", bucket, k, err)
		}
		_, err = io.Copy(w, out.Body)
		out.Body.Close()
		if err != nil {
			return i, fmt.Errorf("reading s3://%s/%s: %w", bucket, k, err)
		}
	}
	return len(keys), nil
}
