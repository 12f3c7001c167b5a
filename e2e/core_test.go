package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// core is the fixture of the core proxy tests: a real sshd as the instance
// "web-1" behind a static provider, and two people: alice (group dev, no
// forwarding) and bob (group ops, port and agent forwarding allowed).
type core struct {
	sshd    *sshd
	bastion *bastionProc
	alice   *client
	bob     *client
	me      string
}

var (
	coreOnce sync.Once
	coreFix  *core
)

// coreFixture starts the shared fixture once per test binary run; the
// cleanup of the first test's T would stop it too early, so it is owned by
// a long-lived helper T-free context (processes are killed in TestMain's
// exit path through fixtureCleanup).
func newCore(t *testing.T) *core {
	t.Helper()
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	aliceKey := newKey(t, dir, "alice")
	bobKey := newKey(t, dir, "bob")
	other := newKey(t, dir, "other")

	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		// Accepts and says nothing: an instance whose sshd hangs.
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	dead := freePort(t)

	cfg := fmt.Sprintf(`users:
  - name: alice
    keys: [%q]
    groups: [dev]
  - name: bob
    keys: [%q]
    groups: [ops]
providers:
  static:
    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}
    - {name: dead, address: "127.0.0.1:%d", user: %s, private_key: %q, host_key: %q}
    - {name: mute, address: %q, user: %s, private_key: %q, host_key: %q}
    - {name: impostor, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
  - {groups: [ops], targets: ["*"], os_users: ["*"], allow: [port_forwarding, agent_forwarding]}
limits: {handshake_timeout: 3s, dial_timeout: 3s}
`, aliceKey.AuthorizedKey(), bobKey.AuthorizedKey(),
		up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey(),
		dead, me, upKey.Private, up.HostKey.AuthorizedKey(),
		mute.Addr().String(), me, upKey.Private, up.HostKey.AuthorizedKey(),
		up.Addr, me, upKey.Private, other.AuthorizedKey())
	b := startBastion(t, cfg)
	return &core{
		sshd:    up,
		bastion: b,
		alice:   newClient(t, b, "alice", aliceKey),
		bob:     newClient(t, b, "bob", bobKey),
		me:      me,
	}
}

// modes are the two ways to name a target.
var modes = []string{"jump", "direct"}

// dest returns the ssh arguments that reach osUser@target in mode.
func dest(mode, osUser, target string) []string {
	if mode == "jump" {
		return []string{"-J", "bastion", osUser + "@" + target}
	}
	return []string{"-l", osUser + "+" + target, "bastion"}
}

// remote returns the scp/rsync-style "user@host" for mode, and the extra
// ssh options it needs.
func remote(mode, osUser, target string) (userHost string, opts []string) {
	if mode == "jump" {
		return osUser + "@" + target, []string{"-J", "bastion"}
	}
	return osUser + "+" + target + "@bastion", nil
}

