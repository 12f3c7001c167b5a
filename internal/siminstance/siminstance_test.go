package siminstance

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestStartOptions(t *testing.T) {
	allow := func(string, ssh.PublicKey) error { return nil }
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"loopback", Options{Addr: "127.0.0.1:0", Authorize: allow}, false},
		{"other loopback address", Options{Addr: "127.0.0.11:0", Authorize: allow}, false},
		{"localhost", Options{Addr: "localhost:0", Authorize: allow}, false},
		{"empty address", Options{Authorize: allow}, false},
		{"nil Authorize", Options{Addr: "127.0.0.1:0"}, true},
		{"all interfaces", Options{Addr: ":0", Authorize: allow}, true},
		{"unspecified", Options{Addr: "0.0.0.0:0", Authorize: allow}, true},
		{"host name", Options{Addr: "example.com:22", Authorize: allow}, true},
		{"no port", Options{Addr: "127.0.0.1", Authorize: allow}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := Start(tc.opts)
			if err == nil {
				if got := inst.HostKey().Type(); got != ssh.KeyAlgoED25519 {
					t.Errorf("host key type: got %s, want %s", got, ssh.KeyAlgoED25519)
				}
				if err := inst.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			if got := err != nil; got != tc.wantErr {
				t.Errorf("Start(%+v): got error %v, want error: %v", tc.opts, err, tc.wantErr)
			}
		})
	}
}

func TestHostKeyOption(t *testing.T) {
	hostKey := newSigner(t)
	inst, err := Start(Options{HostKey: hostKey, Authorize: func(string, ssh.PublicKey) error { return nil }})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer inst.Close()
	if got, want := ssh.FingerprintSHA256(inst.HostKey()), ssh.FingerprintSHA256(hostKey.PublicKey()); got != want {
		t.Errorf("host key: got %s, want %s", got, want)
	}
}

// exitOf returns the exit status and signal a session's Wait reported.
func exitOf(t *testing.T, err error) (status int, signal string) {
	t.Helper()
	var exitErr *ssh.ExitError
	switch {
	case err == nil:
		return 0, ""
	case errors.As(err, &exitErr):
		return exitErr.ExitStatus(), exitErr.Signal()
	default:
		t.Fatalf("Wait: got %v, want nil or *ssh.ExitError", err)
		return 0, ""
	}
}

func TestExec(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)

	tests := []struct {
		name       string
		command    string
		stdin      string
		env        map[string]string
		wantStdout string
		wantStderr string
		wantStatus int
		wantSignal string
	}{
		{name: "separate streams and status", command: "echo out; echo err >&2; exit 3", wantStdout: "out\n", wantStderr: "err\n", wantStatus: 3},
		{name: "success", command: "true"},
		{name: "stdin until EOF", command: "cat; echo done", stdin: "hello\n", wantStdout: "hello\ndone\n"},
		{name: "instance name", command: `printf %s "$BASTION_DEMO_INSTANCE"`, wantStdout: "web-1"},
		{name: "accepted env", command: `printf %s "$LANG $LC_ALL"`, env: map[string]string{"LANG": "C.UTF-8", "LC_ALL": "C"}, wantStdout: "C.UTF-8 C"},
		{name: "no pty, no TERM", command: `printf %s "${TERM-unset}"`, wantStdout: "unset"},
		// x/crypto/ssh reports 128+n as the status of an exit-signal.
		{name: "killed by a signal", command: "kill -TERM $$", wantStatus: 128 + 15, wantSignal: "TERM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			session, err := client.NewSession()
			if err != nil {
				t.Fatalf("NewSession: %v", err)
			}
			defer session.Close()
			for name, value := range tc.env {
				if err := session.Setenv(name, value); err != nil {
					t.Fatalf("Setenv(%s): %v", name, err)
				}
			}
			var stdout, stderr bytes.Buffer
			session.Stdout, session.Stderr = &stdout, &stderr
			session.Stdin = strings.NewReader(tc.stdin)
			status, signal := exitOf(t, session.Run(tc.command))
			if got := stdout.String(); got != tc.wantStdout {
				t.Errorf("stdout: got %q, want %q", got, tc.wantStdout)
			}
			if got := stderr.String(); got != tc.wantStderr {
				t.Errorf("stderr: got %q, want %q", got, tc.wantStderr)
			}
			if status != tc.wantStatus {
				t.Errorf("exit status: got %d, want %d", status, tc.wantStatus)
			}
			if signal != tc.wantSignal {
				t.Errorf("exit signal: got %q, want %q", signal, tc.wantSignal)
			}
		})
	}
}

