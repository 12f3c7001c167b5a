package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"time"

	"bastion/internal/testkit"
)

// pollInterval is how often readiness and quiescence conditions are
// re-checked. Polling a condition up to a deadline is the only waiting the
// harness does; it never sleeps for a fixed time instead of checking.
const pollInterval = 5 * time.Millisecond

// daemon is a background process the harness started (sshd, the bastion),
// with its output in a log file.
type daemon struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	proc *testkit.Process
}

// PID returns the daemon's process id.
func (d *daemon) PID() int { return d.proc.PID() }

// Exited reports whether the daemon has exited.
func (d *daemon) Exited() bool { return d.proc.Exited() }

// tail returns the end of the daemon's log, for error messages.
func (d *daemon) tail() string {
	b, _ := os.ReadFile(d.Log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// daemons tracks the background processes of a run so that every one is
// stopped, with its descendants, on the way out.
type daemons struct {
	mu   sync.Mutex // protects list
	list []*daemon
}

// start starts cmd with stdout and stderr appended to logPath. The
// process gets its own process group so that a Ctrl-C in the terminal
// reaches the harness, which then stops it, rather than the process itself
// mid-measurement.
func (ds *daemons) start(name string, cmd *exec.Cmd, logPath string) (*daemon, error) {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := testkit.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return ds.adopt(name, p, logPath), nil
}

// adopt tracks a process started elsewhere (testkit.LaunchSSHD) as a
// daemon whose log is logPath.
func (ds *daemons) adopt(name string, p *testkit.Process, logPath string) *daemon {
	d := &daemon{Name: name, Cmd: p.Cmd, Log: logPath, proc: p}
	ds.mu.Lock()
	ds.list = append(ds.list, d)
	ds.mu.Unlock()
	return d
}

// stop kills d and its descendants and waits for d to exit.
func (ds *daemons) stop(d *daemon) {
	ds.mu.Lock()
	for i, x := range ds.list {
		if x == d {
			ds.list = append(ds.list[:i], ds.list[i+1:]...)
			break
		}
	}
	ds.mu.Unlock()
	testkit.KillTree(d.PID())
	select {
	case <-d.proc.Done():
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: %s (pid %d) did not exit after SIGKILL\n", d.Name, d.PID())
	}
}

// stopAll stops every daemon, newest first.
func (ds *daemons) stopAll() {
	ds.mu.Lock()
	list := slices.Clone(ds.list)
	ds.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		ds.stop(list[i])
	}
}

// waitLine waits until a line of d's log matches re and returns the
// submatches, failing when d exits first or the timeout passes.
func waitLine(ctx context.Context, d *daemon, re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(d.Log)
		if err != nil {
			return nil, err
		}
		if m := re.FindSubmatch(b); m != nil {
			out := make([]string, len(m))
			for i := range m {
				out[i] = string(m[i])
			}
			return out, nil
		}
		if d.Exited() {
			return nil, fmt.Errorf("%s exited (%v) before it was ready; its log %s ends:\n%s", d.Name, d.proc.Err(), d.Log, d.tail())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not ready after %s (no line matching %q in %s); log ends:\n%s", d.Name, timeout, re, d.Log, d.tail())
		}
		if err := pause(ctx); err != nil {
			return nil, err
		}
	}
}

// waitQuiescent waits until pid has no descendants left (every
// per-connection child has exited and been reaped; a zombie still counts),
// and returns its tree then.
func waitQuiescent(ctx context.Context, pid int, timeout time.Duration) (procTree, error) {
	deadline := time.Now().Add(timeout)
	for {
		t, err := readTree(pid)
		if err != nil {
			return procTree{}, err
		}
		if len(t.Procs) == 1 {
			return t, nil
		}
		if time.Now().After(deadline) {
			return procTree{}, fmt.Errorf("process %d still has %d descendants after %s", pid, len(t.Procs)-1, timeout)
		}
		if err := pause(ctx); err != nil {
			return procTree{}, err
		}
	}
}

// pause waits one pollInterval, or returns the context's error.
func pause(ctx context.Context) error {
	t := time.NewTimer(pollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// command returns an exec.Cmd bound to ctx whose cancellation kills the
// process and its descendants (ssh's ProxyJump child), by pid.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return testkit.KillTree(cmd.Process.Pid) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runTool runs a short command and returns its combined output.
func runTool(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %v: %w\n%s", filepath.Base(name), args, err, out.String())
	}
	return out.String(), nil
}

// lookTool finds an OpenSSH tool on PATH or in /usr/sbin (sshd).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p, nil
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin: install OpenSSH with `apt-get install openssh-server openssh-client`", name)
}
