package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The clients tests drive the bastion, in its default configuration, with
// the SSH clients people use besides OpenSSH, as Debian 12 packages them:
// PuTTY's plink and pscp (0.78), paramiko (2.12, run by Debian's
// /usr/bin/python3) and curl with libssh2 (1.10). scripts/test installs
// them; the tests fail, never skip, without them.

// debianPython is the interpreter that has Debian's python3-paramiko; a
// python3 earlier on PATH (pyenv and the like) may not.
const debianPython = "/usr/bin/python3"

// clWorld is the fixture of the clients tests: a real sshd as the instance
// web-1, a bastion with the default ciphers, and two people of group dev,
// alice and bob, each with an OpenSSH key and its PuTTY (.ppk) twin.
type clWorld struct {
	sshd    *sshd
	bastion *bastionProc
	me      string
	alice   *client
	bob     *client
	// home is the HOME of the PuTTY and curl runs, so that they read and
	// write nothing of the person running the tests.
	home string
	// aliceKey and bobKey are the people's keys; alicePPK their PuTTY
	// form.
	aliceKey, bobKey keypair
	alicePPK         string
}

func newClWorld(t *testing.T) *clWorld {
	t.Helper()
	for _, tool := range []string{"plink", "pscp", "puttygen", debianPython} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the README's test command installs putty-tools and python3-paramiko", tool)
		}
	}
	if out, err := exec.Command(debianPython, "-c", "import paramiko").CombinedOutput(); err != nil {
		t.Fatalf("%s has no paramiko (python3-paramiko): %v\n%s", debianPython, err, out)
	}
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	aliceKey := newKey(t, dir, "alice")
	bobKey := newKey(t, dir, "bob")
	// No ciphers key: the default offer is what is under test.
	cfg := fmt.Sprintf(`users:
  - name: alice
    keys: [%q]
    groups: [dev]
  - name: bob
    keys: [%q]
    groups: [dev]
providers:
  static:
    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
limits: {handshake_timeout: 5s, dial_timeout: 5s}
`, aliceKey.AuthorizedKey(), bobKey.AuthorizedKey(), up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey())
	b := startBastion(t, cfg)
	w := &clWorld{sshd: up, bastion: b, me: me, home: t.TempDir(), aliceKey: aliceKey, bobKey: bobKey,
		alice: newClient(t, b, "alice", aliceKey), bob: newClient(t, b, "bob", bobKey)}
	w.alicePPK = filepath.Join(dir, "alice.ppk")
	if out, err := exec.Command("puttygen", aliceKey.Private, "-O", "private", "-o", w.alicePPK).CombinedOutput(); err != nil {
		t.Fatalf("puttygen: %v\n%s", err, out)
	}
	return w
}

// hostPort returns the bastion's address split.
func (w *clWorld) hostPort() (string, string) {
	h, p, _ := net.SplitHostPort(w.bastion.Addr)
	return h, p
}

// bastionFingerprint is the SHA256 fingerprint of the bastion's host key,
// which is also the plain key of every inner ProxyJump server.
func (w *clWorld) bastionFingerprint() string { return ssh.FingerprintSHA256(w.bastion.HostKey) }

// command runs name with args, stdin and HOME set to the world's, bounded
// by a deadline.
func (w *clWorld) command(t *testing.T, stdin []byte, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+w.home)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q: timed out\nstdout: %s\nstderr: %s", name, args, out.String(), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// puttyArgs returns the PuTTY tool options (plink, pscp) that reach osUser
// on web-1 in mode, host key pinned, with the destination last: for direct
// mode the bastion with the target in the login name, for jump mode web-1
// through `ssh -W` to the bastion (PuTTY's -proxycmd; it has no -J).
func (w *clWorld) puttyArgs(mode, portFlag string) (opts []string, userHost string) {
	host, port := w.hostPort()
	opts = []string{"-batch", "-i", w.alicePPK, "-hostkey", w.bastionFingerprint()}
	if mode == "direct" {
		return append(opts, portFlag, port), w.me + "+web-1@" + host
	}
	proxy := fmt.Sprintf("ssh -F %s -W %%host:%%port bastion", w.alice.ConfigPath)
	return append(opts, "-proxycmd", proxy), w.me + "@web-1"
}

