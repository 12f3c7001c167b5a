package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Binding ties an SSH key, by its SHA256 fingerprint, to the account that
// logged in with it, until Expires. It holds no token.
type Binding struct {
	Fingerprint string    `json:"fingerprint"`
	Issuer      string    `json:"issuer"`
	Subject     string    `json:"subject"`
	Username    string    `json:"username"`
	Groups      []string  `json:"groups,omitempty"`
	Email       string    `json:"email,omitempty"`
	Expires     time.Time `json:"expires"`
}

// Store keeps bindings. Implementations bound every call in time.
type Store interface {
	// Binding returns the binding of fingerprint, if there is one that
	// has not expired.
	Binding(ctx context.Context, fingerprint string) (Binding, bool, error)
	// PutBinding stores b, replacing any binding of its fingerprint.
	PutBinding(ctx context.Context, b Binding) error
	// DeleteBinding removes the binding of fingerprint, if any.
	DeleteBinding(ctx context.Context, fingerprint string) error
}

// ErrFull is PutBinding's error when a store holds its most bindings
// (none expired).
var ErrFull = errors.New("sso: the binding store is full")

// maxFileSize bounds the bindings file read at start.
const maxFileSize = 64 << 20

// MaxPerSubject bounds the keys one account keeps bound in a FileStore: a
// login of another key beyond it drops that account's binding that ends
// first, so one person cannot fill the store for everyone.
const MaxPerSubject = 32

// FileStore keeps bindings in memory and in a JSON file (mode 0600),
// rewritten whole by an atomic rename after every change, so that a crash
// leaves the old file or the new one. Expired bindings are pruned when the
// file is written. Its zero value is not usable: use OpenFileStore.
type FileStore struct {
	path string
	max  int
	now  func() time.Time

	mu sync.Mutex // protects m and the file's writes
	m  map[string]Binding
}

// OpenFileStore opens the store of the file at path, which may be
// missing (it is created, mode 0600, by the first PutBinding), keeping at
// most max bindings. A file that cannot be parsed is an error: the
// operator must look at it (or remove it) rather than have logins vanish.
// now is the clock; if nil, time.Now.
func OpenFileStore(path string, max int, now func() time.Time) (*FileStore, error) {
	if now == nil {
		now = time.Now
	}
	s := &FileStore{path: path, max: max, now: now, m: map[string]Binding{}}
	// Checked now rather than at the first login, which would fail.
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("opening sso bindings %s: the folder %s does not exist", path, filepath.Dir(path))
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening sso bindings %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading sso bindings %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("reading sso bindings %s: longer than %d bytes", path, maxFileSize)
	}
	var file bindingsFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("reading sso bindings %s: %w (remove the file to drop every binding)", path, err)
	}
	t := now()
	for _, b := range file.Bindings {
		if b.Fingerprint != "" && t.Before(b.Expires) {
			s.m[b.Fingerprint] = b
		}
	}
	s.evict()
	return s, nil
}

// bindingsFile is the file's layout.
type bindingsFile struct {
	Version  int       `json:"version"`
	Bindings []Binding `json:"bindings"`
}

// Binding implements Store.
func (s *FileStore) Binding(_ context.Context, fp string) (Binding, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[fp]
	if !ok || !s.now().Before(b.Expires) {
		return Binding{}, false, nil
	}
	return b, true, nil
}

// PutBinding implements Store. Expired bindings are pruned first; a store
// still full refuses with ErrFull.
func (s *FileStore) PutBinding(_ context.Context, b Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[b.Fingerprint]
	var dropped *Binding
	if !had {
		dropped = s.subjectFull(b)
		if dropped == nil && len(s.m) >= s.max {
			s.prune()
			if len(s.m) >= s.max {
				return ErrFull
			}
		}
	}
	if dropped != nil {
		delete(s.m, dropped.Fingerprint)
	}
	s.m[b.Fingerprint] = b
	if err := s.write(); err != nil {
		if had {
			s.m[b.Fingerprint] = old
		} else {
			delete(s.m, b.Fingerprint)
		}
		if dropped != nil {
			s.m[dropped.Fingerprint] = *dropped
		}
		return err
	}
	return nil
}

// subjectFull returns, when b's account already has MaxPerSubject live
// bindings, the one of them that ends first; s.mu is held.
func (s *FileStore) subjectFull(b Binding) *Binding {
	t := s.now()
	var n int
	var first *Binding
	for _, o := range s.m {
		if o.Issuer != b.Issuer || o.Subject != b.Subject || !t.Before(o.Expires) {
			continue
		}
		n++
		if first == nil || o.Expires.Before(first.Expires) {
			first = &o
		}
	}
	if n < MaxPerSubject {
		return nil
	}
	return first
}

// DeleteBinding implements Store.
func (s *FileStore) DeleteBinding(_ context.Context, fp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[fp]
	if !had {
		return nil
	}
	delete(s.m, fp)
	if err := s.write(); err != nil {
		s.m[fp] = old
		return err
	}
	return nil
}

// Len returns how many bindings the store holds, expired ones not yet
// pruned included.
func (s *FileStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// prune drops expired bindings; s.mu is held.
func (s *FileStore) prune() {
	t := s.now()
	for fp, b := range s.m {
		if !t.Before(b.Expires) {
			delete(s.m, fp)
		}
	}
}

// evict keeps the max bindings that expire last, for a file written with
// a larger max; s.mu is held or s not yet shared.
func (s *FileStore) evict() {
	if len(s.m) <= s.max {
		return
	}
	all := make([]Binding, 0, len(s.m))
	for _, b := range s.m {
		all = append(all, b)
	}
	slices.SortFunc(all, func(a, b Binding) int { return b.Expires.Compare(a.Expires) })
	for _, b := range all[s.max:] {
		delete(s.m, b.Fingerprint)
	}
}

// write replaces the file with the bindings in s.m, expired ones pruned:
// a temporary file in the same folder, mode 0600, synced, renamed over the
// old one, and the folder synced. s.mu is held.
func (s *FileStore) write() error {
	s.prune()
	file := bindingsFile{Version: 1, Bindings: make([]Binding, 0, len(s.m))}
	for _, b := range s.m {
		file.Bindings = append(file.Bindings, b)
	}
	slices.SortFunc(file.Bindings, func(a, b Binding) int {
		switch {
		case a.Fingerprint < b.Fingerprint:
			return -1
		case a.Fingerprint > b.Fingerprint:
			return 1
		}
		return 0
	})
	data, err := json.Marshal(file)
	if err != nil {
		return fmt.Errorf("encoding sso bindings: %w", err)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, ".sso-bindings-*.tmp")
	if err != nil {
		return fmt.Errorf("writing sso bindings: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing sso bindings: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing sso bindings: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing sso bindings: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing sso bindings: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("replacing sso bindings %s: %w", s.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

var _ Store = (*FileStore)(nil)
