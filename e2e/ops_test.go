package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/crypto/ssh"
)

// opsWorld is a bastion in front of a real sshd (static target web-1) with
// two people, for the lifecycle and limit tests.
type opsWorld struct {
	b          *bastionProc
	bob, carol *client
	bobKey     keypair
	carolKey   keypair
	me         string
	sshdLine   string
}

// newOpsWorld starts the world; extra is added to the config (limits and
// the like).
func newOpsWorld(t *testing.T, extra string) *opsWorld {
	t.Helper()
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	w := &opsWorld{me: me, bobKey: newKey(t, dir, "bob"), carolKey: newKey(t, dir, "carol"),
		sshdLine: fmt.Sprintf("    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}\n", up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey())}
	w.b = startBastion(t, w.config(true, extra))
	w.bob = newClient(t, w.b, "bob", w.bobKey)
	w.carol = newClient(t, w.b, "carol", w.carolKey)
	return w
}

// config returns the config body, with or without carol.
func (w *opsWorld) config(withCarol bool, extra string) string {
	users := fmt.Sprintf("users:\n  - {name: bob, keys: [%q], groups: [ops]}\n", w.bobKey.AuthorizedKey())
	if withCarol {
		users += fmt.Sprintf("  - {name: carol, keys: [%q], groups: [ops]}\n", w.carolKey.AuthorizedKey())
	}
	return users + "providers:\n  static:\n" + w.sshdLine +
		"policies:\n  - {groups: [ops], targets: [\"*\"], os_users: [\"*\"]}\n" + extra
}

// rewrite replaces the bastion's config body (the head with listen, keys
// and audit stays).
func (w *opsWorld) rewrite(t *testing.T, body string) {
	t.Helper()
	data, err := os.ReadFile(w.b.Config)
	if err != nil {
		t.Fatal(err)
	}
	head, _, found := strings.Cut(string(data), "users:")
	if !found {
		t.Fatalf("no users key in %s", w.b.Config)
	}
	writeFile(t, w.b.Config, head+body, 0o600)
}

// background starts ssh with a command and returns it running.
func (w *opsWorld) background(t *testing.T, c *client, command string) *process {
	t.Helper()
	return startProcess(t, exec.Command("ssh", "-F", c.ConfigPath, "-J", "bastion", w.me+"@web-1", command))
}

func (b *bastionProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := b.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for the bastion to exit and returns its exit code.
func (b *bastionProc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-b.proc.done:
	case <-time.After(timeout):
		t.Fatalf("bastion did not exit within %s", timeout)
	}
	return b.proc.cmd.ProcessState.ExitCode()
}

func TestDrain(t *testing.T) {
	w := newOpsWorld(t, "limits: {drain_timeout: 6s}\n")
	live := w.background(t, w.bob, "while :; do echo tick; sleep 0.2; done")
	waitFor(t, "ticks", 20*time.Second, func() bool { return strings.Count(live.out.String(), "tick") >= 2 })

	w.b.signal(t, syscall.SIGTERM)
	waitFor(t, "the drain notice on the live session's stderr", 10*time.Second, func() bool {
		return strings.Contains(live.out.String(), "the bastion is shutting down; this session will be closed in")
	})
	// The session goes on during the drain...
	n := strings.Count(live.out.String(), "tick")
	waitFor(t, "ticks during the drain", 10*time.Second, func() bool { return strings.Count(live.out.String(), "tick") >= n+3 })
	// ...while a new connection is refused.
	if r := w.carol.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "true"); r.Code == 0 {
		t.Errorf("new connection during the drain: got exit 0, want a refusal")
	}
	if code := w.b.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("bastion exit code after the drain: got %d, want 0", code)
	}
	select {
	case <-live.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the live session outlived the drain deadline")
	}
	if !strings.Contains(w.b.proc.out.String(), "drained") {
		t.Errorf("bastion log: no drained line")
	}
}

func TestDrainSecondSignal(t *testing.T) {
	w := newOpsWorld(t, "limits: {drain_timeout: 5m}\n")
	live := w.background(t, w.bob, "sleep 300")
	waitFor(t, "the session", 20*time.Second, func() bool { return countType(t, w.b, "session_start") == 1 })
	w.b.signal(t, syscall.SIGTERM)
	waitFor(t, "the drain to start", 10*time.Second, func() bool { return strings.Contains(w.b.proc.out.String(), "draining") })
	w.b.signal(t, syscall.SIGTERM)
	if code := w.b.waitExit(t, 15*time.Second); code != 0 {
		t.Errorf("exit code after a second SIGTERM: got %d, want 0", code)
	}
	select {
	case <-live.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the live session outlived the bastion")
	}
}

