// Package tofu is a host key store for instances whose host keys AWS does not
// report (EC2 via Instance Connect). It reads and writes OpenSSH known_hosts
// format with the instance id as the host pattern:
//
//	i-0123456789abcdef0 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA…
//
// In trust-on-first-use mode the first key an instance presents is recorded
// and every later key must match it; in pinned mode the file is only read and
// an instance without an entry is refused.
//
// Several processes (bastions on one host, or one restarted) may share the
// file. A store learns a key only under an exclusive flock(2) on the file,
// after re-reading it, so the first key recorded by any of them wins and
// the others refuse a different one. A file that holds conflicting keys for
// an instance (see Store.Conflicts) trusts none of them.
package tofu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
)

// Mode says whether a Store may learn keys.
type Mode int

const (
	// TrustOnFirstUse records the first key seen for an instance id and
	// refuses any other key for it afterwards.
	TrustOnFirstUse Mode = iota + 1
	// Pinned only accepts keys already in the file; it never writes.
	Pinned
)

// Mode names as used in the configuration (host_keys: tofu).
const (
	ModeNameTOFU   = "tofu"
	ModeNamePinned = "pinned"
)

// ParseMode parses a configuration value ("tofu" or "pinned").
func ParseMode(s string) (Mode, error) {
	switch s {
	case ModeNameTOFU:
		return TrustOnFirstUse, nil
	case ModeNamePinned:
		return Pinned, nil
	}
	return 0, fmt.Errorf("unknown host key mode %q (want %q or %q)", s, ModeNameTOFU, ModeNamePinned)
}

// String returns the configuration name of m.
func (m Mode) String() string {
	switch m {
	case TrustOnFirstUse:
		return ModeNameTOFU
	case Pinned:
		return ModeNamePinned
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Store is a known_hosts file keyed by instance id. It is loaded by Open;
// afterwards the file is read again, under its lock, only before learning
// a key for an id the store does not know, and appended to. A Store is
// safe for concurrent use.
type Store struct {
	// OnLearn, if non-nil, is called after a key has been learned and
	// persisted, outside the Store's lock (so it may call back into the
	// Store). Set it before the first Callback runs.
	OnLearn func(id string, key ssh.PublicKey)

	path string
	mode Mode

	// mu protects keys and conflicts and serialises learning within the
	// process, so that two first connections to one instance cannot both
	// learn a key: the second one compares against the key the first
	// recorded. Across processes the file lock does the same (see learn);
	// mu is taken first.
	mu   sync.Mutex
	keys map[string][]ssh.PublicKey
	// conflicts holds the ids whose keys in the file disagree (see
	// Conflicts); none of their keys is trusted.
	conflicts map[string]bool
}

// Open loads the store at path. In TrustOnFirstUse mode a missing file is an
// empty store; the file (mode 0600) and its directory (0700) are created when
// the first key is learned. In Pinned mode the file must exist.
func Open(path string, mode Mode) (*Store, error) {
	if mode != TrustOnFirstUse && mode != Pinned {
		return nil, fmt.Errorf("opening host key store %s: invalid mode %d", path, int(mode))
	}
	if path == "" {
		return nil, errors.New("opening host key store: no path")
	}
	s := &Store{path: path, mode: mode, keys: make(map[string][]ssh.PublicKey), conflicts: make(map[string]bool)}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && mode == TrustOnFirstUse:
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("opening host key store: %w", err)
	}
	defer f.Close()
	if err := s.load(f); err != nil {
		return nil, fmt.Errorf("reading host key store %s: %w", path, err)
	}
	return s, nil
}

// Conflicts returns the instance ids whose entries in the file disagree,
// sorted: in TrustOnFirstUse mode, an id with more than one key (the store
// records one; a second is what two bastions that learned at once before
// the file was locked leave behind); in Pinned mode, an id with two keys
// of one type (an sshd has one key per type). Every key of such an id is
// refused as a mismatch until the wrong lines are removed.
func (s *Store) Conflicts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.conflicts))
	for id := range s.conflicts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// conflicting reports whether keys, all on record for one id, disagree
// (see Conflicts).
func (s *Store) conflicting(keys []ssh.PublicKey) bool {
	if s.mode == TrustOnFirstUse {
		return len(keys) > 1
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k.Type()] {
			return true
		}
		seen[k.Type()] = true
	}
	return false
}

// load parses known_hosts lines from r into s.keys, replacing what was
// there, and recomputes s.conflicts. s.mu must be held (or s not yet
// shared).
func (s *Store) load(r io.Reader) error {
	keys := make(map[string][]ssh.PublicKey)
	has := func(id string, key ssh.PublicKey) bool {
		return slices.ContainsFunc(keys[id], func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), key.Marshal()) })
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if marker != "" {
			return fmt.Errorf("line %d: marker @%s is not supported", n, marker)
		}
		for _, h := range hosts {
			if strings.HasPrefix(h, "|") {
				return fmt.Errorf("line %d: hashed host names are not supported", n)
			}
			if !has(h, key) {
				keys[h] = append(keys[h], key)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	s.keys = keys
	clear(s.conflicts)
	for id, ks := range keys {
		if s.conflicting(ks) {
			s.conflicts[id] = true
		}
	}
	return nil
}

// Mode returns the store's mode.
func (s *Store) Mode() Mode { return s.mode }

// Keys returns the keys on record for id.
func (s *Store) Keys(id string) []ssh.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ssh.PublicKey(nil), s.keys[id]...)
}

