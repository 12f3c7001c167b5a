package testkit

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshdAttempts is how many ports LaunchSSHD tries before giving up.
const sshdAttempts = 5

// pickPort chooses the port of each attempt; a test replaces it to make a
// port be taken.
var pickPort = kernelPort

// sshdReady is the line sshd -e prints once it listens.
var sshdReady = regexp.MustCompile(`Server listening on 127\.0\.0\.1 port (\d+)`)

// SSHDConfig describes a real OpenSSH sshd standing in for an instance.
type SSHDConfig struct {
	// Dir holds the host key, authorized_keys and sshd_config. If empty,
	// StartSSHD uses a fresh t.TempDir(); LaunchSSHD requires it.
	Dir string
	// Bin is the sshd binary; if empty, LookTool("sshd").
	Bin string
	// AuthorizedKeys are the keys allowed to log in (authorized_keys lines).
	AuthorizedKeys []string
	// Extra lines are appended to sshd_config. sshd takes the first value
	// of a keyword, so Extra adds keywords; it cannot change the base ones.
	Extra []string
	// LogLevel is sshd's LogLevel; if empty, VERBOSE.
	LogLevel string
	// Log, if set, gets a copy of sshd's output (Process.Out has it all).
	Log io.Writer
	// SysProcAttr, if set, is the process's attributes (the bench harness
	// puts sshd in its own process group).
	SysProcAttr *syscall.SysProcAttr
	// ReadyTimeout bounds the wait for sshd to listen; if zero, 30s.
	ReadyTimeout time.Duration
}

// SSHD is a running sshd listening on 127.0.0.1.
type SSHD struct {
	Addr       string // 127.0.0.1:port
	Port       int
	HostKey    Key
	Dir        string
	ConfigPath string
	Proc       *Process
}