func TestReload(t *testing.T) {
	w := newOpsWorld(t, "revoke_live_sessions: true\n")
	carolLive := w.background(t, w.carol, "sleep 300")
	bobLive := w.background(t, w.bob, "while :; do echo tick; sleep 0.2; done")
	waitFor(t, "both sessions", 20*time.Second, func() bool { return countType(t, w.b, "session_start") == 2 })

	// An invalid file is rejected and the old config keeps serving.
	w.rewrite(t, "users: [{name: Bad Name}]\n")
	w.b.signal(t, syscall.SIGHUP)
	waitFor(t, "the rejection", 10*time.Second, func() bool { return countType(t, w.b, "config_rejected") == 1 })
	if r := w.carol.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo still"); r.Code != 0 || r.Stdout != "still\n" {
		t.Fatalf("after a rejected reload: got exit %d %q %q, want the old config to serve", r.Code, r.Stdout, r.Stderr)
	}

	// Carol removed, dave added.
	daveKey := newKey(t, t.TempDir(), "dave")
	body := w.config(false, "revoke_live_sessions: true\n")
	body = strings.Replace(body, "users:\n", fmt.Sprintf("users:\n  - {name: dave, keys: [%q], groups: [ops]}\n", daveKey.AuthorizedKey()), 1)
	w.rewrite(t, body)
	w.b.signal(t, syscall.SIGHUP)
	waitFor(t, "the reload", 10*time.Second, func() bool { return countType(t, w.b, "config_reloaded") == 1 })

	dave := newClient(t, w.b, "dave", daveKey)
	if r := dave.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo dave"); r.Code != 0 || r.Stdout != "dave\n" {
		t.Errorf("added user: got exit %d %q %q, want a login", r.Code, r.Stdout, r.Stderr)
	}
	if r := w.carol.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "true"); r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("removed user: got exit %d %q, want Permission denied", r.Code, r.Stderr)
	}
	// Carol's live session is closed with a message; bob's goes on.
	select {
	case <-carolLive.done:
	case <-time.After(10 * time.Second):
		t.Fatal("carol's live session survived her removal (revoke_live_sessions: true)")
	}
	if !strings.Contains(carolLive.out.String(), "your access was revoked") {
		t.Errorf("carol's stderr: got %q, want the revocation message", carolLive.out.String())
	}
	n := strings.Count(bobLive.out.String(), "tick")
	waitFor(t, "bob's session to go on", 10*time.Second, func() bool { return strings.Count(bobLive.out.String(), "tick") > n+2 })
}

func TestIdleAndMaxSession(t *testing.T) {
	w := newOpsWorld(t, "limits: {idle_timeout: 2s, max_session: 4s}\n")
	idle := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "sleep 60")
	if !strings.Contains(idle.Stderr, "no traffic for 2s; closing the idle session") {
		t.Errorf("idle session: stderr %q, want the idle message", idle.Stderr)
	}
	busy := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "while :; do echo tick; sleep 0.3; done")
	if !strings.Contains(busy.Stderr, "session reached the maximum length of 4s") {
		t.Errorf("busy session: stderr %q, want the max-session message", busy.Stderr)
	}
	if strings.Count(busy.Stdout, "tick") < 5 {
		t.Errorf("busy session: got %d ticks, want it to have run until max_session", strings.Count(busy.Stdout, "tick"))
	}
	for _, limit := range []string{"idle_timeout", "max_session"} {
		if !auditHas(t, w.b, "limit_exceeded", `"limit":"`+limit+`"`) {
			t.Errorf("audit log: no limit_exceeded for %s", limit)
		}
	}
}

func TestPerUserLimit(t *testing.T) {
	w := newOpsWorld(t, "limits: {max_links_per_user: 2}\n")
	w.background(t, w.bob, "sleep 300")
	w.background(t, w.bob, "sleep 300")
	waitFor(t, "two sessions", 20*time.Second, func() bool { return countType(t, w.b, "session_start") == 2 })
	r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, "bob already has 2 links open") {
		t.Errorf("third session: got exit %d stderr %q, want the limit message", r.Code, r.Stderr)
	}
	if r := w.carol.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo ok"); r.Code != 0 {
		t.Errorf("another user: got exit %d %q, want a login", r.Code, r.Stderr)
	}
}

