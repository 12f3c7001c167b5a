package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ownWorld is a bastion with one static target (never dialled: these tests
// stay in the bastion's own session) and alice, allowed to reach it.
type ownWorld struct {
	b     *bastionProc
	alice *client
}

func newOwnWorld(t *testing.T) *ownWorld {
	t.Helper()
	dir := t.TempDir()
	upKey := newKey(t, dir, "upstream_key")
	hostKey := newKey(t, dir, "web_host")
	aliceKey := newKey(t, dir, "alice")
	b := startBastion(t, fmt.Sprintf(`users:
  - {name: alice, keys: [%q], groups: [dev]}
providers:
  static:
    - {name: web-1, address: "127.0.0.1:%d", user: ec2-user, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: [ec2-user]}
`, aliceKey.AuthorizedKey(), freePort(t), upKey.Private, hostKey.AuthorizedKey()))
	return &ownWorld{b: b, alice: newClient(t, b, "alice", aliceKey)}
}

// ttySSH is ssh running with a real pty as its terminal, as at a person's
// desk: its stdin never ends by itself.
type ttySSH struct {
	cmd  *exec.Cmd
	tty  *os.File
	out  *syncBuffer
	done chan struct{}
}

func startTTYSSH(t *testing.T, c *client, cols uint16, args ...string) *ttySSH {
	t.Helper()
	cmd := exec.Command("ssh", append([]string{"-F", c.ConfigPath}, args...)...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	s := &ttySSH{cmd: cmd, tty: tty, out: &syncBuffer{}, done: make(chan struct{})}
	go func() {
		io.Copy(s.out, tty)
		close(s.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
		cmd.Wait()
		tty.Close()
	})
	return s
}

// wait waits for ssh to exit on its own and returns its exit code.
func (s *ttySSH) wait(t *testing.T, what string) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: ssh did not exit within 20s; output %q", what, s.out.String())
	}
	s.cmd.Wait()
	return s.cmd.ProcessState.ExitCode()
}

// TestFirstRunOwnSessionPTY drives the bastion's own lines at a real
// terminal: `list` and `help` end at once with status 0, and an empty
// line, Ctrl-D and Ctrl-C leave the menu (issue 11, item 6).
func TestFirstRunOwnSessionPTY(t *testing.T) {
	w := newOwnWorld(t)
	for _, cmd := range []struct{ name, want string }{{"list", "web-1"}, {"help", "hello alice"}} {
		t.Run(cmd.name, func(t *testing.T) {
			s := startTTYSSH(t, w.alice, 80, "bastion", cmd.name)
			if code := s.wait(t, "ssh bastion "+cmd.name); code != 0 {
				t.Errorf("ssh bastion %s: got exit %d, want 0; output %q", cmd.name, code, s.out.String())
			}
			if !strings.Contains(s.out.String(), cmd.want) {
				t.Errorf("ssh bastion %s: output %q lacks %q", cmd.name, s.out.String(), cmd.want)
			}
		})
	}
	t.Run("ListWithPTY", func(t *testing.T) {
		// ssh -t puts the person's terminal in raw mode: lines end in CRLF.
		s := startTTYSSH(t, w.alice, 80, "-t", "bastion", "list")
		if code := s.wait(t, "ssh -t bastion list"); code != 0 {
			t.Errorf("ssh -t bastion list: got exit %d, want 0", code)
		}
		if out := s.out.String(); !strings.Contains(out, "OS USERS\r\n") || strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
			t.Errorf("ssh -t bastion list: got %q, want CRLF line ends", out)
		}
	})
	for _, key := range []struct{ name, bytes string }{
		{"EmptyLine", "\r"},
		{"CtrlD", "\x04"},
		{"CtrlC", "\x03"},
	} {
		t.Run("Menu"+key.name, func(t *testing.T) {
			s := startTTYSSH(t, w.alice, 80, "-tt", "bastion")
			waitFor(t, "the menu's prompt", 20*time.Second, func() bool { return strings.Contains(s.out.String(), "empty line quits") })
			io.WriteString(s.tty, key.bytes)
			if code := s.wait(t, "menu after "+key.name); code != 0 {
				t.Errorf("menu after %s: got exit %d, want 0", key.name, code)
			}
		})
	}
	t.Run("MenuNoEOFWithoutPTY", func(t *testing.T) {
		// Without a pty the shell is the listing; the session ends by itself.
		s := startTTYSSH(t, w.alice, 80, "-T", "bastion")
		if code := s.wait(t, "ssh -T bastion"); code != 0 || !strings.Contains(s.out.String(), "web-1") {
			t.Errorf("ssh -T bastion: got exit %d output %q, want 0 and the listing", code, s.out.String())
		}
	})
	t.Run("MenuWidth", func(t *testing.T) {
		// The prompt is 84 columns: on a 200-column terminal neither it nor
		// what follows wraps; after a window change to 300, 200 more do not.
		s := startTTYSSH(t, w.alice, 200, "-tt", "bastion")
		waitFor(t, "the menu's prompt", 20*time.Second, func() bool { return strings.Contains(s.out.String(), "empty line quits") })
		io.WriteString(s.tty, strings.Repeat("a", 100))
		waitFor(t, "the typed a's echoed", 20*time.Second, func() bool { return strings.Contains(s.out.String(), strings.Repeat("a", 100)) })
		if tail := s.out.String()[strings.Index(s.out.String(), "(empty line quits)"):]; strings.Contains(tail, "\n") {
			t.Errorf("menu input wrapped on a 200-column terminal: %q", tail)
		}
		// A wider window repaints the prompt; then 100 more columns of
		// input (284 in all) fit the 300-column line.
		mark := len(s.out.String())
		if err := pty.Setsize(s.tty, &pty.Winsize{Rows: 24, Cols: 300}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the prompt repainted after the window change", 20*time.Second, func() bool {
			return strings.Contains(s.out.String()[mark:], "empty line quits")
		})
		mark = len(s.out.String())
		io.WriteString(s.tty, strings.Repeat("c", 100))
		waitFor(t, "the typed c's echoed", 20*time.Second, func() bool { return strings.Count(s.out.String()[mark:], "c") >= 100 })
		if tail := s.out.String()[mark:]; strings.Contains(tail, "\n") {
			t.Errorf("menu input wrapped on a 300-column terminal: %q", tail)
		}
		io.WriteString(s.tty, "\x03")
		s.wait(t, "menu after Ctrl-C")
	})
}