// plink runs plink with extra options and a remote command.
func (w *clWorld) plink(t *testing.T, mode string, stdin []byte, extra []string, command string) result {
	t.Helper()
	opts, dst := w.puttyArgs(mode, "-P")
	args := append(append([]string{"-ssh", "-no-antispoof"}, opts...), extra...)
	return w.command(t, stdin, "plink", append(args, dst, command)...)
}

// TestClientsPlink runs PuTTY's plink and pscp in both modes: execs with
// their stdout, stderr and exit status, an upload checked byte for byte,
// and a download through plink's stdout. Jump mode needs the inner server's
// plain host key, since PuTTY has no CA configured; both modes need the
// exit status relayed before EOF.
func TestClientsPlink(t *testing.T) {
	w := newClWorld(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			r := w.plink(t, mode, []byte{}, nil, "echo out-$((2+3)); echo err >&2; exit 7")
			if r.Code != 7 || r.Stdout != "out-5\n" || !strings.Contains(r.Stderr, "err") {
				t.Fatalf("plink exec: got code %d stdout %q stderr %q, want 7, %q and err", r.Code, r.Stdout, r.Stderr, "out-5\n")
			}
			// A few more, with and without a pty: the exit status was
			// lost in about one run in five (TestClientsPlinkExitStatus
			// counts over 200).
			for i := range 20 {
				var extra []string
				if i%2 == 1 {
					extra = []string{"-t"}
				}
				if r := w.plink(t, mode, nil, extra, "exit 9"); r.Code != 9 {
					t.Fatalf("plink %v exit 9, run %d: got code %d stderr %q, want 9", extra, i, r.Code, r.Stderr)
				}
			}
			data := make([]byte, 1<<20)
			rand.Read(data)
			local := filepath.Join(t.TempDir(), "up.bin")
			writeFile(t, local, string(data), 0o644)
			dst := filepath.Join(t.TempDir(), "pscp-"+mode+".bin")
			os.Chmod(filepath.Dir(dst), 0o777)
			opts, userHost := w.puttyArgs(mode, "-P")
			r = w.command(t, nil, "pscp", append(append([]string{"-sftp", "-q"}, opts...), local, userHost+":"+dst)...)
			if r.Code != 0 {
				t.Fatalf("pscp upload: got code %d stderr %q, want 0", r.Code, r.Stderr)
			}
			got, err := os.ReadFile(dst)
			if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatalf("pscp upload: the file on the instance differs (%d bytes, err %v), want the %d bytes sent", len(got), err, len(data))
			}
			// Download through plink's stdout, and upload through its
			// stdin: the streams end with the exit status behind them.
			r = w.plink(t, mode, nil, nil, "cat "+dst)
			if r.Code != 0 || sha256.Sum256([]byte(r.Stdout)) != sha256.Sum256(data) {
				t.Fatalf("plink cat: got code %d and %d bytes, want 0 and the %d bytes", r.Code, len(r.Stdout), len(data))
			}
		})
	}
}

// TestClientsPlinkExitStatus runs plink 200 times in each mode, half with
// stdin at /dev/null and half with a pty (-t), and counts runs whose exit
// code is not the remote command's. PuTTY answers the instance's EOF with
// CLOSE: if the exit status is not on its way by then, it is lost.
func TestClientsPlinkExitStatus(t *testing.T) {
	w := newClWorld(t)
	const runs, parallel = 200, 4
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			var lost atomic.Int64
			var mu sync.Mutex
			var examples []string
			sem := make(chan struct{}, parallel)
			var wg sync.WaitGroup
			for i := range runs {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					var extra []string
					var stdin []byte = []byte{}
					if i%2 == 1 {
						extra, stdin = []string{"-t"}, nil
					}
					r := w.plinkRun(mode, stdin, extra, "echo run; exit 7")
					if r.Code != 7 {
						lost.Add(1)
						mu.Lock()
						if len(examples) < 3 {
							examples = append(examples, fmt.Sprintf("run %d %v: code %d stdout %q stderr %q", i, extra, r.Code, r.Stdout, r.Stderr))
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if n := lost.Load(); n > 0 {
				t.Errorf("%s: %d of %d plink runs lost the exit status 7; e.g.\n%s", mode, n, runs, strings.Join(examples, "\n"))
			}
		})
	}
}

