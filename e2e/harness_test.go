// Package e2e drives the bastion binary with the real OpenSSH client against
// a real OpenSSH sshd (and the AWS fake), all on loopback. It fails, never
// skips, when a tool is missing: the README's test command installs them.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/testkit"
)

// bastionBin is the bastion binary built once for the whole run.
var bastionBin string

func TestMain(m *testing.M) {
	for _, tool := range []string{"ssh", "sshd", "scp", "sftp", "rsync", "ssh-keygen", "ssh-agent", "ssh-add"} {
		if _, err := lookTool(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v: the README's test command installs OpenSSH and rsync\n", err)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "bastion-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bastionBin = filepath.Join(dir, "bastion")
	args := []string{"build", "-o", bastionBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "bastion/cmd/bastion")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building bastion:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lookTool finds an OpenSSH tool on PATH or in /usr/sbin (sshd).
func lookTool(name string) (string, error) { return testkit.LookTool(name) }

// currentUser is the OS user the upstream sshd lets the bastion in as.
func currentUser(t testing.TB) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// freePort returns a loopback TCP port that was free a moment ago, for a
// client that binds a port itself (ssh -L, -R): servers get listeners or
// retry (testkit.LaunchSSHD), never this.
func freePort(t testing.TB) int { return testkit.FreePort(t) }

// keypair is an ed25519 key written to disk in OpenSSH format.
type keypair = testkit.Key

func newKey(t testing.TB, dir, name string) keypair { return testkit.NewKey(t, dir, name) }

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	testkit.WriteFile(t, path, content, mode)
}

// waitFor waits until cond holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, timeout, cond)
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	waitFor(t, addr+" to listen", timeout, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// process is a started background process, stopped (by pid) at cleanup.
type process struct {
	*testkit.Process
	cmd *exec.Cmd
	out *syncBuffer
	// done is closed when the process has exited.
	done <-chan struct{}
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer = testkit.SyncBuffer

// startProcess starts cmd with its output captured, and registers a cleanup
// that kills it and its descendants by pid and waits for it.
func startProcess(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	p := testkit.StartProcess(t, cmd)
	return &process{Process: p, cmd: p.Cmd, out: p.Out, done: p.Done()}
}

// sshd is a real OpenSSH server standing in for an instance.
type sshd struct {
	Addr    string
	HostKey keypair
	Dir     string
	proc    *process
}

// sshdOptions adjust the generated sshd_config.
type sshdOptions struct {
	// AuthorizedKeys are the keys allowed to log in (authorized_keys lines).
	AuthorizedKeys []string
	// Extra lines appended to sshd_config.
	Extra []string
}

// startSSHD runs sshd -D on loopback with a fresh host key (the test kit's
// launcher, which retries if another process takes its port first).
func startSSHD(t testing.TB, opt sshdOptions) *sshd {
	t.Helper()
	s := testkit.StartSSHD(t, testkit.SSHDConfig{AuthorizedKeys: opt.AuthorizedKeys, Extra: opt.Extra})
	return &sshd{Addr: s.Addr, HostKey: s.HostKey, Dir: s.Dir, proc: &process{Process: s.Proc, cmd: s.Proc.Cmd, out: s.Proc.Out, done: s.Proc.Done()}}
}

// bastionProc is a running `bastion serve`.
type bastionProc struct {
	Addr      string
	Dir       string
	Config    string
	HostKey   ssh.PublicKey
	HostCA    ssh.PublicKey
	AuditPath string
	proc      *process
}

var listeningRE = regexp.MustCompile(`bastion: listening on (\S+)`)

// startBastion writes config (YAML without listen, host keys and audit,
// which it adds) and runs `bastion serve`. env is added to the environment.
func startBastion(t testing.TB, configBody string, env ...string) *bastionProc {
	t.Helper()
	return startBastionIn(t, t.TempDir(), configBody, env...)
}

// startBastionIn is startBastion with the bastion's files (config, host
// keys, audit log) in dir.
func startBastionIn(t testing.TB, dir, configBody string, env ...string) *bastionProc {
	t.Helper()
	b := &bastionProc{Dir: dir, Config: filepath.Join(dir, "config.yaml"), AuditPath: filepath.Join(dir, "audit.jsonl")}
	// Port 0: the bastion binds a port the kernel picks and says which on
	// its "listening on" line, so no other process can take it first.
	head := "listen: 127.0.0.1:0\nhost_key: host_ed25519\nhost_ca_key: host_ca_ed25519\naudit:\n  log: audit.jsonl\n"
	writeFile(t, b.Config, head+configBody, 0o600)
	cmd := exec.Command(bastionBin, "serve", "--config", b.Config)
	cmd.Env = append(os.Environ(), env...)
	b.proc = startProcess(t, cmd)
	waitFor(t, "bastion to listen", 30*time.Second, func() bool {
		select {
		case <-b.proc.done:
			t.Fatalf("bastion exited:\n%s", b.proc.out.String())
		default:
		}
		m := listeningRE.FindStringSubmatch(b.proc.out.String())
		if m == nil {
			return false
		}
		b.Addr = m[1]
		return true
	})
	b.HostKey = readPublicKeyOf(t, filepath.Join(dir, "host_ed25519"))
	b.HostCA = readPublicKeyOf(t, filepath.Join(dir, "host_ca_ed25519"))
	return b
}

func readPublicKeyOf(t testing.TB, privPath string) ssh.PublicKey {
	t.Helper()
	k, err := testkit.PublicKeyOf(privPath)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// AuditLines returns the audit log, one event a line.
func (b *bastionProc) AuditLines(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(b.AuditPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// client is an OpenSSH client set-up: an ssh_config that names the bastion
// "bastion", one identity, and a known_hosts file that trusts the bastion's
// key and its host CA. StrictHostKeyChecking is yes everywhere.
type client struct {
	Dir        string
	ConfigPath string
	Key        keypair
	bastion    *bastionProc
	env        []string
}

// newClient prepares a client for person (the bastion user name) with key.
func newClient(t testing.TB, b *bastionProc, person string, key keypair, extra ...string) *client {
	t.Helper()
	dir := t.TempDir()
	c := &client{Dir: dir, ConfigPath: filepath.Join(dir, "ssh_config"), Key: key, bastion: b}
	host, port, _ := net.SplitHostPort(b.Addr)
	kh := filepath.Join(dir, "known_hosts")
	writeFile(t, kh, fmt.Sprintf("[%s]:%s %s\n@cert-authority * %s\n", host, port,
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(b.HostKey))),
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(b.HostCA)))), 0o644)
	cfg := []string{
		"Host bastion",
		"  HostName " + host,
		"  Port " + port,
		"  User " + person,
		"Host *",
		"  IdentityFile " + key.Private,
		"  IdentitiesOnly yes",
		"  UserKnownHostsFile " + kh,
		"  GlobalKnownHostsFile /dev/null",
		"  StrictHostKeyChecking yes",
		"  BatchMode yes",
		"  ConnectTimeout 10",
		"  ServerAliveInterval 0",
	}
	cfg = append(cfg, extra...)
	writeFile(t, c.ConfigPath, strings.Join(cfg, "\n")+"\n", 0o644)
	return c
}

// result is a finished command.
type result struct {
	Stdout, Stderr string
	Code           int
}

// run runs an OpenSSH tool (ssh, scp, sftp) with -F pointing at the
// client's config, bounded by a deadline.
func (c *client) run(t testing.TB, stdin []byte, tool string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"-F", c.ConfigPath}, args...)
	cmd := exec.CommandContext(ctx, tool, all...)
	cmd.Env = append(os.Environ(), c.env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out\nstderr: %s", tool, args, errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// ssh runs the ssh client.
func (c *client) ssh(t testing.TB, stdin []byte, args ...string) result {
	t.Helper()
	return c.run(t, stdin, "ssh", args...)
}

func init() {
	// Keep OpenSSH's view of the environment predictable: no agent of the
	// person running the tests.
	os.Unsetenv("SSH_AUTH_SOCK")
}
