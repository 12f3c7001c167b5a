package secfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestReadPrivateKey(t *testing.T) {
	cases := []struct {
		name    string
		mode    fs.FileMode
		wantErr bool
	}{
		{"0600", 0o600, false},
		{"0400", 0o400, false},
		{"0640", 0o640, true},
		{"0644", 0o644, true},
		{"0604", 0o604, true},
		{"0620", 0o620, true},
		{"0700", 0o700, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(p, []byte("k"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := ReadPrivateKey(p)
			var me *ModeError
			if got := errors.As(err, &me); got != tc.wantErr {
				t.Fatalf("ReadPrivateKey of a %04o file: got %v, want a *ModeError: %v", tc.mode, err, tc.wantErr)
			}
		})
	}
}

func TestReadAccessFile(t *testing.T) {
	for mode, wantErr := range map[fs.FileMode]bool{0o600: false, 0o644: false, 0o640: false, 0o664: true, 0o646: true, 0o666: true} {
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadAccessFile(p)
		var me *ModeError
		if got := errors.As(err, &me); got != wantErr {
			t.Errorf("ReadAccessFile of a %04o file: got %v, want a *ModeError: %v", mode, err, wantErr)
		}
	}
}

func TestDanglingSymlink(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := os.Symlink(filepath.Join(dir, "gone"), p); err != nil {
		t.Fatal(err)
	}
	_, err := ReadPrivateKey(p)
	var de *DanglingSymlinkError
	if !errors.As(err, &de) || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a *DanglingSymlinkError that is not fs.ErrNotExist", err)
	}
	if _, err := ReadPrivateKey(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: got %v, want fs.ErrNotExist", err)
	}
}

// TestReadPrivateKeyOtherOwner: a key owned by another user may be readable
// by its group (the group is how the file is given to the bastion, as with
// a Kubernetes Secret and fsGroup), but not writable by it nor usable by
// others. It needs root to chown.
func TestReadPrivateKeyOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the file to another user")
	}
	for mode, wantErr := range map[fs.FileMode]bool{0o440: false, 0o640: false, 0o460: true, 0o444: true, 0o600: false} {
		p := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(p, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadPrivateKey(p)
		var me *ModeError
		if got := errors.As(err, &me); got != wantErr {
			t.Errorf("ReadPrivateKey of a %04o file owned by another user: got %v, want a *ModeError: %v", mode, err, wantErr)
		}
	}
}

func TestNotRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ReadPrivateKey(p)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("FIFO: got no error, want a refusal")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("FIFO: ReadPrivateKey still blocked after 20s")
	}
}
