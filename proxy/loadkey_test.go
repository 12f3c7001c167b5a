package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"bastion/internal/secfile"
)

// TestLoadOrCreateKeyFiles covers the key file cases start-up meets: a
// missing file is created 0600 in a 0700 folder and read back; a dangling
// symlink and a loose mode are refused at once.
func TestLoadOrCreateKeyFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state", "host_ed25519")
	s1, created, err := LoadOrCreateKey(p)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateKey: created %v, %v; want a new key", created, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created key mode: got %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if di, _ := os.Stat(filepath.Dir(p)); di.Mode().Perm() != 0o700 {
		t.Errorf("created folder mode: got %v, want 0700", di.Mode().Perm())
	}
	s2, created, err := LoadOrCreateKey(p)
	if err != nil || created || string(s2.PublicKey().Marshal()) != string(s1.PublicKey().Marshal()) {
		t.Fatalf("second LoadOrCreateKey: created %v, %v; want the same key read back", created, err)
	}

	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	var me *secfile.ModeError
	if _, _, err := LoadOrCreateKey(p); !errors.As(err, &me) {
		t.Errorf("0644 key: got %v, want a *secfile.ModeError", err)
	}

	link := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "no", "such", "key"), link); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := LoadOrCreateKey(link)
		done <- err
	}()
	select {
	case err := <-done:
		var de *secfile.DanglingSymlinkError
		if !errors.As(err, &de) {
			t.Errorf("dangling symlink: got %v, want a *secfile.DanglingSymlinkError", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dangling symlink: LoadOrCreateKey still running after 20s")
	}
}