// TestFailedAuthThrottle: 200 failed authentications from 127.0.0.1 get
// slowed down, while a person on 127.0.0.2 logs in at once.
func TestFailedAuthThrottle(t *testing.T) {
	w := newOpsWorld(t, "")
	host, port, _ := net.SplitHostPort(w.b.Addr)
	stranger := newKey(t, t.TempDir(), "stranger")
	var answered, slowed atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, 25)
	for range 200 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// A failed attempt normally takes milliseconds; one that gets
			// no answer within a second has been slowed down.
			err := tryLogin(net.JoinHostPort(host, port), "127.0.0.1", stranger.Signer, w.b.HostKey, time.Second)
			if err != nil && strings.Contains(err.Error(), "unable to authenticate") {
				answered.Add(1)
			} else {
				slowed.Add(1)
			}
		}()
	}
	// Meanwhile, from another address.
	r := w.bob.ssh(t, nil, "-b", "127.0.0.2", "-l", w.me+"+web-1", "bastion", "echo prompt")
	if r.Code != 0 || r.Stdout != "prompt\n" {
		t.Errorf("login from 127.0.0.2 during the attack: got exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	wg.Wait()
	if slowed.Load() < 150 {
		t.Errorf("of 200 failed attempts, %d were answered promptly and %d slowed; want most slowed", answered.Load(), slowed.Load())
	}
	if !auditHas(t, w.b, "limit_exceeded", `"limit":"failed_auth"`) {
		t.Errorf("audit log: no limit_exceeded for failed_auth")
	}
}

// TestUnfinishedHandshakes: 500 connections that never speak SSH are
// dropped at the handshake deadline and a real client still gets in.
func TestUnfinishedHandshakes(t *testing.T) {
	w := newOpsWorld(t, "limits: {handshake_timeout: 3s}\n")
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 5 * time.Second}
	for range 500 {
		c, err := d.Dial("tcp", w.b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo in")
	if r.Code != 0 || r.Stdout != "in\n" {
		t.Errorf("real client while 500 connections idle: got exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// Every idle connection is closed by the bastion, by the deadline (or
	// at once, over the limit).
	deadline := time.Now().Add(20 * time.Second)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		_, err := io.ReadAll(bufio.NewReader(c))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection %d still open 20s after a 3s handshake deadline", i)
		}
	}
}

// tryLogin makes one SSH login attempt from the local address from.
func tryLogin(addr, from string, key ssh.Signer, hostKey ssh.PublicKey, timeout time.Duration) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: timeout}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(timeout))
	cfg := &ssh.ClientConfig{User: "bob", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: timeout}
	c, _, _, err := ssh.NewClientConn(nc, addr, cfg)
	if err == nil {
		c.Close()
	}
	return err
}

func TestProxyProtocol(t *testing.T) {
	w := newOpsWorld(t, "proxy_protocol: {trusted_cidrs: [127.0.0.1/32]}\n")
	for _, tc := range []struct {
		name, from string
		header     bool
		wantOK     bool
	}{
		{"trusted with header", "127.0.0.1", true, true},
		{"trusted without header", "127.0.0.1", false, true},
		{"untrusted with header", "127.0.0.2", true, false},
		{"untrusted without header", "127.0.0.2", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}, Timeout: 5 * time.Second}
			nc, err := d.Dial("tcp", w.b.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(15 * time.Second))
			if tc.header {
				h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4242}, nc.RemoteAddr())
				if _, err := h.WriteTo(nc); err != nil {
					t.Fatal(err)
				}
			}
			cfg := &ssh.ClientConfig{User: "bob", Auth: []ssh.AuthMethod{ssh.PublicKeys(w.bobKey.Signer)},
				HostKeyCallback: ssh.FixedHostKey(w.b.HostKey), Timeout: 15 * time.Second}
			c, chans, reqs, err := ssh.NewClientConn(nc, w.b.Addr, cfg)
			if !tc.wantOK {
				if err == nil {
					c.Close()
					t.Fatal("got a login, want the connection refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			ssh.NewClient(c, chans, reqs).Close()
		})
	}
	if !auditHas(t, w.b, "auth_success", `"remote_addr":"203.0.113.7:4242","proxy_addr":"127.0.0.1:`) {
		t.Errorf("audit log: no auth_success from the PROXY header's address with the balancer's as proxy_addr:\n%s", strings.Join(w.b.AuditLines(t), "\n"))
	}
}

// TestWatchConfig: with watch_config, editing the file reloads it (an added
// user logs in) without a signal.
func TestWatchConfig(t *testing.T) {
	w := newOpsWorld(t, "watch_config: true\n")
	daveKey := newKey(t, t.TempDir(), "dave")
	body := w.config(true, "watch_config: true\n")
	w.rewrite(t, strings.Replace(body, "users:\n", fmt.Sprintf("users:\n  - {name: dave, keys: [%q], groups: [ops]}\n", daveKey.AuthorizedKey()), 1))
	waitFor(t, "the file change to be picked up", 20*time.Second, func() bool { return countType(t, w.b, "config_reloaded") >= 1 })
	dave := newClient(t, w.b, "dave", daveKey)
	if r := dave.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo watched"); r.Code != 0 || r.Stdout != "watched\n" {
		t.Errorf("user added by editing the file: got exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}
