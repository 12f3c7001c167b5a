package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demoProc is a running `bastion demo`.
type demoProc struct {
	p      *process
	state  string // its --state folder
	listen string // where it listens (its --listen is port 0)
}

// demoListenRE finds the address the demo's bastion listens on.
var demoListenRE = regexp.MustCompile(`bastion demo: a bastion on (\S+) in front of`)

// startDemo runs `bastion demo` in dir, as cmd (the demo binary's argv
// after the program name) under wrap (nil: the binary itself), and waits
// for its ssh lines.
func startDemo(t *testing.T, dir string, wrap func(args []string) *exec.Cmd) *demoProc {
	t.Helper()
	// Port 0: the demo binds a port the kernel picks and prints it.
	d := &demoProc{state: filepath.Join(dir, "demo-state"), listen: "127.0.0.1:0"}
	args := []string{"demo", "--state", d.state, "--listen", d.listen}
	cmd := exec.Command(bastionBin, args...)
	if wrap != nil {
		cmd = wrap(args)
	}
	cmd.Dir = dir
	d.p = startProcess(t, cmd)
	waitFor(t, "the demo to print its ssh lines", 60*time.Second, func() bool {
		select {
		case <-d.p.done:
			t.Fatalf("demo exited:\n%s", d.p.out.String())
		default:
		}
		return strings.Contains(d.p.out.String(), "Ctrl-C stops the demo.")
	})
	m := demoListenRE.FindStringSubmatch(d.p.out.String())
	if m == nil {
		t.Fatalf("the demo did not say where it listens:\n%s", d.p.out.String())
	}
	d.listen = m[1]
	return d
}

// tryLines returns the demo's printed "Try:" command lines, comments cut.
func (d *demoProc) tryLines(t *testing.T) []string {
	t.Helper()
	var lines []string
	in := false
	for _, l := range strings.Split(d.p.out.String(), "\n") {
		switch {
		case strings.HasPrefix(l, "Try:"):
			in = true
		case in && strings.TrimSpace(l) == "":
			return lines
		case in:
			cmd, _, _ := strings.Cut(l, "#")
			lines = append(lines, strings.TrimSpace(cmd))
		}
	}
	t.Fatalf("no Try: lines in the demo's output:\n%s", d.p.out.String())
	return nil
}