func TestCore(t *testing.T) {
	f := newCore(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Run("ExitStatus", func(t *testing.T) { testExitStatus(t, f, mode) })
			t.Run("StdoutStderr", func(t *testing.T) { testStdoutStderr(t, f, mode) })
			t.Run("PTY", func(t *testing.T) { testPTY(t, f, mode) })
			t.Run("Bulk", func(t *testing.T) { testBulk(t, f, mode) })
			t.Run("SCP", func(t *testing.T) { testSCP(t, f, mode) })
			t.Run("SFTP", func(t *testing.T) { testSFTP(t, f, mode) })
			t.Run("Rsync", func(t *testing.T) { testRsync(t, f, mode) })
			t.Run("LocalForward", func(t *testing.T) { testLocalForward(t, f, mode) })
			t.Run("RemoteForward", func(t *testing.T) { testRemoteForward(t, f, mode) })
			t.Run("DynamicForward", func(t *testing.T) { testDynamicForward(t, f, mode) })
			t.Run("AgentForwarding", func(t *testing.T) { testAgentForwarding(t, f, mode) })
			t.Run("Failures", func(t *testing.T) { testFailures(t, f, mode) })
		})
	}
	t.Run("WrongKey", func(t *testing.T) { testWrongKey(t, f) })
	t.Run("NoSecondSignature", func(t *testing.T) { testNoSecondSignature(t, f) })
	t.Run("SSHConfigWrite", func(t *testing.T) { testSSHConfigWrite(t, f) })
	t.Run("OwnSession", func(t *testing.T) {
		r := f.alice.ssh(t, nil, "bastion", "help")
		if r.Code != 0 || !strings.Contains(r.Stdout, "hello alice") {
			t.Errorf("ssh bastion help: got code %d stdout %q, want 0 and a greeting", r.Code, r.Stdout)
		}
		r = f.alice.ssh(t, nil, "bastion", "list")
		if r.Code != 0 || !strings.Contains(r.Stdout, "web-1") || !strings.Contains(r.Stdout, "OS USERS") {
			t.Errorf("ssh bastion list: got code %d stdout %q stderr %q, want 0 and a table with web-1", r.Code, r.Stdout, r.Stderr)
		}
		// Interactive: the numbered list, a pick, and a shell on it.
		sh := startPTYShell(t, f.alice, "bastion")
		waitFor(t, "the menu's prompt", 20*time.Second, func() bool { return strings.Contains(sh.out.String(), "target number or name") })
		if !strings.Contains(sh.out.String(), "web-1") {
			t.Fatalf("menu: no web-1 in %q", sh.out.String())
		}
		sh.send(t, "nope", "nope is not in the list")
		sh.send(t, "web-1 "+f.me, "connecting to web-1 as "+f.me)
		sh.send(t, "echo menu-$((1+1))", "menu-2")
		if code := sh.exit(t, "exit 4"); code != 4 {
			t.Errorf("menu shell: got exit %d, want 4", code)
		}
	})
	t.Run("Audit", func(t *testing.T) {
		log := strings.Join(f.bastion.AuditLines(t), "\n")
		for _, want := range []string{`"type":"auth_success"`, `"type":"upstream_connected"`, `"type":"session_end"`, `"type":"policy_denied"`, `"type":"target_error"`} {
			if !strings.Contains(log, want) {
				t.Errorf("audit log has no %s", want)
			}
		}
	})
}

func testExitStatus(t *testing.T, f *core, mode string) {
	r := f.alice.ssh(t, nil, append(dest(mode, f.me, "web-1"), "exit 42")...)
	if r.Code != 42 {
		t.Fatalf("got exit %d, want 42; stderr: %s", r.Code, r.Stderr)
	}
	r = f.alice.ssh(t, nil, append(dest(mode, f.me, "web-1"), "kill -TERM $$")...)
	if r.Code != 255 && r.Code != 128+15 {
		t.Errorf("killed by signal: got exit %d, want 255 (OpenSSH's code for a remote signal)", r.Code)
	}
}

func testStdoutStderr(t *testing.T, f *core, mode string) {
	r := f.alice.ssh(t, nil, append(dest(mode, f.me, "web-1"), "echo out; echo err >&2; exec 1>&-; sleep 0.2; echo late >&2")...)
	if r.Code != 0 {
		t.Fatalf("got exit %d, want 0; stderr: %s", r.Code, r.Stderr)
	}
	if r.Stdout != "out\n" {
		t.Errorf("stdout: got %q, want %q", r.Stdout, "out\n")
	}
	if !strings.Contains(r.Stderr, "err\nlate\n") {
		t.Errorf("stderr: got %q, want it to contain %q", r.Stderr, "err\nlate\n")
	}
	in := []byte("line one\nline two\n")
	r = f.alice.ssh(t, in, append(dest(mode, f.me, "web-1"), "cat")...)
	if r.Stdout != string(in) {
		t.Errorf("stdin echo: got %q, want %q", r.Stdout, in)
	}
}

