package tofu

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
)

const (
	idA = "i-0123456789abcdef0"
	idB = "i-0fedcba9876543210"
)

func newKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newECDSAKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func line(id string, k ssh.PublicKey) string {
	return id + " " + string(ssh.MarshalAuthorizedKey(k))
}

func check(s *Store, id string, k ssh.PublicKey) error {
	return s.Callback(id)("ignored.example:22", nil, k)
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{in: "tofu", want: TrustOnFirstUse},
		{in: "pinned", want: Pinned},
		{in: "", wantErr: true},
		{in: "TOFU", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseMode(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("Mode(%d).String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", "sub", "known_hosts")
	s, err := Open(path, TrustOnFirstUse)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	type learnt struct {
		id  string
		key ssh.PublicKey
	}
	var learned []learnt
	s.OnLearn = func(id string, key ssh.PublicKey) { learned = append(learned, learnt{id, key}) }

	first, other := newKey(t), newKey(t)

	// First use: learned and persisted.
	if err := check(s, idA, first); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if len(learned) != 1 || learned[0].id != idA || string(learned[0].key.Marshal()) != string(first.Marshal()) {
		t.Fatalf("OnLearn calls = %v, want one for %s", learned, idA)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading store: %v", err)
	}
	if got, want := string(b), line(idA, first); got != want {
		t.Errorf("file = %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode = %v, want 0600", got)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("directory mode = %v, want 0700", got)
	}

	// Same key again: accepted, not learned again.
	if err := check(s, idA, first); err != nil {
		t.Errorf("second use: %v", err)
	}
	if len(learned) != 1 {
		t.Errorf("OnLearn called %d times, want 1", len(learned))
	}

	// Another key for a known id: refused.
	err = check(s, idA, other)
	var mm *upstream.HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("changed key: got %v, want a HostKeyMismatchError", err)
	}
	if mm.Target != idA || string(mm.Got.Marshal()) != string(other.Marshal()) || len(mm.Want) != 1 {
		t.Errorf("mismatch = {%s, %s, %d wanted}, want {%s, the presented key, 1 wanted}", mm.Target, ssh.FingerprintSHA256(mm.Got), len(mm.Want), idA)
	}
	if got := upstream.PublicMessage(err); !strings.Contains(got, idA) {
		t.Errorf("PublicMessage = %q, want it to name %s", got, idA)
	}

	// A second instance is learned on its own.
	if err := check(s, idB, other); err != nil {
		t.Errorf("first use of %s: %v", idB, err)
	}

	// Reopened, the store remembers both and learns nothing new.
	r, err := Open(path, TrustOnFirstUse)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	r.OnLearn = func(id string, _ ssh.PublicKey) { t.Errorf("reopened store learned %s", id) }
	if err := check(r, idA, first); err != nil {
		t.Errorf("reopened, %s: %v", idA, err)
	}
	if err := check(r, idB, other); err != nil {
		t.Errorf("reopened, %s: %v", idB, err)
	}
	if err := check(r, idB, first); !errors.As(err, &mm) {
		t.Errorf("reopened, changed key for %s: got %v, want a mismatch", idB, err)
	}
}

func TestPinned(t *testing.T) {
	t.Parallel()
	known, other := newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	content := "# pinned EC2 host keys\n\n" + line(idA, known)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Pinned)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.OnLearn = func(id string, _ ssh.PublicKey) { t.Errorf("pinned store learned %s", id) }

	tests := []struct {
		name         string
		id           string
		key          ssh.PublicKey
		wantUnknown  bool
		wantMismatch bool
	}{
		{name: "pinned key", id: idA, key: known},
		{name: "other key", id: idA, key: other, wantMismatch: true},
		{name: "unknown id", id: idB, key: known, wantUnknown: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := check(s, tc.id, tc.key)
			var mm *upstream.HostKeyMismatchError
			if got := errors.Is(err, upstream.ErrHostKeyUnknown); got != tc.wantUnknown {
				t.Errorf("errors.Is(%v, ErrHostKeyUnknown) = %v, want %v", err, got, tc.wantUnknown)
			}
			if got := errors.As(err, &mm); got != tc.wantMismatch {
				t.Errorf("errors.As(%v, mismatch) = %v, want %v", err, got, tc.wantMismatch)
			}
			if err != nil && upstream.PublicMessage(err) == "upstream error" {
				t.Errorf("PublicMessage(%v) is the generic one", err)
			}
		})
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("pinned store wrote to its file: %q", b)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), Pinned); err == nil {
		t.Error("Open(missing, Pinned) succeeded, want an error")
	}
}