func TestRefusedRequests(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)

	tests := []struct {
		name string
		do   func(*testing.T, *ssh.Session) error
	}{
		{"env outside LANG and LC_*", func(_ *testing.T, s *ssh.Session) error { return s.Setenv("LD_PRELOAD", "/tmp/x.so") }},
		{"unknown subsystem", func(_ *testing.T, s *ssh.Session) error { return s.RequestSubsystem("nope") }},
		{"window-change without pty", func(_ *testing.T, s *ssh.Session) error {
			ok, err := s.SendRequest(requestWindowChange, true, ssh.Marshal(windowChangeMsg{Cols: 80, Rows: 24}))
			if err == nil && !ok {
				err = errors.New("refused")
			}
			return err
		}},
		{"second command", func(t *testing.T, s *ssh.Session) error {
			if err := s.Start("cat"); err != nil {
				t.Fatalf("first command: %v", err)
			}
			ok, err := s.SendRequest(requestExec, true, ssh.Marshal(execMsg{Command: "true"}))
			if err == nil && !ok {
				err = errors.New("refused")
			}
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			session, err := client.NewSession()
			if err != nil {
				t.Fatalf("NewSession: %v", err)
			}
			defer session.Close()
			if err := tc.do(t, session); err == nil {
				t.Errorf("got success, want the request refused")
			}
		})
	}

	t.Run("tcpip-forward beyond loopback", func(t *testing.T) {
		ok, _, err := client.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
			Addr string
			Port uint32
		}{"192.0.2.1", 0}))
		if err != nil || ok {
			t.Errorf("tcpip-forward: got ok=%v err=%v, want refused", ok, err)
		}
	})
	t.Run("unknown channel type", func(t *testing.T) {
		_, _, err := client.OpenChannel("x11", nil)
		var openErr *ssh.OpenChannelError
		if !errors.As(err, &openErr) || openErr.Reason != ssh.UnknownChannelType {
			t.Errorf("open x11: got %v, want reason %v", err, ssh.UnknownChannelType)
		}
	})
}

func TestPtyShell(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)

	session, err := client.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer session.Close()
	if err := session.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatalf("RequestPty: %v", err)
	}
	stdin, err := session.StdinPipe()
	if err != nil {
		t.Fatalf("StdinPipe: %v", err)
	}
	out := newSyncBuffer()
	session.Stdout = out
	if err := session.Shell(); err != nil {
		t.Fatalf("Shell: %v", err)
	}

	// barrier returns once the server has handled every request sent
	// before it: requests on a channel are answered in order.
	barrier := func() {
		t.Helper()
		if _, err := session.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			t.Fatalf("keepalive: %v", err)
		}
	}
	steps := []struct {
		name   string
		resize []int // rows, cols; nil for no window-change
		input  string
		want   string
	}{
		{name: "prompt", want: "ec2-user@web-1:"},
		{name: "initial size", input: "stty size\n", want: "24 80\r\n"},
		{name: "TERM", input: "echo \"T=$TERM\"\n", want: "T=xterm\r\n"},
		{name: "after window-change", resize: []int{30, 100}, input: "stty size\n", want: "30 100\r\n"},
	}
	offset := 0
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if step.resize != nil {
				if err := session.WindowChange(step.resize[0], step.resize[1]); err != nil {
					t.Fatalf("WindowChange: %v", err)
				}
				barrier()
			}
			if step.input != "" {
				if _, err := io.WriteString(stdin, step.input); err != nil {
					t.Fatalf("writing %q: %v", step.input, err)
				}
			}
			if step.resize != nil {
				// The barrier has the size set before the line is
				// written, yet once, in CI under load, the shell
				// still printed the old size (cause not found). Ask
				// again until the new size shows: a window-change
				// that is never applied still fails at the deadline.
				deadline := time.Now().Add(waitTimeout)
				for {
					next, ok := out.Await(offset, step.want, time.Second)
					if ok {
						offset = next
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("the shell never reported %q after the window-change: got %q", step.want, out.String()[offset:])
					}
					io.WriteString(stdin, step.input)
				}
			}
			offset = out.waitFor(t, offset, step.want)
		})
	}

	if _, err := io.WriteString(stdin, "exit 5\n"); err != nil {
		t.Fatalf("writing exit: %v", err)
	}
	if status, signal := exitOf(t, session.Wait()); status != 5 || signal != "" {
		t.Errorf("shell exit: got status %d signal %q, want 5", status, signal)
	}
}

