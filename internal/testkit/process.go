package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stopTimeout bounds the wait for a killed process to be reaped.
const stopTimeout = 10 * time.Second

// Process is a started background process with its output captured.
type Process struct {
	Cmd *exec.Cmd
	// Out holds what the process wrote to the streams Start captured.
	Out  *SyncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// Start starts cmd with its standard output and error captured in Out,
// except a stream the caller set already, and reaps it in the background.
func Start(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Cmd: cmd, Out: &SyncBuffer{}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.Out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.Out
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// StartProcess is Start that fails the test on error and registers a
// cleanup that stops the process (Stop) and, if the test failed, logs its
// output.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", filepath.Base(cmd.Path), p.PID(), p.Out.String())
		}
	})
	return p
}

// PID returns the process id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns Wait's result once the process has exited, nil before.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stop kills the process and every descendant it has, by pid, and waits
// for it to be reaped. The descendants are listed first, while they are
// still linked to it: sshd's per-connection children run in sessions of
// their own, so killing a process group would miss them.
func (p *Process) Stop() error {
	KillTree(p.PID())
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s (pid %d) did not exit within %s of SIGKILL", filepath.Base(p.Cmd.Path), p.PID(), stopTimeout)
	}
}

// KillTree sends SIGKILL to pid and to every living descendant of it.
func KillTree(pid int) error {
	desc := Descendants(pid)
	err := syscall.Kill(pid, syscall.SIGKILL)
	for _, d := range desc {
		syscall.Kill(d, syscall.SIGKILL)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Descendants returns the pids of every living (not zombie) descendant of
// pid, read from /proc.
func Descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], child)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