// HostKeyAlgorithms returns the host key algorithms to offer when connecting
// to id, so that the instance presents a key of a type on record; nil if
// nothing is recorded (any algorithm, as on first use).
func (s *Store) HostKeyAlgorithms(id string) []string {
	return upstream.HostKeyAlgorithms(s.Keys(id)...)
}

// Callback returns a host key callback for the instance id. The hostname
// and address the SSH client passes are ignored: the id is the identity.
//
// A key on record for id is accepted; another key for a known id, and any
// key for an id with conflicting entries, fails with an *upstream.Error
// wrapping *upstream.HostKeyMismatchError. For an unknown id a
// TrustOnFirstUse store records and accepts the key, unless another
// process recorded one first (then the key is checked against that one),
// refusing the connection if the key cannot be persisted; a Pinned store
// fails with an *upstream.Error wrapping upstream.ErrHostKeyUnknown.
func (s *Store) Callback(id string) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		learned, err := s.check(id, key)
		if err != nil {
			return err
		}
		if learned && s.OnLearn != nil {
			s.OnLearn(id, key)
		}
		return nil
	}
}

// check verifies key for id, learning it if allowed, and reports whether
// it was learned.
func (s *Store) check(id string, key ssh.PublicKey) (learned bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[id]; ok {
		return false, s.verify(id, key)
	}
	if s.mode != TrustOnFirstUse {
		return false, &upstream.Error{
			Public: "no pinned host key for " + id,
			Err:    fmt.Errorf("checking host key of %s: %w", id, upstream.ErrHostKeyUnknown),
		}
	}
	learned, err = s.learn(id, key)
	if err != nil {
		return false, &upstream.Error{
			Public: "could not record the upstream host key",
			Err:    fmt.Errorf("recording host key of %s: %w", id, err),
		}
	}
	if !learned {
		// Another process recorded a key for id first.
		return false, s.verify(id, key)
	}
	return true, nil
}

// verify checks key against the keys on record for id, which has some.
// s.mu must be held.
func (s *Store) verify(id string, key ssh.PublicKey) error {
	want := s.keys[id]
	mismatch := &upstream.HostKeyMismatchError{Target: id, Got: key, Want: append([]ssh.PublicKey(nil), want...)}
	if s.conflicts[id] {
		return &upstream.Error{
			Public: "upstream host key differs from the one recorded for " + id,
			Err:    fmt.Errorf("%s holds %d conflicting keys for %s; trusting none until the wrong lines are removed: %w", s.path, len(want), id, mismatch),
		}
	}
	if s.has(id, key) {
		return nil
	}
	return &upstream.Error{Public: "upstream host key differs from the one recorded for " + id, Err: mismatch}
}

// lockTimeout bounds the wait for another process's lock on the file,
// which it holds only to read the file and append a line.
const lockTimeout = 10 * time.Second

// learn records key for id, unknown to s, unless the file already has keys
// for id: it takes an exclusive flock on the file, re-reads it (another
// process may have learned id since Open), and appends the line only if id
// is still unknown. It reports whether it recorded the key; if not, s.keys
// holds what the file has for id. s.mu must be held.
func (s *Store) learn(id string, key ssh.PublicKey) (bool, error) {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("creating directory: %w", err)
	}
	_, statErr := os.Stat(s.path)
	created := errors.Is(statErr, os.ErrNotExist)

	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	// Closing the file releases the lock.
	defer f.Close()
	if err := lockFile(f, lockTimeout); err != nil {
		return false, err
	}
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	if err := s.load(io.NewSectionReader(f, 0, fi.Size())); err != nil {
		return false, fmt.Errorf("re-reading %s: %w", s.path, err)
	}
	if _, ok := s.keys[id]; ok {
		return false, nil
	}
	if err := appendLine(f, fi.Size(), id, key); err != nil {
		return false, err
	}
	if created {
		if err := syncDir(dir); err != nil {
			return false, err
		}
	}
	s.keys[id] = []ssh.PublicKey{key}
	return true, nil
}

// lockFile takes an exclusive flock on f, waiting at most timeout for
// another holder.
func lockFile(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("locking %s: still locked by another process after %s", f.Name(), timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// has reports whether key is on record for id. s.mu must be held (or s not
// yet shared).
func (s *Store) has(id string, key ssh.PublicKey) bool {
	b := key.Marshal()
	for _, k := range s.keys[id] {
		if bytes.Equal(k.Marshal(), b) {
			return true
		}
	}
	return false
}

// appendLine appends one known_hosts line for id and key to f, open with
// O_APPEND and size bytes long, and fsyncs it. The line is written with a
// single write, so a concurrent reader sees either none or all of it; if
// the file did not end in a newline (edited by hand) one is written first.
func appendLine(f *os.File, size int64, id string, key ssh.PublicKey) error {
	line := []byte(knownhostsLine(id, key))
	if needsNewline, err := endsWithoutNewline(f, size); err != nil {
		return err
	} else if needsNewline {
		line = append([]byte{'\n'}, line...)
	}
	if _, err := f.Write(line); err != nil {
		return err
	}
	return f.Sync()
}

// knownhostsLine formats one known_hosts entry, newline included.
func knownhostsLine(id string, key ssh.PublicKey) string {
	return id + " " + string(ssh.MarshalAuthorizedKey(key))
}

// endsWithoutNewline reports whether the file f, open for reading and
// size bytes long, is non-empty and does not end in a newline.
func endsWithoutNewline(f *os.File, size int64) (bool, error) {
	if size == 0 {
		return false, nil
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return false, err
	}
	return b[0] != '\n', nil
}

// syncDir fsyncs a directory so that a newly created entry in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
