package recording

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
)

// encMarker is text the encrypted-recording tests record and then look
// for on disk.
const encMarker = "secret-marker-7f3a"

// ageChunk is the plaintext size of an age STREAM chunk; each is 16 bytes
// longer on disk.
const ageChunk = 64 << 10

// newIdentity returns a fresh age X25519 identity.
func newIdentity(t testing.TB) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// decrypt decrypts data with id, returning what decrypted before any
// error.
func decrypt(t *testing.T, data []byte, id age.Identity) ([]byte, error) {
	t.Helper()
	r, err := age.Decrypt(bytes.NewReader(data), id)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = io.Copy(&out, r)
	return out.Bytes(), err
}

// assertNoPlaintext fails when any file under dir holds one of the
// plaintext strings a recording starts with or was given.
func assertNoPlaintext(t *testing.T, dir string) (files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range []string{`"version"`, encMarker} {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds plaintext %q", path, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestEncryptedRecorderRoundTrip(t *testing.T) {
	id, other := newIdentity(t), newIdentity(t)
	dir := t.TempDir()
	r, err := Create(dir, "s"+EncryptedExt, Header{Start: time.Now(), Title: "alice@web-1"},
		WithRecipients(id.Recipient(), other.Recipient()))
	if err != nil {
		t.Fatal(err)
	}
	line := encMarker + " " + strings.Repeat("x", 1000) + "\r\n"
	for range 200 { // about 200 KiB: three full chunks reach the disk
		r.Output([]byte(line))
	}
	r.Input([]byte("typed " + encMarker))
	r.Resize(100, 30)
	// Past several 32 KiB flushes, the file being written holds whole
	// chunks and no plaintext.
	if n := assertNoPlaintext(t, dir); n != 1 {
		t.Errorf("got %d files in the folder while recording, want 1", n)
	}
	if fi, err := os.Stat(r.Path() + PartExt); err != nil || fi.Size() < 3*ageChunk {
		t.Errorf("got %v, %v for the file being written, want at least 3 chunks on disk", fi, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoPlaintext(t, dir)
	data, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	m := r.Manifest()
	sum := sha256.Sum256(data)
	if m.Name != "s"+EncryptedExt || m.Size != int64(len(data)) || m.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("got manifest %+v, want the name, size %d and SHA-256 of the file on disk", m, len(data))
	}
	for _, ident := range []age.Identity{id, other} {
		plain, err := decrypt(t, data, ident)
		if err != nil {
			t.Fatalf("decrypting: %v", err)
		}
		if int64(len(plain)) != r.Bytes() {
			t.Errorf("got %d bytes decrypted, Bytes %d; want them equal", len(plain), r.Bytes())
		}
		h, events, err := Parse(bytes.NewReader(plain))
		if err != nil {
			t.Fatalf("parsing the decrypted recording: %v", err)
		}
		if h.Title != "alice@web-1" || len(events) != 202 {
			t.Fatalf("got title %q and %d events, want alice@web-1 and 202", h.Title, len(events))
		}
		if e := events[200]; e.Type != TypeInput || e.Data != "typed "+encMarker {
			t.Errorf("got event %s %q, want the input", e.Type, e.Data)
		}
	}
	if _, err := decrypt(t, data, newIdentity(t)); !errors.As(err, new(*age.NoIdentityMatchError)) {
		t.Errorf("got %v decrypting with another identity, want NoIdentityMatchError", err)
	}
}

func TestEncryptedRecorderName(t *testing.T) {
	id := newIdentity(t)
	if _, err := Create(t.TempDir(), "s.cast", Header{}, WithRecipients(id.Recipient())); !errors.Is(err, ErrBadName) {
		t.Errorf("got %v for an encrypted recording named .cast, want ErrBadName", err)
	}
	if _, err := Create(t.TempDir(), "s"+EncryptedExt, Header{}); !errors.Is(err, ErrBadName) {
		t.Errorf("got %v for a plain recording named %s, want ErrBadName", err, EncryptedExt)
	}
}

// TestEncryptedRecorderFlushes checks what a flush means encrypted: the
// events go into age's chunk in memory, the file gets only whole chunks
// (and fsyncs), and what is on disk before Close decrypts up to its last
// whole chunk and then reports the file truncated.
func TestEncryptedRecorderFlushes(t *testing.T) {
	id := newIdentity(t)
	sf := &signalFile{wrote: make(chan []byte, 100), synced: make(chan struct{}, 100)}
	wrap := func(f file) file { sf.file = f; return sf }
	dir := t.TempDir()
	r, err := Create(dir, "s"+EncryptedExt, Header{Start: time.Now()}, WithRecipients(id.Recipient()),
		WithFlushInterval(10*time.Millisecond), func(o *options) { o.wrap = wrap })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	part := r.Path() + PartExt
	fi, err := os.Stat(part)
	if err != nil {
		t.Fatal(err)
	}
	hdrSize := fi.Size() // the age header and nonce, written by Create
	if hdrSize == 0 {
		t.Fatal("got an empty file after Create, want the age header")
	}

	r.Output([]byte(encMarker))
	select {
	case <-sf.synced:
	case <-time.After(waitTimeout):
		t.Fatalf("the file was not synced within %v", waitTimeout)
	}
	if fi, _ := os.Stat(part); fi.Size() != hdrSize {
		t.Errorf("got %d bytes on disk after a flush of a small event, want the %d of the header: no partial chunk", fi.Size(), hdrSize)
	}

	// Fill more than one chunk: one whole chunk reaches the disk.
	for r.Bytes() <= ageChunk {
		r.Output([]byte(strings.Repeat("y", 4000)))
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		fi, _ := os.Stat(part)
		if fi.Size() == hdrSize+ageChunk+16 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d bytes on disk, want the header and one chunk, %d", fi.Size(), hdrSize+ageChunk+16)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded by deadline
	}
	assertNoPlaintext(t, dir)
	data, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := decrypt(t, data, id)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v decrypting the file being written, want it reported truncated", err)
	}
	if len(plain) != int(ageChunk) || !bytes.Contains(plain, []byte(encMarker)) {
		t.Errorf("got %d bytes decrypted from the file being written, want the first chunk, %d, with the event", len(plain), ageChunk)
	}
}

// TestEncryptedRecorderWriteError checks that a full disk during an
// encrypted recording takes the failure path: the failure func is told,
// Close returns the error, and the file kept is whole chunks that decrypt
// up to the failure and report truncation.
func TestEncryptedRecorderWriteError(t *testing.T) {
	id := newIdentity(t)
	var ff *failingFile
	wrap := func(f file) file { ff = &failingFile{file: f, limit: 150_000}; return ff }
	failed := make(chan error, 1)
	r, err := Create(t.TempDir(), "s"+EncryptedExt, Header{Start: time.Now()}, WithRecipients(id.Recipient()),
		WithFailureFunc(func(err error) { failed <- err }), func(o *options) { o.wrap = wrap })
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("y", 1000) + "\r\n"
	for range 300 { // 300 KiB: the third chunk does not fit
		r.Output([]byte(line))
	}
	select {
	case err := <-failed:
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("got failure %v, want ENOSPC", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the failure func was not called within %v", waitTimeout)
	}
	if err := r.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("got Close error %v, want ENOSPC", err)
	}
	data, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatalf("got %v, want the cut recording kept", err)
	}
	m := r.Manifest()
	if sum := sha256.Sum256(data); m.Size != int64(len(data)) || m.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("got manifest %+v, want the size %d and SHA-256 of the cut file", m, len(data))
	}
	plain, err := decrypt(t, data, id)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v decrypting the cut file, want it reported truncated", err)
	}
	if len(plain) != 2*int(ageChunk) {
		t.Errorf("got %d bytes decrypted, want the two chunks that fit, %d", len(plain), 2*ageChunk)
	}
}

