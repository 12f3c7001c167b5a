package testkit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Dynalite is a real DynamoDB implementation (the dynalite npm package,
// which the README's test command installs) running on a loopback port.
type Dynalite struct {
	URL      string
	cmd      *exec.Cmd
	stopOnce sync.Once
}

// StartDynalite runs dynalite in memory on a free loopback port, retrying
// when another process takes the port first, and stops it by pid at
// cleanup. A missing dynalite fails the test.
func StartDynalite(t *testing.T) *Dynalite {
	t.Helper()
	bin, err := exec.LookPath("dynalite")
	if err != nil {
		t.Fatalf("dynalite not found on PATH (./scripts/test, the README's test command, installs dynalite@4.0.0 and puts it on PATH): %v", err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		d := &Dynalite{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd}
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				default:
				}
			}
			close(lines)
		}()
		if d.waitReady(lines, 30*time.Second) {
			t.Cleanup(d.stop)
			return d
		}
		d.stop()
	}
	t.Fatal("dynalite did not start on a loopback port in 5 attempts")
	return nil
}

// waitReady waits until dynalite answers HTTP, or exits.
func (d *Dynalite) waitReady(lines <-chan string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case l, ok := <-lines:
			if !ok || strings.Contains(l, "EADDRINUSE") {
				return false
			}
		default:
		}
		resp, err := http.Get(d.URL)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return true
		}
		time.Sleep(PollInterval) // polling a process that cannot signal readiness
	}
	return false
}

func (d *Dynalite) stop() {
	d.stopOnce.Do(func() {
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		d.cmd.Wait()
	})
}

// Stop kills dynalite now (a test of the table going away); the cleanup
// then has nothing left to do.
func (d *Dynalite) Stop() { d.stop() }
