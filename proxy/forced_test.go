package proxy

import (
	"os/exec"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestForcedCommandOriginal runs the command lines forcedCommand builds
// through real shells: the forced command runs, sees what was asked in
// SSH_ORIGINAL_COMMAND byte for byte, and nothing of what was asked runs.
func TestForcedCommandOriginal(t *testing.T) {
	const force = `printf '%s|' "$SSH_ORIGINAL_COMMAND"`
	originals := []string{
		"echo asked",
		"it's",
		`a\b`,
		`'; touch /tmp/pwned-forced; '`,
		`\'; id; echo \'`,
		"$(id) `id` ${HOME} \"x\" \\\" \\'",
		"line one\nline two",
		"'''\\\\\\'",
		"",
	}
	for _, sh := range []string{"sh", "bash"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			t.Fatalf("%s: %v", sh, err)
		}
		for _, orig := range originals {
			req := &ssh.Request{Type: reqExec, Payload: ssh.Marshal(struct{ Command string }{orig})}
			cmd, ok := forcedCommand(force, req)
			if !ok {
				t.Fatalf("forcedCommand(%q): not ok", orig)
			}
			out, err := exec.Command(path, "-c", cmd).Output()
			if err != nil || string(out) != orig+"|" {
				t.Errorf("%s -c %q: got %q, %v; want %q", sh, cmd, out, err, orig+"|")
			}
		}
	}
	shell := &ssh.Request{Type: reqShell}
	if cmd, ok := forcedCommand(force, shell); !ok || cmd != force {
		t.Errorf("shell request: got %q, %v; want the forced command alone", cmd, ok)
	}
	nul := &ssh.Request{Type: reqExec, Payload: ssh.Marshal(struct{ Command string }{"a\x00b"})}
	if _, ok := forcedCommand(force, nul); ok {
		t.Error("exec with a NUL: got ok, want refused")
	}
}