// TestEncryptedRecorderMaxBytes checks that the cap counts the plaintext.
func TestEncryptedRecorderMaxBytes(t *testing.T) {
	const max = 4000
	id := newIdentity(t)
	r, err := Create(t.TempDir(), "s"+EncryptedExt, Header{Start: time.Now()}, WithRecipients(id.Recipient()), WithMaxBytes(max))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		r.Output([]byte(strings.Repeat("z", 100)))
	}
	if !r.Truncated() {
		t.Errorf("got Truncated false, want true")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := decrypt(t, data, id)
	if err != nil {
		t.Fatal(err)
	}
	_, events, err := Parse(bytes.NewReader(plain))
	if err != nil || len(events) == 0 || events[len(events)-1].Data != TruncatedMarker {
		t.Fatalf("got %d events, %v; want the recording to end with the truncation marker", len(events), err)
	}
	if int64(len(plain)) != r.Bytes() || len(plain) > max+100 {
		t.Errorf("got %d plaintext bytes, Bytes %d, want them equal and about the cap, %d", len(plain), r.Bytes(), max)
	}
}

// TestDecryptErrors checks the errors Decrypt maps age's to.
func TestDecryptErrors(t *testing.T) {
	id := newIdentity(t)
	dir := t.TempDir()
	r, err := Create(dir, "s"+EncryptedExt, Header{Start: time.Now()}, WithRecipients(id.Recipient()))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		r.Output([]byte(strings.Repeat("w", 1000)))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(r.Path())
	read := func(data []byte, id age.Identity) (int, error) {
		dr, err := Decrypt(bytes.NewReader(data), id)
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(dr)
		return len(b), err
	}
	if n, err := read(data, id); err != nil || int64(n) != r.Bytes() {
		t.Fatalf("got %d bytes, %v; want %d, nil", n, err, r.Bytes())
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)-100] ^= 1
	for _, tc := range []struct {
		name string
		data []byte
		id   age.Identity
		want error
	}{
		{"wrong identity", data, newIdentity(t), ErrWrongIdentity},
		{"plain asciicast", []byte(`{"version": 2, "width": 80, "height": 24}` + "\n"), id, ErrNotEncrypted},
		{"cut in the header", data[:20], id, ErrNotEncrypted},
		// age cannot tell a chunk cut short from a damaged one; the
		// recorder only leaves whole chunks (see cipherFile).
		{"cut inside a chunk", data[:len(data)-10], id, ErrCorrupt},
		{"cut at a chunk boundary", data[:len(data)-int(r.Bytes()-ageChunk+16)], id, ErrTruncated},
		{"a byte flipped", flipped, id, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := read(tc.data, tc.id); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestUploaderShipsEncrypted checks that a finished encrypted recording
// counts as finished for the uploader and reaches S3 byte for byte.
func TestUploaderShipsEncrypted(t *testing.T) {
	f := newFakeS3(t)
	dir := t.TempDir()
	u, attempts := newUploader(t, f, dir)
	u.Start(t.Context())
	id := newIdentity(t)
	r, err := Create(dir, "s1"+EncryptedExt, Header{Start: time.Now()}, WithRecipients(id.Recipient()))
	if err != nil {
		t.Fatal(err)
	}
	r.Output([]byte(encMarker))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(r.Path())
	u.Enqueue(r.Path())
	if failed := waitUploaded(t, attempts, r.Path()); len(failed) != 0 {
		t.Errorf("got failures %v, want none", failed)
	}
	body, _, err := f.object("sessions/s1" + EncryptedExt)
	if err != nil || !bytes.Equal(body, want) {
		t.Fatalf("got object of %d bytes, %v; want the %d bytes of the file", len(body), err, len(want))
	}
	if plain, err := decrypt(t, body, id); err != nil || !bytes.Contains(plain, []byte(encMarker)) {
		t.Errorf("decrypting the object: got %d bytes, %v; want the recording", len(plain), err)
	}
}
