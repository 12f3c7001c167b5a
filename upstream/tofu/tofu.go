// Package tofu is a host key store for instances whose host keys AWS does not
// report (EC2 via Instance Connect). It reads and writes OpenSSH known_hosts
// format with the instance id as the host pattern:
//
//	i-0123456789abcdef0 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA…
//
// In trust-on-first-use mode the first key an instance presents is recorded
// and every later key must match it; in pinned mode the file is only read and
// an instance without an entry is refused.
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
	"strings"
	"sync"

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

// Store is a known_hosts file keyed by instance id. It is loaded once by
// Open; afterwards the only file I/O is appending a learned key. A Store is
// safe for concurrent use.
type Store struct {
	// OnLearn, if non-nil, is called after a key has been learned and
	// persisted, outside the Store's lock (so it may call back into the
	// Store). Set it before the first Callback runs.
	OnLearn func(id string, key ssh.PublicKey)

	path string
	mode Mode

	// mu protects keys and serialises appends to the file, so that two
	// first connections to one instance cannot both learn a key: the
	// second one compares against the key the first recorded.
	mu   sync.Mutex
	keys map[string][]ssh.PublicKey
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
	s := &Store{path: path, mode: mode, keys: make(map[string][]ssh.PublicKey)}
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

// load parses known_hosts lines from r into s.keys.
func (s *Store) load(r io.Reader) error {
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
			if !s.has(h, key) {
				s.keys[h] = append(s.keys[h], key)
			}
		}
	}
	return sc.Err()
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
// A key on record for id is accepted; another key for a known id fails with
// an *upstream.Error wrapping *upstream.HostKeyMismatchError. For an unknown
// id a TrustOnFirstUse store records and accepts the key (refusing the
// connection if the key cannot be persisted), and a Pinned store fails with
// an *upstream.Error wrapping upstream.ErrHostKeyUnknown.
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
	if want, ok := s.keys[id]; ok {
		if s.has(id, key) {
			return false, nil
		}
		return false, &upstream.Error{
			Public: "upstream host key differs from the one recorded for " + id,
			Err: &upstream.HostKeyMismatchError{
				Target: id,
				Got:    key,
				Want:   append([]ssh.PublicKey(nil), want...),
			},
		}
	}
	if s.mode != TrustOnFirstUse {
		return false, &upstream.Error{
			Public: "no pinned host key for " + id,
			Err:    fmt.Errorf("checking host key of %s: %w", id, upstream.ErrHostKeyUnknown),
		}
	}
	if err := s.appendLine(id, key); err != nil {
		return false, &upstream.Error{
			Public: "could not record the upstream host key",
			Err:    fmt.Errorf("recording host key of %s: %w", id, err),
		}
	}
	s.keys[id] = []ssh.PublicKey{key}
	return true, nil
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

// appendLine appends one known_hosts line for id and key to the file and
// fsyncs it. The line is written with a single write on an O_APPEND
// descriptor, so a concurrent reader sees either none or all of it; if the
// file did not end in a newline (edited by hand) one is written first. A
// newly created file's directory is fsynced too, so that the entry survives
// a crash. s.mu must be held.
func (s *Store) appendLine(id string, key ssh.PublicKey) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}
	_, statErr := os.Stat(s.path)
	created := errors.Is(statErr, os.ErrNotExist)

	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line := []byte(knownhostsLine(id, key))
	if needsNewline, err := endsWithoutNewline(f); err != nil {
		f.Close()
		return err
	} else if needsNewline {
		line = append([]byte{'\n'}, line...)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if created {
		return syncDir(dir)
	}
	return nil
}

// knownhostsLine formats one known_hosts entry, newline included.
func knownhostsLine(id string, key ssh.PublicKey) string {
	return id + " " + string(ssh.MarshalAuthorizedKey(key))
}

// endsWithoutNewline reports whether the file f, open for reading, is
// non-empty and does not end in a newline.
func endsWithoutNewline(f *os.File) (bool, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false, err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], fi.Size()-1); err != nil {
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