// withoutUser is the environment minus USER and LOGNAME, as under some
// cron jobs, containers and `env -i`.
func withoutUser(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "USER=") && !strings.HasPrefix(kv, "LOGNAME=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runLine runs one printed line with sh in dir, stdin empty, bounded.
func runLine(t *testing.T, dir, line string, env []string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%q in %s: timed out; output %q", line, dir, out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return string(out), 0
}

// TestDemo runs `bastion demo` as a newcomer would and uses the lines it
// prints: a command on a simulated Lightsail and a simulated EC2 instance,
// through ProxyJump and direct mode, with StrictHostKeyChecking=yes. The
// printed lines run as printed, from the demo's folder and from another,
// without $USER; the simulated instances forward -R, carry the agent for
// -A and refuse OS users they do not have; a second demo starts beside the
// first; and killing the demo's parent (as when `go run` is killed) stops
// the demo (issue 11, item 8).
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	d := startDemo(t, dir, nil)
	sshConfig := filepath.Join(d.state, "ssh_config")
	if !strings.Contains(d.p.out.String(), "ssh -F "+sshConfig+" -J bastion ec2-user@web-1") {
		t.Fatalf("demo output lacks the ProxyJump line with an absolute -F:\n%s", d.p.out.String())
	}
	tests := []struct {
		name string
		args []string
	}{
		{"lightsail jump", []string{"-J", "bastion", "ec2-user@web-1"}},
		{"ec2 jump", []string{"-J", "bastion", "ec2-user@api-1.ec2"}},
		{"lightsail direct", []string{"-l", "ubuntu+web-2", "bastion"}},
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

	t.Run("PrintedLines", func(t *testing.T) {
		elsewhere := t.TempDir()
		for _, line := range d.tryLines(t) {
			for _, cwd := range []string{dir, elsewhere} {
				if out, code := runLine(t, cwd, line, withoutUser()); code != 0 {
					t.Errorf("%q in %s without $USER: exit %d, output %q", line, cwd, code, out)
				}
			}
		}
	})

	t.Run("READMELines", func(t *testing.T) {
		// The README's demo lines, run as printed from the folder the
		// demo ran in (the repository's, for a reader).
		readme, err := os.ReadFile("../README.md")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(string(readme), "\n") {
			if !strings.HasPrefix(l, "ssh -F demo-state/ssh_config ") {
				continue
			}
			n++
			line, _, _ := strings.Cut(l, "#")
			if out, code := runLine(t, dir, line, withoutUser()); code != 0 {
				t.Errorf("README %q: exit %d, output %q", line, code, out)
			}
		}
		if n == 0 {
			t.Fatal("no demo lines in README.md")
		}
	})

	t.Run("NoSuchUser", func(t *testing.T) {
		for _, target := range []string{"nosuchuser@api-1.ec2", "nosuchuser@web-1"} {
			out, err := exec.Command("ssh", "-F", sshConfig, "-o", "BatchMode=yes", "-J", "bastion", target, "echo logged-in").CombinedOutput()
			if err == nil || strings.Contains(string(out), "logged-in") {
				t.Errorf("%s: got %v %q, want the login refused", target, err, out)
			}
		}
	})

	t.Run("RemoteForward", func(t *testing.T) {
		local := httpServer(t, "from the laptop")
		rport := freePort(t)
		cmd := exec.Command("ssh", "-F", sshConfig, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N",
			"-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, local), "-J", "bastion", "ec2-user@web-1")
		p := startProcess(t, cmd)
		waitFor(t, "the -R listener on the simulated instance", 30*time.Second, func() bool {
			select {
			case <-p.done:
				t.Fatalf("ssh -R exited: %s", p.out.String())
			default:
			}
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", rport), 100*time.Millisecond)
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
		if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", rport)); err != nil || got != "from the laptop" {
			t.Fatalf("through -R: got %q, %v; want the laptop's page", got, err)
		}
	})

	t.Run("AgentForwarding", func(t *testing.T) {
		sock, fp := startAgent(t)
		cmd := exec.Command("ssh", "-F", sshConfig, "-o", "BatchMode=yes", "-A", "-J", "bastion", "ec2-user@api-1.ec2", "ssh-add -l")
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), fp) {
			t.Errorf("ssh -A … ssh-add -l: got %v %q, want %s listed", err, out, fp)
		}
	})

	t.Run("SecondDemo", func(t *testing.T) {
		d2 := startDemo(t, t.TempDir(), nil)
		out, err := exec.Command("ssh", "-F", filepath.Join(d2.state, "ssh_config"), "-o", "BatchMode=yes", "-J", "bastion", "ec2-user@web-1", "echo second-$BASTION_DEMO_INSTANCE").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "second-web-1") {
			t.Errorf("the second demo's web-1: got %v %q", err, out)
		}
	})

	t.Run("ParentKilled", func(t *testing.T) {
		// sh stands in for `go run`: the demo is its child, and sh is
		// killed by its pid (SIGKILL: it cannot pass anything on).
		d3 := startDemo(t, t.TempDir(), func(args []string) *exec.Cmd {
			return exec.Command("sh", append([]string{"-c", `"$0" "$@"; :`, bastionBin}, args...)...)
		})
		sh := d3.p.cmd.Process.Pid
		kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", sh, sh))
		if err != nil || len(strings.Fields(string(kids))) != 1 {
			t.Fatalf("the demo's pid under sh: %q, %v", kids, err)
		}
		var demo int
		fmt.Sscan(string(kids), &demo)
		t.Cleanup(func() { syscall.Kill(demo, syscall.SIGKILL) })
		if err := d3.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the orphaned demo to stop listening on "+d3.listen, 30*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", d3.listen, 100*time.Millisecond)
			if err != nil {
				return true
			}
			c.Close()
			return false
		})
	})
}
