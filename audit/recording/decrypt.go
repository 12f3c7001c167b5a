package recording

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// Errors of [Decrypt], each with a plain reason an auditor can act on.
var (
	// ErrWrongIdentity: none of the identities is a recipient of the
	// recording.
	ErrWrongIdentity = errors.New("none of the identities is a recipient of the recording")
	// ErrNotEncrypted: the file is not an age file (a plain .cast, or
	// its age header is cut or damaged).
	ErrNotEncrypted = errors.New("not an age file")
	// ErrTruncated: the file ends before age's final chunk, as a
	// recording does that was still being written when the bastion
	// crashed, or whose disk filled up.
	ErrTruncated = errors.New("truncated: the end of the recording never reached the file")
	// ErrCorrupt: a chunk does not authenticate; the file was changed,
	// damaged or cut inside a chunk (age cannot tell these apart).
	ErrCorrupt = errors.New("a chunk does not decrypt: the file was changed, damaged or cut inside a chunk")
)

// Decrypt returns the plaintext of the encrypted recording read from src,
// an asciicast v2 stream, decrypted with the first of identities that is
// one of its recipients. Errors, from Decrypt or from reading the result,
// wrap [ErrWrongIdentity], [ErrNotEncrypted], [ErrTruncated] or
// [ErrCorrupt]. Reading stops at the first error, after every byte of the
// chunks before it that authenticated: a truncated recording gives back
// what reached its file before the cut.
func Decrypt(src io.Reader, identities ...age.Identity) (io.Reader, error) {
	r, err := age.Decrypt(src, identities...)
	var noMatch *age.NoIdentityMatchError
	switch {
	case err == nil:
		return &decryptReader{r: r}, nil
	case errors.As(err, &noMatch):
		return nil, ErrWrongIdentity
	case strings.HasPrefix(err.Error(), "failed to read header"):
		return nil, ErrNotEncrypted
	}
	return nil, fmt.Errorf("decrypting recording: %w", err)
}

// decryptReader maps the errors of age's payload reader to Decrypt's.
type decryptReader struct {
	r io.Reader
}

func (d *decryptReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = ErrTruncated
	case strings.Contains(err.Error(), "failed to decrypt and authenticate"):
		err = ErrCorrupt
	default:
		err = fmt.Errorf("decrypting recording: %w", err)
	}
	return n, err
}