func TestOpenParse(t *testing.T) {
	t.Parallel()
	ed, ec := newKey(t), newECDSAKey(t)
	tests := []struct {
		name    string
		content string
		wantErr string
		wantIDs map[string]int
	}{
		{
			name:    "several hosts and keys",
			content: idA + "," + idB + " " + string(ssh.MarshalAuthorizedKey(ed)) + line(idA, ec),
			wantIDs: map[string]int{idA: 2, idB: 1},
		},
		{
			name:    "comments and blanks",
			content: "# c\n   \n" + line(idA, ed),
			wantIDs: map[string]int{idA: 1},
		},
		{name: "garbage", content: line(idA, ed) + "i-1 not-a-key\n", wantErr: "line 2"},
		{name: "marker", content: "@cert-authority " + line(idA, ed), wantErr: "marker"},
		{name: "hashed", content: "|1|abc=|def= " + string(ssh.MarshalAuthorizedKey(ed)), wantErr: "hashed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, TrustOnFirstUse)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Open error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			for id, n := range tc.wantIDs {
				if got := len(s.Keys(id)); got != n {
					t.Errorf("len(Keys(%s)) = %d, want %d", id, got, n)
				}
			}
		})
	}
}

func TestHostKeyAlgorithms(t *testing.T) {
	t.Parallel()
	ec := newECDSAKey(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(line(idA, ec)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, TrustOnFirstUse)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.HostKeyAlgorithms(idA), []string{ssh.KeyAlgoECDSA256}; !slices.Equal(got, want) {
		t.Errorf("HostKeyAlgorithms(%s) = %v, want %v", idA, got, want)
	}
	if got := s.HostKeyAlgorithms(idB); got != nil {
		t.Errorf("HostKeyAlgorithms(unknown) = %v, want nil", got)
	}
}

func TestAppendAfterMissingNewline(t *testing.T) {
	t.Parallel()
	a, b := newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.TrimSuffix(line(idA, a), "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, TrustOnFirstUse)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(s, idB, b); err != nil {
		t.Fatalf("learning: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := line(idA, a) + line(idB, b); string(got) != want {
		t.Errorf("file = %q, want %q", got, want)
	}
}

// TestConcurrentFirstUse checks that when several connections race to a
// new instance with different keys, exactly one key is learned and the
// rest are refused.
func TestConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "known_hosts")
	s, err := Open(path, TrustOnFirstUse)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	learned := 0
	s.OnLearn = func(string, ssh.PublicKey) { mu.Lock(); learned++; mu.Unlock() }

	const n = 20
	keys := make([]ssh.PublicKey, n)
	for i := range keys {
		keys[i] = newKey(t)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = check(s, idA, keys[i]) })
	}
	wg.Wait()

	accepted := 0
	for _, err := range errs {
		var mm *upstream.HostKeyMismatchError
		switch {
		case err == nil:
			accepted++
		case !errors.As(err, &mm):
			t.Errorf("got %v, want nil or a mismatch", err)
		}
	}
	if accepted != 1 || learned != 1 {
		t.Errorf("accepted %d, learned %d; want 1, 1", accepted, learned)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "\n"); got != 1 {
		t.Errorf("file has %d lines, want 1", got)
	}
}