// plinkRun is plink for concurrent use: no testing.T, a deadline, and a
// timeout reported as code -2.
func (w *clWorld) plinkRun(mode string, stdin []byte, extra []string, command string) result {
	opts, dst := w.puttyArgs(mode, "-P")
	args := append(append(append([]string{"-ssh", "-no-antispoof"}, opts...), extra...), dst, command)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "plink", args...)
	cmd.Env = append(os.Environ(), "HOME="+w.home)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ctx.Err() != nil {
		code = -2
	} else if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// paramikoScript connects with paramiko as most programs do
// (SSHClient.connect with a pkey, host key pinned, RejectPolicy), directly
// or with sock= over a direct-tcpip channel of an outer paramiko
// connection, and then runs the steps its JSON argument asks for.
const paramikoScript = `
import base64, hashlib, json, os, sys
import paramiko

a = json.loads(sys.argv[1])

def client(hostname, key_line):
    c = paramiko.SSHClient()
    kt, kb = key_line.split()[:2]
    c.get_host_keys().add(hostname, kt, paramiko.Ed25519Key(data=base64.b64decode(kb)))
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    return c

host, port = a["host"], int(a["port"])
pinned = "[%s]:%d" % (host, port)
try:
    if a["mode"] == "direct":
        c = client(pinned, a["host_key"])
        c.connect(host, port, username=a["login"], pkey=paramiko.Ed25519Key.from_private_key_file(a["key"]),
                  look_for_keys=False, allow_agent=False, timeout=20, banner_timeout=20, auth_timeout=20)
    else:
        outer = client(pinned, a["host_key"])
        outer.connect(host, port, username=a["person"], pkey=paramiko.Ed25519Key.from_private_key_file(a["outer_key"]),
                      look_for_keys=False, allow_agent=False, timeout=20, banner_timeout=20, auth_timeout=20)
        ch = outer.get_transport().open_channel("direct-tcpip", (a["target"], 22), ("127.0.0.1", 0))
        c = client(a["target"], a["host_key"])
        c.connect(a["target"], 22, username=a["login"], sock=ch, pkey=paramiko.Ed25519Key.from_private_key_file(a["key"]),
                  look_for_keys=False, allow_agent=False, timeout=20, banner_timeout=20, auth_timeout=20)
except paramiko.AuthenticationException as e:
    print("AUTH_FAILED", e)
    sys.exit(3)
print("CIPHER", c.get_transport().remote_cipher)
print("HOSTKEY", c.get_transport().get_remote_server_key().get_name())

_, out, err = c.exec_command("echo out-$((2+3)); echo err >&2; exit 7", timeout=30)
o, e, code = out.read().decode(), err.read().decode(), out.channel.recv_exit_status()
if (o, e.strip(), code) != ("out-5\n", "err", 7):
    print("EXEC_WRONG", repr(o), repr(e), code)
    sys.exit(4)

data = os.urandom(1 << 20)
src = os.path.join(a["tmp"], "paramiko-src.bin")
with open(src, "wb") as f:
    f.write(data)
sftp = c.open_sftp()
sftp.put(src, a["remote_path"])
back = os.path.join(a["tmp"], "paramiko-back.bin")
sftp.get(a["remote_path"], back)
with open(back, "rb") as f:
    if hashlib.sha256(f.read()).digest() != hashlib.sha256(data).digest():
        print("TRANSFER_WRONG")
        sys.exit(5)
sftp.close()
c.close()
print("OK")
`