func TestSignal(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)

	session, err := client.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer session.Close()
	stdin, err := session.StdinPipe()
	if err != nil {
		t.Fatalf("StdinPipe: %v", err)
	}
	out := newSyncBuffer()
	session.Stdout = out
	if err := session.Start("exec cat"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := io.WriteString(stdin, "ping\n"); err != nil {
		t.Fatalf("writing: %v", err)
	}
	out.waitFor(t, 0, "ping\n") // cat is running
	if err := session.Signal(ssh.SIGUSR1); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if _, signal := exitOf(t, session.Wait()); signal != "USR1" {
		t.Errorf("exit signal: got %q, want %q", signal, "USR1")
	}
}

func TestClientCloseKillsProcess(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)

	session, err := client.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	stdout, err := session.StdoutPipe()
	if err != nil {
		t.Fatalf("StdoutPipe: %v", err)
	}
	if err := session.Start("echo $$; exec sleep 60"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("parsing pid %q: %v", line, err)
	}
	session.Close()
	waitUntil(t, "process "+line+" to be gone", func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

func TestSFTPSubsystem(t *testing.T) {
	found := false
	for _, p := range sftpServers {
		found = found || isExecutable(p)
	}
	if !found {
		t.Fatalf("no sftp-server at %v: install openssh-server (the README's test command does)", sftpServers)
	}
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)
	session, err := client.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer session.Close()
	stdin, _ := session.StdinPipe()
	stdout, _ := session.StdoutPipe()
	if err := session.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("RequestSubsystem: %v", err)
	}
	// SSH_FXP_INIT, version 3 (draft-ietf-secsh-filexfer-02 §4).
	if _, err := stdin.Write([]byte{0, 0, 0, 5, 1, 0, 0, 0, 3}); err != nil {
		t.Fatalf("writing SSH_FXP_INIT: %v", err)
	}
	header := make([]byte, 9)
	if _, err := io.ReadFull(stdout, header); err != nil {
		t.Fatalf("reading SSH_FXP_VERSION: %v", err)
	}
	if got, want := header[4], byte(2); got != want {
		t.Errorf("packet type: got %d, want %d (SSH_FXP_VERSION)", got, want)
	}
	if got, want := binary.BigEndian.Uint32(header[5:]), uint32(3); got != want {
		t.Errorf("version: got %d, want %d", got, want)
	}
}

// startEcho starts a TCP echo server on loopback and stops it at cleanup.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestDirectTCPIP(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)

	tests := []struct {
		name    string
		addr    string
		wantErr bool
	}{
		{"echo server", startEcho(t), false},
		{"closed port", closedPort(t), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Dial("tcp", tc.addr)
			if got := err != nil; got != tc.wantErr {
				t.Fatalf("Dial(%s): got error %v, want error: %v", tc.addr, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			defer c.Close()
			if _, err := io.WriteString(c, "ping"); err != nil {
				t.Fatalf("writing: %v", err)
			}
			// The client's EOF reaches the echo server, whose EOF comes
			// back after the echoed bytes.
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			if string(got) != "ping" {
				t.Errorf("echoed: got %q, want %q", got, "ping")
			}
		})
	}
}

// waitUntil polls cond until it holds, failing the test after waitTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()

	user := newSigner(t)
	inst, err := Start(Options{Authorize: admitKeys(user), Name: "web-1"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	var echoWG sync.WaitGroup
	echoWG.Go(func() {
		for {
			c, err := echoLn.Accept()
			if err != nil {
				return
			}
			echoWG.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})

	client, err := dial(inst, "ec2-user", user)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// A running command without a pty, a pty shell, a forwarded TCP
	// connection and a connection stuck before its handshake.
	exec, err := client.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	if err := exec.Start("sleep 60"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	shell, err := client.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	if err := shell.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatalf("RequestPty: %v", err)
	}
	if err := shell.Shell(); err != nil {
		t.Fatalf("Shell: %v", err)
	}
	fwd, err := client.Dial("tcp", echoLn.Addr().String())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := io.WriteString(fwd, "x"); err != nil {
		t.Fatalf("writing: %v", err)
	}
	if _, err := io.ReadFull(fwd, make([]byte, 1)); err != nil {
		t.Fatalf("reading: %v", err)
	}
	raw, err := net.Dial("tcp", inst.Addr())
	if err != nil {
		t.Fatalf("dialing raw: %v", err)
	}
	defer raw.Close()

	start := time.Now()
	if err := inst.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v, want under 5s", took)
	}
	if err := exec.Wait(); err == nil {
		t.Errorf("Wait after Close: got nil, want an error")
	}
	client.Close()
	raw.Close()
	echoLn.Close()
	echoWG.Wait()

	var after int
	deadline := time.Now().Add(waitTimeout)
	for {
		if after = runtime.NumGoroutine(); after <= before || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines after Close: got %d, want at most %d\n%s", after, before, buf[:runtime.Stack(buf, true)])
	}
	if err := inst.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}
