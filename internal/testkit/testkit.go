// Package testkit is the test kit shared by the e2e and faults suites, the
// provider integration tests and the bench harness: OpenSSH tool lookup,
// ed25519 keys on disk, waiting on a condition with a deadline, a
// synchronized buffer, background processes stopped by pid, and a real
// sshd on a loopback port.
//
// It depends on the standard library and golang.org/x/crypto only. Each
// helper comes in two forms where the bench harness (a program, not a
// test) needs one: a function returning an error, and a testing.TB form
// that fails the test. A missing tool fails, never skips: the README's test
// command installs every tool the suites use.
package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// LookTool finds an OpenSSH tool (or any other) on PATH, or in /usr/sbin,
// where Debian puts sshd.
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p, nil
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin: install it (apt-get install -y openssh-server openssh-client rsync; the README's test command does)", name)
}

// Tool is LookTool that fails the test, never skips it, when the tool is
// missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := LookTool(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteFile writes content to path with mode, creating the folders on the
// way, and fails the test on error.
func WriteFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago. It is
// for clients that bind a port themselves (ssh -L and -R); another process
// may take the port first, so servers are handed listeners instead, or
// retry as LaunchSSHD does.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := kernelPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
