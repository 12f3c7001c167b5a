package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `bastion demo` as a newcomer would and uses the lines it
// prints: a command on a simulated Lightsail and a simulated EC2 instance,
// through ProxyJump and direct mode, with StrictHostKeyChecking=yes.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "demo-state")
	cmd := exec.Command(bastionBin, "demo", "--state", state, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	cmd.Dir = dir
	p := startProcess(t, cmd)
	waitFor(t, "the demo to print its ssh lines", 60*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("demo exited:\n%s", p.out.String())
		default:
		}
		return strings.Contains(p.out.String(), "Ctrl-C stops the demo.")
	})
	me := currentUser(t)
	if !strings.Contains(p.out.String(), "ssh -F demo-state/ssh_config -J bastion "+me+"@web-1") {
		t.Fatalf("demo output lacks the ProxyJump line:\n%s", p.out.String())
	}
	sshConfig := filepath.Join(state, "ssh_config")
	tests := []struct {
		name string
		args []string
	}{
		{"lightsail jump", []string{"-J", "bastion", me + "@web-1"}},
		{"ec2 jump", []string{"-J", "bastion", me + "@api-1.ec2"}},
		{"lightsail direct", []string{"-l", me + "+web-2", "bastion"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"-F", sshConfig, "-o", "BatchMode=yes"}, tc.args...), "echo on-$BASTION_DEMO_INSTANCE; exit 5")
			out, err := exec.Command("ssh", args...).CombinedOutput()
			ee, _ := err.(*exec.ExitError)
			if ee == nil || ee.ExitCode() != 5 || !strings.Contains(string(out), "on-") {
				t.Fatalf("got %v %q, want exit 5 and the instance's echo", err, out)
			}
		})
	}
}
