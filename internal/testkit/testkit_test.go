package testkit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestPoll(t *testing.T) {
	n := 0
	if !Poll(10*time.Second, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("Poll: got %d checks, want it to stop at the third", n)
	}
	start := time.Now()
	if Poll(50*time.Millisecond, func() bool { return false }) {
		t.Error("Poll reported a condition that never held")
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Error("Poll gave up before its timeout")
	}
}

func TestSyncBufferConcurrent(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 800 {
		t.Errorf("got %d lines, want 800", got)
	}
	next, ok := b.Await(0, "7\n", time.Second)
	if !ok || next <= 0 {
		t.Errorf("Await found no 7: %d %v", next, ok)
	}
}

func TestLookToolMissing(t *testing.T) {
	_, err := LookTool("no-such-tool-anywhere")
	if err == nil || !strings.Contains(err.Error(), "install it") {
		t.Errorf("LookTool of a missing tool: %v; want an error that says to install it", err)
	}
}

// TestStopKillsDescendants: Stop ends a process and the children it
// started, by pid.
func TestStopKillsDescendants(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", "sleep 300 & sleep 300 & wait"))
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the two sleeps", 20*time.Second, func() bool { return len(Descendants(p.PID())) == 2 })
	kids := Descendants(p.PID())
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the sleeps to be gone", 20*time.Second, func() bool {
		for _, k := range kids {
			if alive(k) {
				return false
			}
		}
		return true
	})
}

// alive reports whether pid is a living process (not gone, not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// TestStartSSHD runs a real sshd and logs in to it with x/crypto: the host
// key it presents is the one the kit wrote.
func TestStartSSHD(t *testing.T) {
	user := NewKey(t, t.TempDir(), "user")
	s := StartSSHD(t, SSHDConfig{AuthorizedKeys: []string{user.AuthorizedKey()}})
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            me(t),
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(user.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey.Signer.PublicKey()),
		Timeout:         20 * time.Second,
	})
	if err != nil {
		t.Fatalf("logging in to the kit's sshd: %v\n%s", err, s.Proc.Out.String())
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("echo kit-ok")
	if err != nil || string(out) != "kit-ok\n" {
		t.Errorf("exec: %q, %v", out, err)
	}
}

func me(t *testing.T) string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestLaunchSSHDRetriesTakenPort takes the first port the launcher picks:
// sshd fails to bind it, and the launcher starts it on another.
func TestLaunchSSHDRetriesTakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return takenPort, nil
		}
		return kernelPort()
	}
	t.Cleanup(func() { pickPort = kernelPort })
	s := StartSSHD(t, SSHDConfig{})
	if s.Port == takenPort || calls != 2 {
		t.Fatalf("sshd on port %d after %d attempts; want another port than the taken %d after 2", s.Port, calls, takenPort)
	}
}