// paramiko runs paramikoScript in mode with the given inner key.
func (w *clWorld) paramiko(t *testing.T, mode string, key keypair) result {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "client.py")
	writeFile(t, script, paramikoScript, 0o644)
	host, port := w.hostPort()
	remote := filepath.Join(t.TempDir(), "paramiko-"+mode+".bin")
	os.Chmod(filepath.Dir(remote), 0o777)
	args := map[string]any{"mode": mode, "host": host, "port": port, "host_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(w.bastion.HostKey))),
		"key": key.Private, "outer_key": w.aliceKey.Private, "person": "alice", "target": "web-1",
		"login": w.me, "tmp": dir, "remote_path": remote}
	if mode == "direct" {
		args["login"] = w.me + "+web-1"
	}
	js, _ := json.Marshal(args)
	return w.command(t, nil, debianPython, script, string(js))
}

// TestClientsParamiko connects with paramiko 2.12, which has neither
// AES-GCM nor chacha20-poly1305, in direct mode and with sock= over a
// channel of an outer paramiko connection (its ProxyJump), authenticating
// with the person's key on both legs; then an exec with exit status and an
// sftp round trip.
func TestClientsParamiko(t *testing.T) {
	w := newClWorld(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			r := w.paramiko(t, mode, w.aliceKey)
			if r.Code != 0 || !strings.Contains(r.Stdout, "OK") {
				t.Fatalf("paramiko %s: got code %d\nstdout: %s\nstderr: %s", mode, r.Code, r.Stdout, r.Stderr)
			}
			if !strings.Contains(r.Stdout, "HOSTKEY ssh-ed25519\n") {
				t.Errorf("paramiko %s: want the plain ed25519 host key checked; stdout: %s", mode, r.Stdout)
			}
		})
	}
}

// TestClientsCurlSFTP fetches a file with curl over sftp (libssh2 1.10,
// which has no AES-GCM) in direct mode; curl has no ProxyJump.
func TestClientsCurlSFTP(t *testing.T) {
	w := newClWorld(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "curl.txt")
	writeFile(t, path, "through the bastion\n", 0o644)
	host, port := w.hostPort()
	fp := strings.TrimPrefix(w.bastionFingerprint(), "SHA256:")
	r := w.command(t, nil, "curl", "-sS", "--max-time", "30", "-u", w.me+"+web-1:", "--key", w.aliceKey.Private, "--pubkey", w.aliceKey.Public,
		"--hostpubsha256", fp, fmt.Sprintf("sftp://%s:%s%s", host, port, path))
	if r.Code != 0 || r.Stdout != "through the bastion\n" {
		t.Fatalf("curl sftp: got code %d stdout %q stderr %q, want 0 and the file", r.Code, r.Stdout, r.Stderr)
	}
}

// TestClientsOpenSSHInnerCertificate checks that offering the inner plain
// host key changes nothing for OpenSSH: with only the @cert-authority line
// for targets and StrictHostKeyChecking yes, ssh -J verifies the host
// certificate and asks nothing; and the outer leg still negotiates AES-GCM.
func TestClientsOpenSSHInnerCertificate(t *testing.T) {
	w := newClWorld(t)
	r := w.alice.ssh(t, nil, "-v", "-J", "bastion", w.me+"@web-1", "exit 3")
	if r.Code != 3 {
		t.Fatalf("ssh -J: got code %d, want 3; stderr: %s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "Server host certificate: ssh-ed25519-cert-v01@openssh.com") {
		t.Errorf("ssh -J: the inner leg did not verify a host certificate; stderr: %s", r.Stderr)
	}
	// "kex: server->client cipher: …" and "client->server", for the
	// jump connection (ssh passes -v on to it) and the inner one.
	if n := strings.Count(r.Stderr, "cipher: aes128-gcm@openssh.com"); n != 4 {
		t.Errorf("ssh -J: got %d AES-GCM kex lines, want 4 (both directions of both legs, as before); stderr: %s", n, r.Stderr)
	}
	r = w.alice.ssh(t, nil, "-v", "-l", w.me+"+web-1", "bastion", "exit 4")
	if r.Code != 4 || !strings.Contains(r.Stderr, "cipher: aes128-gcm@openssh.com") {
		t.Errorf("ssh direct: got code %d, want 4 and AES-GCM; stderr: %s", r.Code, r.Stderr)
	}
}