// LaunchSSHD writes an sshd_config, host key and authorized_keys to
// c.Dir and runs `sshd -D -e` on 127.0.0.1 until it prints that it
// listens. sshd cannot inherit a listener nor report a port it chose, so
// LaunchSSHD picks a port the kernel just handed out and, if another
// process takes it first ("Address already in use"), tries another. The
// caller stops the returned sshd with Proc.Stop.
func LaunchSSHD(ctx context.Context, c SSHDConfig) (*SSHD, error) {
	if c.Dir == "" {
		return nil, fmt.Errorf("launching sshd: no folder given")
	}
	bin := c.Bin
	if bin == "" {
		var err error
		if bin, err = LookTool("sshd"); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation folder; Debian creates it at boot.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, err
		}
	}
	hk, err := WriteKey(c.Dir, "ssh_host_ed25519_key")
	if err != nil {
		return nil, err
	}
	ak := filepath.Join(c.Dir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(strings.Join(c.AuthorizedKeys, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	s := &SSHD{HostKey: hk, Dir: c.Dir, ConfigPath: filepath.Join(c.Dir, "sshd_config")}
	var last error
	for attempt := 0; attempt < sshdAttempts; attempt++ {
		port, err := pickPort()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(s.ConfigPath, []byte(sshdConfig(c, hk, ak, port)), 0o600); err != nil {
			return nil, err
		}
		if attempt == 0 {
			if out, err := exec.CommandContext(ctx, bin, "-t", "-f", s.ConfigPath).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("checking %s with sshd -t: %w\n%s", s.ConfigPath, err, out)
			}
		}
		p, err := startSSHD(ctx, c, bin, s.ConfigPath)
		if err == nil {
			s.Addr, s.Port, s.Proc = net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port, p
			return s, nil
		}
		if !strings.Contains(p.Out.String(), "Address already in use") {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("launching sshd: %d ports were taken before sshd could bind them: %w", sshdAttempts, last)
}

// startSSHD runs sshd with cfgPath and waits for its readiness line. On
// error the process, if started, has exited or been stopped, and p still
// holds its output.
func startSSHD(ctx context.Context, c SSHDConfig, bin, cfgPath string) (*Process, error) {
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgPath)
	cmd.SysProcAttr = c.SysProcAttr
	out := &SyncBuffer{}
	var w io.Writer = out
	if c.Log != nil {
		w = io.MultiWriter(out, c.Log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	p, err := Start(cmd)
	if err != nil {
		return &Process{Out: out}, err
	}
	p.Out = out
	timeout := c.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	err = PollContext(ctx, timeout, func() bool { return p.Exited() || sshdReady.MatchString(out.String()) })
	switch {
	case err != nil:
		p.Stop()
		return p, fmt.Errorf("sshd (%s) not listening after %s: %w; its output:\n%s", cfgPath, timeout, err, out.String())
	case p.Exited():
		<-p.Done()
		return p, fmt.Errorf("sshd (%s) exited (%v) before listening; its output:\n%s", cfgPath, p.Err(), out.String())
	}
	return p, nil
}

// kernelPort returns a loopback port the kernel handed out a moment ago.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("choosing a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sshdConfig returns the sshd_config text for c on port.
func sshdConfig(c SSHDConfig, hk Key, authorizedKeys string, port int) string {
	level := c.LogLevel
	if level == "" {
		level = "VERBOSE"
	}
	cfg := []string{
		"ListenAddress 127.0.0.1",
		"Port " + strconv.Itoa(port),
		"HostKey " + hk.Private,
		"PidFile " + filepath.Join(c.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + authorizedKeys,
		"StrictModes no",
		"UsePAM no",
		"UseDNS no",
		"PermitRootLogin yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AllowTcpForwarding yes",
		"AllowAgentForwarding yes",
		"AllowStreamLocalForwarding yes",
		"X11Forwarding no",
		"PrintMotd no",
		"PrintLastLog no",
		"Subsystem sftp internal-sftp",
		"LogLevel " + level,
		// Commands run as `$SHELL -c ...`, and bash sources ~/.bashrc
		// when sshd starts it at SHLVL < 2. The machine's own rc file is
		// not what these tests are about, and it can block: pyenv's
		// rehash waits 60 s on a lock a killed session left behind.
		// SHLVL=1 makes bash skip it (bench/harness does the same); a
		// pty's interactive shell still reads it, so pyenv is also told
		// not to wait for that lock.
		"SetEnv SHLVL=1 PYENV_REHASH_TIMEOUT=0",
	}
	return strings.Join(append(cfg, c.Extra...), "\n") + "\n"
}

// StartSSHD is LaunchSSHD for a test: a missing sshd or a failure to start
// fails the test, and a cleanup stops sshd and its sessions by pid and, if
// the test failed, logs sshd's output.
func StartSSHD(t testing.TB, c SSHDConfig) *SSHD {
	t.Helper()
	if c.Dir == "" {
		c.Dir = t.TempDir()
	}
	if c.Bin == "" {
		c.Bin = Tool(t, "sshd")
	}
	s, err := LaunchSSHD(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Proc.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("output of sshd (pid %d):\n%s", s.Proc.PID(), s.Proc.Out.String())
		}
	})
	return s
}

// HandshakeOnce runs an in-process SSH server with srv on a loopback
// listener for one connection, and logs in to it with client, giving host
// as the address the client believes it dials (what a HostKeyCallback
// sees). It returns the client's error; the server rejects every channel.
func HandshakeOnce(t testing.TB, srv *ssh.ServerConfig, host string, client *ssh.ClientConfig) error {
	t.Helper()
	// A TCP loopback connection: net.Pipe is unbuffered, and both sides
	// of an SSH handshake write their version line first.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		sc, err := l.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		conn, chans, reqs, err := ssh.NewServerConn(sc, srv)
		if err != nil {
			return
		}
		wg.Go(func() { ssh.DiscardRequests(reqs) })
		wg.Go(func() {
			for nc := range chans {
				nc.Reject(ssh.Prohibited, "test server")
			}
		})
		conn.Wait()
	})
	cc, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(cc, host, client)
	if err != nil {
		cc.Close()
		return err
	}
	ssh.NewClient(conn, chans, reqs).Close()
	return nil
}