func testPTY(t *testing.T, f *core, mode string) {
	args := append([]string{"-F", f.alice.ConfigPath, "-tt"}, dest(mode, f.me, "web-1")...)
	cmd := exec.Command("ssh", append(args, "/bin/sh")...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	out := &syncBuffer{}
	go func() {
		io.Copy(out, tty)
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		tty.Close()
	})
	send := func(line, want string) {
		t.Helper()
		io.WriteString(tty, line+"\n")
		waitFor(t, fmt.Sprintf("%q after %q; output so far %q", want, line, out.String()), 20*time.Second, func() bool {
			return strings.Contains(out.String(), want)
		})
	}
	send("echo TTY=$(tty)", "TTY=/dev/pts/")
	send("echo SIZE=$(stty size)", "SIZE=30 100")
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	// ssh sends window-change on SIGWINCH; poll until the remote sees it.
	waitFor(t, "window-change to reach the remote pty", 20*time.Second, func() bool {
		io.WriteString(tty, "echo SIZE2=$(stty size)\n")
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(out.String(), "SIZE2=40 120")
	})
	io.WriteString(tty, "exit 7\n")
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("ssh -tt did not exit after `exit 7`")
	}
	cmd.Wait()
	if got := cmd.ProcessState.ExitCode(); got != 7 {
		t.Errorf("ssh -tt exit: got %d, want 7", got)
	}
}

const bulkSize = 100 << 20

func testBulk(t *testing.T, f *core, mode string) {
	data := make([]byte, bulkSize)
	rand.Read(data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])

	r := f.alice.ssh(t, data, append(dest(mode, f.me, "web-1"), "sha256sum")...)
	if got := strings.Fields(r.Stdout); len(got) == 0 || got[0] != want {
		t.Fatalf("upload sha256: got %q, want %s (stderr %s)", r.Stdout, want, r.Stderr)
	}
	file := filepath.Join(t.TempDir(), "blob")
	writeFile(t, file, string(data), 0o644)
	r = f.alice.ssh(t, nil, append(dest(mode, f.me, "web-1"), "cat "+file)...)
	if len(r.Stdout) != bulkSize {
		t.Fatalf("download: got %d bytes, want %d (stderr %s)", len(r.Stdout), bulkSize, r.Stderr)
	}
	if sum := sha256.Sum256([]byte(r.Stdout)); hex.EncodeToString(sum[:]) != want {
		t.Fatalf("download sha256 differs")
	}
}

func testSCP(t *testing.T, f *core, mode string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	data := make([]byte, 3<<20)
	rand.Read(data)
	writeFile(t, src, string(data), 0o644)
	userHost, opts := remote(mode, f.me, "web-1")
	for _, proto := range []string{"sftp", "legacy"} {
		t.Run(proto, func(t *testing.T) {
			var extra []string
			if proto == "legacy" {
				extra = []string{"-O"}
			}
			up := filepath.Join(dir, "up-"+proto)
			args := append(append(append([]string{"-q"}, extra...), opts...), src, userHost+":"+up)
			if r := f.alice.run(t, nil, "scp", args...); r.Code != 0 {
				t.Fatalf("scp up: exit %d: %s", r.Code, r.Stderr)
			}
			down := filepath.Join(dir, "down-"+proto)
			args = append(append(append([]string{"-q"}, extra...), opts...), userHost+":"+up, down)
			if r := f.alice.run(t, nil, "scp", args...); r.Code != 0 {
				t.Fatalf("scp down: exit %d: %s", r.Code, r.Stderr)
			}
			got, err := os.ReadFile(down)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("scp round trip: got %d bytes (err %v), want the %d sent", len(got), err, len(data))
			}
		})
	}
}

func testSFTP(t *testing.T, f *core, mode string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "put.txt")
	writeFile(t, src, "sftp payload\n", 0o644)
	rdir := filepath.Join(dir, "remote")
	batch := filepath.Join(dir, "batch")
	writeFile(t, batch, fmt.Sprintf("mkdir %s\nput %s %s/a.txt\nls %s\nget %s/a.txt %s/back.txt\nrm %s/a.txt\n", rdir, src, rdir, rdir, rdir, dir, rdir), 0o644)
	userHost, opts := remote(mode, f.me, "web-1")
	args := append(append([]string{"-b", batch}, opts...), userHost)
	r := f.alice.run(t, nil, "sftp", args...)
	if r.Code != 0 {
		t.Fatalf("sftp: exit %d: %s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "a.txt") {
		t.Errorf("sftp ls: got %q, want a.txt listed", r.Stdout)
	}
	got, err := os.ReadFile(filepath.Join(dir, "back.txt"))
	if err != nil || string(got) != "sftp payload\n" {
		t.Errorf("sftp get: got %q (err %v), want the put content", got, err)
	}
	if _, err := os.Stat(filepath.Join(rdir, "a.txt")); !os.IsNotExist(err) {
		t.Errorf("sftp rm: a.txt still exists (err %v)", err)
	}
}

