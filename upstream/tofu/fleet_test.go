package tofu

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
)

// memHostKeys is an in-memory fleet.HostKeys whose calls can be made to
// fail, standing for the table going away.
type memHostKeys struct {
	mu   sync.Mutex
	keys map[string][]string
	down bool
}

var errDown = errors.New("table unreachable")

func (m *memHostKeys) Get(_ context.Context, id string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errDown
	}
	return m.keys[id], nil
}

func (m *memHostKeys) Learn(_ context.Context, id string, keys []string) (bool, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return false, nil, errDown
	}
	if got, ok := m.keys[id]; ok {
		return false, got, nil
	}
	m.keys[id] = keys
	return true, keys, nil
}

func TestFleetHostKeys(t *testing.T) {
	remote := &memHostKeys{keys: map[string][]string{}}
	open := func(t *testing.T) *Fleet {
		local, err := Open(filepath.Join(t.TempDir(), "known_hosts"), TrustOnFirstUse)
		if err != nil {
			t.Fatal(err)
		}
		return &Fleet{Local: local, Remote: remote}
	}
	k1, k2 := newKey(t), newKey(t)
	const id = "i-0123456789abcdef0"
	a, b := open(t), open(t)

	learned := 0
	a.OnLearn = func(string, ssh.PublicKey) { learned++ }
	if err := a.Callback(id)("h", nil, k1); err != nil || learned != 1 {
		t.Fatalf("first key fleet-wide: %v, learned %d", err, learned)
	}
	var mm *upstream.HostKeyMismatchError
	if err := b.Callback(id)("h", nil, k2); !errors.As(err, &mm) {
		t.Errorf("another replica, another key: %v; want a mismatch", err)
	}
	if err := b.Callback(id)("h", nil, k1); err != nil {
		t.Errorf("another replica, the fleet's key: %v", err)
	}

	remote.mu.Lock()
	remote.down = true
	remote.mu.Unlock()
	if err := a.Callback(id)("h", nil, k1); err != nil {
		t.Errorf("table down, a key confirmed before: %v", err)
	}
	fresh := open(t)
	if err := fresh.Callback(id)("h", nil, k1); err == nil {
		t.Error("table down, a replica that never confirmed the key accepted it")
	}
	if err := a.Callback(id)("h", nil, k2); err == nil {
		t.Error("table down, another key accepted")
	}

	// A replica whose own file learned another key before it joined the
	// fleet: the fleet's key wins, and the file's is not trusted offline.
	remote.mu.Lock()
	remote.down = false
	remote.mu.Unlock()
	stale := open(t)
	if _, err := stale.Local.check(id, k2); err != nil {
		t.Fatal(err)
	}
	if err := stale.Callback(id)("h", nil, k2); err == nil {
		t.Error("the local file's key beat the fleet's")
	}
	if err := stale.Callback(id)("h", nil, k1); err != nil {
		t.Errorf("the fleet's key, with a stale local file: %v", err)
	}
	remote.mu.Lock()
	remote.down = true
	remote.mu.Unlock()
	if err := stale.Callback(id)("h", nil, k2); err == nil {
		t.Error("table down: the stale local key was accepted")
	}
}