func testRsync(t *testing.T, f *core, mode string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	for i := range 20 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d/f%d.txt", i%4, i)), strings.Repeat(strconv.Itoa(i), 1000+i), 0o644)
	}
	dst := filepath.Join(dir, "copy")
	userHost, opts := remote(mode, f.me, "web-1")
	sshCmd := strings.Join(append([]string{"ssh", "-F", f.alice.ConfigPath}, opts...), " ")
	cmd := exec.Command("rsync", "-a", "-e", sshCmd, src+"/", userHost+":"+dst+"/")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	out, err := exec.Command("diff", "-r", src, dst).CombinedOutput()
	if err != nil {
		t.Fatalf("rsync copy differs: %v\n%s", err, out)
	}
}

// httpServer serves body on a loopback port and returns its address.
func httpServer(t *testing.T, body string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// startForward runs `ssh -N` with forwarding options in the background.
func startForward(t *testing.T, c *client, mode, osUser string, fwd ...string) *process {
	args := append([]string{"-F", c.ConfigPath, "-N", "-o", "ExitOnForwardFailure=yes"}, fwd...)
	return startProcess(t, exec.Command("ssh", append(args, dest(mode, osUser, "web-1")...)...))
}

func httpGet(client *http.Client, u string) (string, error) {
	resp, err := client.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

var plainHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func testLocalForward(t *testing.T, f *core, mode string) {
	target := httpServer(t, "from upstream side")
	lport := freePort(t)
	spec := fmt.Sprintf("127.0.0.1:%d:%s", lport, target)
	startForward(t, f.bob, mode, f.me, "-L", spec)
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", lport), 20*time.Second)
	if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", lport)); err != nil || got != "from upstream side" {
		t.Fatalf("bob -L: got %q, %v; want the upstream page", got, err)
	}

	lport = freePort(t)
	p := startForward(t, f.alice, mode, f.me, "-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, target))
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", lport), 20*time.Second)
	if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", lport)); err == nil {
		t.Fatalf("alice -L: got %q, want the forward refused", got)
	}
	waitFor(t, "the refusal on alice's ssh stderr", 10*time.Second, func() bool {
		return strings.Contains(p.out.String(), "no policy lets alice use port forwarding")
	})
}

func testRemoteForward(t *testing.T, f *core, mode string) {
	local := httpServer(t, "from client side")
	rport := freePort(t)
	startForward(t, f.bob, mode, f.me, "-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, local))
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", rport), 20*time.Second)
	// The upstream's loopback is this machine's: fetch through sshd's
	// listener, as a program on the instance would.
	if got, err := httpGet(plainHTTP, fmt.Sprintf("http://127.0.0.1:%d/", rport)); err != nil || got != "from client side" {
		t.Fatalf("bob -R: got %q, %v; want the client page", got, err)
	}

	rport = freePort(t)
	p := startForward(t, f.alice, mode, f.me, "-R", fmt.Sprintf("127.0.0.1:%d:%s", rport, local))
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("alice -R with ExitOnForwardFailure did not exit")
	}
	if !strings.Contains(p.out.String(), "remote port forwarding failed") {
		t.Errorf("alice -R: got %q, want the forward refused", p.out.String())
	}
}

func testDynamicForward(t *testing.T, f *core, mode string) {
	target := httpServer(t, "via socks")
	for _, tc := range []struct {
		who   *client
		allow bool
	}{{f.bob, true}, {f.alice, false}} {
		dport := freePort(t)
		startForward(t, tc.who, mode, f.me, "-D", fmt.Sprintf("127.0.0.1:%d", dport))
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", dport), 20*time.Second)
		proxyURL, _ := url.Parse(fmt.Sprintf("socks5://127.0.0.1:%d", dport))
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}}
		got, err := httpGet(hc, "http://"+target+"/")
		if tc.allow && (err != nil || got != "via socks") {
			t.Errorf("bob -D: got %q, %v; want the page", got, err)
		}
		if !tc.allow && err == nil {
			t.Errorf("alice -D: got %q, want the request refused", got)
		}
	}
}

func testAgentForwarding(t *testing.T, f *core, mode string) {
	sock, fp := startAgent(t)
	for _, tc := range []struct {
		who   *client
		allow bool
	}{{f.bob, true}, {f.alice, false}} {
		tc.who.env = []string{"SSH_AUTH_SOCK=" + sock}
		r := tc.who.ssh(t, nil, append(append([]string{"-A"}, dest(mode, f.me, "web-1")...), "ssh-add -l")...)
		tc.who.env = nil
		if tc.allow && (r.Code != 0 || !strings.Contains(r.Stdout, fp)) {
			t.Errorf("bob -A: ssh-add -l got exit %d %q, want %s listed (stderr %s)", r.Code, r.Stdout, fp, r.Stderr)
		}
		if !tc.allow {
			if r.Code == 0 || strings.Contains(r.Stdout, fp) {
				t.Errorf("alice -A: ssh-add -l got exit %d %q, want no agent", r.Code, r.Stdout)
			}
			if !strings.Contains(r.Stderr, "no policy lets alice use agent forwarding") {
				t.Errorf("alice -A: stderr %q, want the refusal", r.Stderr)
			}
		}
	}
}

func testFailures(t *testing.T, f *core, mode string) {
	tests := []struct {
		target, want string
	}{
		{"nope", "bastion: nope: no such target"},
		{"dead", "refused the connection"},
		{"mute", "did not complete the SSH handshake in 3s"},
		{"impostor", "host key does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			start := time.Now()
			r := f.alice.ssh(t, nil, append(dest(mode, f.me, tc.target), "true")...)
			if r.Code == 0 {
				t.Fatalf("got exit 0, want a failure")
			}
			if !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("stderr: got %q, want it to contain %q", r.Stderr, tc.want)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("took %s, want the reason within a few seconds", took)
			}
		})
	}
	t.Run("wrong os user", func(t *testing.T) {
		r := f.alice.ssh(t, nil, append(dest(mode, "nobody-here", "web-1"), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "this host admits only "+f.me) {
			t.Errorf("got exit %d stderr %q, want the OS user refused", r.Code, r.Stderr)
		}
	})
}

func testWrongKey(t *testing.T, f *core) {
	stranger := newKey(t, t.TempDir(), "stranger")
	c := newClient(t, f.bastion, "alice", stranger)
	r := c.ssh(t, nil, append(dest("jump", f.me, "web-1"), "true")...)
	if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("got exit %d stderr %q, want 255 and Permission denied", r.Code, r.Stderr)
	}
	r = c.ssh(t, nil, append(dest("direct", f.me, "web-1"), "true")...)
	if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("direct: got exit %d stderr %q, want 255 and Permission denied", r.Code, r.Stderr)
	}
}

// testSSHConfigWrite checks that `bastion ssh-config --write` gives a
// working setup: a real ssh with only that config and known_hosts (and the
// person's key) reaches a target with StrictHostKeyChecking=yes.
func testSSHConfigWrite(t *testing.T, f *core) {
	dir := t.TempDir()
	args := []string{"ssh-config", "--config", f.bastion.Config, "--host", f.bastion.Addr, "--user", "alice", "--write", "--ssh-dir", dir}
	for i, want := range []string{"added to", "already has it"} {
		out, err := exec.Command(bastionBin, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("run %d: got %v %q, want %q", i+1, err, out, want)
		}
	}
	cfgPath := filepath.Join(dir, "config")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// What a person has anyway: their key, and strict checking.
	writeFile(t, cfgPath, string(data)+fmt.Sprintf("Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
		f.alice.Key.Private, filepath.Join(dir, "known_hosts")), 0o600)
	out, err := exec.Command("ssh", "-F", cfgPath, f.me+"@web-1.static", "echo via-ssh-config").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "via-ssh-config") {
		t.Fatalf("ssh through the written config: %v\n%s", err, out)
	}
}
