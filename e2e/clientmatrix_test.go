package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"
)

// The client matrix (issue 11): the SSH clients people use besides OpenSSH,
// each run as the real binary Debian ships, against one bastion in front of
// one real sshd, in direct mode (`user+target@bastion`) and, where the
// client can do it, ProxyJump. Every case checks something that fails when
// the bastion gets it wrong: an exit status, a SHA-256, the bytes back
// through a forward, stderr kept off stdout.

// The operations of the matrix.
const (
	opExec        = "exec"           // `exit 3` comes back as exit status 3
	opStdio       = "stdio"          // stdout and stderr arrive apart
	opPTY         = "pty"            // a pty is allocated: tty prints /dev/pts/N
	opUpload      = "upload"         // 1 MiB of random bytes over SFTP, SHA-256 checked on the instance
	opDownload    = "download"       // the same, instance to client
	opSCPUpload   = "scp_upload"     // upload over the SCP protocol (scp -t)
	opSCPDownload = "scp_download"   // download over the SCP protocol (scp -f)
	opList        = "sftp_ls"        // an SFTP directory listing names what is there
	opForward     = "forward_L"      // a local forward carries bytes to an echo listener and back
	opCheck       = "check"          // rclone: hashes compared through the remote md5sum (exec)
	opWrongKey    = "wrong_host_key" // a pin of another key is refused (the last hop's, in ProxyJump)
	opSCPOnly     = "scp_only"       // SCP up and down where policy denies exec and shell: the client's scp command line is scp
)

// matrixOrder is the order cases run and print in.
var matrixOrder = []string{opExec, opStdio, opPTY, opUpload, opDownload, opSCPUpload, opSCPDownload, opList, opForward, opCheck, opWrongKey, opSCPOnly}

const (
	matrixFileSize = 1 << 20
	// matrixTimeout bounds each client command; the machine is shared.
	matrixTimeout = 60 * time.Second
	// matrixTarget is the static target the cases reach.
	matrixTarget = "web-1"
	// filesTarget is the same instance under a name whose policy denies
	// exec and shell, leaving sftp and scp.
	filesTarget = "files-1"
)

// matrixOp runs one operation of one client in one mode.
type matrixOp func(t *testing.T, m *matrix, mode string)

// scpOnly runs a client's SCP upload and download against filesTarget,
// where the policy leaves scp but denies exec: the bastion must take the
// command line that client sends for scp (the scp capability's exact
// grammar), or the transfer is refused as an exec.
func scpOnly(up, down matrixOp) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		up(t, m.files, mode)
		down(t, m.files, mode)
	}
}

// matrixRow is one client: the modes it can use and what it can do. An
// operation a client cannot do is absent, with the reason beside the row.
type matrixRow struct {
	client string
	modes  []string
	ops    map[string]matrixOp
}

var directOnly = []string{"direct"}

func clientMatrix() []matrixRow {
	return []matrixRow{
		// OpenSSH is the reference row: what every other row is held to.
		{client: "openssh", modes: modes, ops: map[string]matrixOp{
			opExec: opensshExec, opStdio: opensshStdio, opPTY: opensshPTY,
			opUpload: opensshUpload, opDownload: opensshDownload,
			opSCPUpload: opensshSCPUpload, opSCPDownload: opensshSCPDownload,
			opList: opensshList, opForward: opensshForward, opWrongKey: opensshWrongKey,
			opSCPOnly: opensshSCPOnly,
		}},
		// PuTTY 0.78: plink for commands and -L, pscp for files (SFTP by
		// default, SCP with -scp), psftp for listings. ProxyJump is
		// -proxycmd running `plink -nc`.
		{client: "putty", modes: modes, ops: map[string]matrixOp{
			opExec: plinkExec, opStdio: plinkStdio, opPTY: plinkPTY,
			opUpload: pscpUpload, opDownload: pscpDownload,
			opSCPUpload: pscpSCPUpload, opSCPDownload: pscpSCPDownload,
			opList: psftpList, opForward: plinkForward, opWrongKey: plinkWrongKey,
			opSCPOnly: scpOnly(pscpSCPUpload, pscpSCPDownload),
		}},
		// paramiko has no SCP of its own (that is the separate scp
		// package), so the SCP operations are absent.
		{client: "paramiko", modes: modes, ops: map[string]matrixOp{
			opExec: pyExec("paramiko"), opStdio: pyStdio("paramiko"), opPTY: pyPTY("paramiko"),
			opUpload: pyUpload("paramiko", opUpload), opDownload: pyDownload("paramiko", opDownload),
			opList: pyList("paramiko"), opForward: pyForward("paramiko"), opWrongKey: pyWrongKey("paramiko", "BadHostKeyException: Host key for server '%s' does not match"),
		}},
		{client: "asyncssh", modes: modes, ops: map[string]matrixOp{
			opExec: pyExec("asyncssh"), opStdio: pyStdio("asyncssh"), opPTY: pyPTY("asyncssh"),
			opUpload: pyUpload("asyncssh", opUpload), opDownload: pyDownload("asyncssh", opDownload),
			opSCPUpload: pyUpload("asyncssh", opSCPUpload), opSCPDownload: pyDownload("asyncssh", opSCPDownload),
			opList: pyList("asyncssh"), opForward: pyForward("asyncssh"), opWrongKey: pyWrongKey("asyncssh", "HostKeyNotVerifiable"),
			opSCPOnly: scpOnly(pyUpload("asyncssh", opSCPUpload), pyDownload("asyncssh", opSCPDownload)),
		}},
		// curl (libssh2) transfers files only: no command, pty or
		// forward. libssh2 has no ProxyJump or proxy command, and curl's
		// --proxy speaks HTTP and SOCKS only, so direct mode alone.
		{client: "curl", modes: directOnly, ops: map[string]matrixOp{
			opUpload: curlUpload("sftp"), opDownload: curlDownload("sftp"),
			opSCPUpload: curlUpload("scp"), opSCPDownload: curlDownload("scp"),
			opList: curlList, opWrongKey: curlWrongKey,
			// libssh2 runs its flags together with the mode and quotes
			// the path ("scp -pf '/path'"), which the scp grammar takes.
			opSCPOnly: scpOnly(curlUpload("scp"), curlDownload("scp")),
		}},
		// lftp and git verify host keys with OpenSSH, which the openssh
		// row holds; they have no wrong_host_key case of their own.
		//
		// lftp speaks SFTP itself over the pipe of its connect-program,
		// which is OpenSSH here: the rows exercise lftp's SFTP client
		// (its pipelined reads and writes, its listing) over OpenSSH's
		// transport, and ProxyJump comes from `ssh -J` in that program.
		// lftp's sftp:// has no command, pty, forward or SCP.
		{client: "lftp", modes: modes, ops: map[string]matrixOp{
			opUpload: lftpUpload, opDownload: lftpDownload, opList: lftpList,
		}},
		// rclone's sftp backend (x/crypto/ssh underneath) transfers files
		// and runs md5sum for hashes; it has no jump host before 1.64's
		// --sftp-ssh, and Debian 12 ships 1.60, so direct mode alone.
		{client: "rclone", modes: directOnly, ops: map[string]matrixOp{
			opUpload: rcloneUpload, opDownload: rcloneDownload, opList: rcloneList, opCheck: rcloneCheck,
			opWrongKey: rcloneWrongKey,
		}},
		// git runs git-upload-pack (clone, the download) and
		// git-receive-pack (push, the upload) over ssh, with
		// GIT_SSH_COMMAND adding -J for ProxyJump.
		{client: "git", modes: modes, ops: map[string]matrixOp{
			opDownload: gitClone, opUpload: gitPush,
		}},
	}
}

// TestClientMatrix runs the client matrix: client × mode × operation, one
// subtest each, in parallel against one shared bastion and sshd. At the end
// it logs the matrix as a grid (shown with -v, or when a case failed).
func TestClientMatrix(t *testing.T) {
	m := newMatrix(t)
	rows := clientMatrix()
	var (
		mu      sync.Mutex // protects outcome
		outcome = map[string]string{}
	)
	t.Cleanup(func() {
		t.Log("client matrix (ok, FAIL; - where the client cannot, . not run):\n" + matrixGrid(rows, outcome))
	})
	for _, row := range rows {
		t.Run(row.client, func(t *testing.T) {
			for _, mode := range row.modes {
				t.Run(mode, func(t *testing.T) {
					for _, op := range matrixOrder {
						run, ok := row.ops[op]
						if !ok {
							continue
						}
						t.Run(op, func(t *testing.T) {
							t.Parallel()
							t.Cleanup(func() {
								mu.Lock()
								defer mu.Unlock()
								outcome[row.client+"/"+mode+"/"+op] = map[bool]string{false: "ok", true: "FAIL"}[t.Failed()]
							})
							run(t, m, mode)
						})
					}
				})
			}
		})
	}
}

// matrixGrid formats the outcome of each client/mode/op as a table.
func matrixGrid(rows []matrixRow, outcome map[string]string) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintf(w, "client\tmode\t%s\n", strings.Join(matrixOrder, "\t"))
	for _, row := range rows {
		for _, mode := range row.modes {
			cells := []string{row.client, mode}
			for _, op := range matrixOrder {
				cell := "-"
				if _, ok := row.ops[op]; ok {
					cell = "."
					if o, ok := outcome[row.client+"/"+mode+"/"+op]; ok {
						cell = o
					}
				}
				cells = append(cells, cell)
			}
			fmt.Fprintln(w, strings.Join(cells, "\t"))
		}
	}
	w.Flush()
	return b.String()
}

// matrix is the fixture shared by every case: an sshd standing in for the
// instance web-1, a bastion with carol (who may forward ports), a TCP echo
// listener on loopback for the forwards, and carol's key in each format.
type matrix struct {
	me     string // the OS user on the instance
	person string // the bastion user
	target string // the target the cases reach: matrixTarget, or filesTarget in files
	// files is this matrix reaching filesTarget instead.
	files *matrix
	b     *bastionProc
	host  string // the bastion's address, split
	port  string
	key   keypair
	ppk   string  // key, in PuTTY's format
	ssh   *client // OpenSSH client set-up for carol
	// good is what a person pins who accepted the bastion's plain host
	// key on first use, for the bastion and for the target behind it.
	good    pinSet
	other   ssh.PublicKey // a key nobody serves, for the wrong pins
	echo    string        // address of the echo listener
	scripts string        // folder of the Python clients
}

// pinSet is the host keys a case's client pins: the bastion's (the whole
// connection in direct mode, the outer one in ProxyJump) and the target's
// (what the inner ProxyJump server must present).
type pinSet struct {
	bastion, target ssh.PublicKey
}

// wrong returns a pinSet that pins another key for the last hop of mode.
func (m *matrix) wrong(mode string) pinSet {
	if mode == "direct" {
		return pinSet{bastion: m.other, target: m.other}
	}
	return pinSet{bastion: m.good.bastion, target: m.other}
}

// hopName is the known_hosts name of the hop that reaches the target in
// mode.
func (m *matrix) hopName(mode string) string {
	if mode == "direct" {
		return fmt.Sprintf("[%s]:%s", m.host, m.port)
	}
	return m.target
}

// last is the key pinned for the hop that reaches the target in mode.
func (tr pinSet) last(mode string) ssh.PublicKey {
	if mode == "direct" {
		return tr.bastion
	}
	return tr.target
}

// knownHosts writes tr as a known_hosts file: the bastion under
// [host]:port, the target under its name.
func (tr pinSet) knownHosts(t *testing.T, m *matrix) string {
	t.Helper()
	line := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	path := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, path, fmt.Sprintf("[%s]:%s %s\n%s %s\n", m.host, m.port, line(tr.bastion), m.target, line(tr.target)), 0o644)
	return path
}

// keySHA256 is the base64 SHA-256 of a key's blob, as curl's --hostpubsha256
// takes it.
func keySHA256(k ssh.PublicKey) string {
	sum := sha256.Sum256(k.Marshal())
	return base64.StdEncoding.EncodeToString(sum[:])
}

func newMatrix(t *testing.T) *matrix {
	t.Helper()
	for _, tool := range []string{"plink", "pscp", "psftp", "puttygen", "curl", "lftp", "rclone", "git", "/usr/bin/python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the README's test command (scripts/test) installs the client matrix's clients", tool)
		}
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import paramiko, asyncssh").CombinedOutput(); err != nil {
		t.Fatalf("Debian's python3-paramiko and python3-asyncssh missing (scripts/test installs them): %v\n%s", err, out)
	}
	if out, _ := exec.Command("curl", "-V").Output(); !regexp.MustCompile(`(?m)^Protocols:.* scp .*sftp`).Match(out) {
		t.Fatalf("curl without scp and sftp (libssh2):\n%s", out)
	}

	dir := t.TempDir()
	m := &matrix{me: currentUser(t), person: "carol", target: matrixTarget, scripts: dir}
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	m.key = newKey(t, dir, "carol")
	m.b = startBastion(t, fmt.Sprintf(`users:
  - {name: carol, keys: [%q], groups: [ops]}
providers:
  static:
    - {name: %[2]s, address: %[4]q, user: %[5]s, private_key: %[6]q, host_key: %[7]q}
    - {name: %[3]s, address: %[4]q, user: %[5]s, private_key: %[6]q, host_key: %[7]q}
policies:
  - {groups: [ops], targets: [%[2]q], os_users: ["*"], allow: [port_forwarding]}
  - {groups: [ops], targets: [%[3]q], os_users: ["*"], deny: [exec, shell]}
`, m.key.AuthorizedKey(), matrixTarget, filesTarget, up.Addr, m.me, upKey.Private, up.HostKey.AuthorizedKey()))
	m.host, m.port, _ = net.SplitHostPort(m.b.Addr)
	m.ssh = newClient(t, m.b, m.person, m.key)

	m.good = pinSet{bastion: m.b.HostKey, target: m.b.HostKey}
	m.other = newKey(t, dir, "other").Signer.PublicKey()

	m.ppk = filepath.Join(dir, "carol.ppk")
	if out, err := exec.Command("puttygen", m.key.Private, "-O", "private", "-o", m.ppk).CombinedOutput(); err != nil {
		t.Fatalf("puttygen: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(dir, "paramiko_client.py"), matrixParamikoScript, 0o644)
	writeFile(t, filepath.Join(dir, "asyncssh_client.py"), matrixAsyncsshScript, 0o644)
	m.echo = startEcho(t)
	files := *m
	files.target = filesTarget
	m.files = &files
	return m
}

// startEcho runs a TCP echo listener on loopback: it sends back what it
// reads and, at the client's EOF, closes its write side.
func startEcho(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // protects conns
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(matrixTimeout))
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// runBounded runs a client binary in its own process group, bounded by
// matrixTimeout: at the deadline the whole group (a PuTTY -proxycmd child,
// an ssh under lftp or git) is killed by the leader's pid.
func runBounded(t *testing.T, env []string, stdin []byte, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), matrixTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q: timed out after %s\nstdout: %s\nstderr: %s", name, args, matrixTimeout, out.String(), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// mustRunBounded is runBounded that fails the case on a non-zero exit.
func mustRunBounded(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	r := runBounded(t, env, nil, name, args...)
	if r.Code != 0 {
		t.Fatalf("%s %q: exit %d\nstdout: %s\nstderr: %s", name, args, r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// startGroup starts a long-running client (a forward) in its own process
// group, killed as a group at cleanup.
func startGroup(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := startProcess(t, cmd)
	// Registered after startProcess's cleanup, so it runs first.
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return p
}

// waitForward waits until the forwarding client p listens on lport and
// returns the address; a client that exits first fails the case at once.
func waitForward(t *testing.T, p *process, lport int) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", lport)
	waitFor(t, addr+" to listen", 30*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited before listening on %s:\n%s", filepath.Base(p.cmd.Path), addr, p.out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr
}

// caseHome returns an empty HOME for one case, so that no client reads the
// dotfiles of the person running the tests or shares a cache across cases.
func caseHome(t *testing.T) []string {
	return []string{"HOME=" + t.TempDir()}
}

// checkRefused asserts that a client pinning another host key did not get
// in: a non-zero exit, and its host key complaint on stderr.
func checkRefused(t *testing.T, r result, complaint string) {
	t.Helper()
	if r.Code == 0 || r.Code == 3 || !strings.Contains(r.Stderr, complaint) {
		t.Errorf("pinning another host key: got exit %d stderr %q, want a refusal naming %q", r.Code, r.Stderr, complaint)
	}
}

// The commands and checks the command operations share.
const (
	exitCommand  = "exit 3"
	stdioCommand = "echo out; echo err >&2"
	ptyCommand   = "tty"
)

var ptsRE = regexp.MustCompile(`^/dev/pts/\d+\r?\n`)

func checkExec(t *testing.T, r result) {
	t.Helper()
	if r.Code != 3 {
		t.Errorf("%q: got exit status %d, want 3\nstdout: %s\nstderr: %s", exitCommand, r.Code, r.Stdout, r.Stderr)
	}
}

func checkStdio(t *testing.T, r result) {
	t.Helper()
	if r.Code != 0 || r.Stdout != "out\n" || !strings.Contains(r.Stderr, "err\n") || strings.Contains(r.Stderr, "out") {
		t.Errorf("%q: got exit %d stdout %q stderr %q, want 0, %q on stdout and %q on stderr only", stdioCommand, r.Code, r.Stdout, r.Stderr, "out\n", "err\n")
	}
}

func checkPTY(t *testing.T, r result) {
	t.Helper()
	if r.Code != 0 || !ptsRE.MatchString(r.Stdout) {
		t.Errorf("%q with a pty: got exit %d stdout %q stderr %q, want 0 and /dev/pts/N", ptyCommand, r.Code, r.Stdout, r.Stderr)
	}
}

// randomFile writes matrixFileSize random bytes to dir/name and returns the
// path and the SHA-256.
func randomFile(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	data := make([]byte, matrixFileSize)
	rand.Read(data)
	path := filepath.Join(dir, name)
	writeFile(t, path, string(data), 0o644)
	sum := sha256.Sum256(data)
	return path, hex.EncodeToString(sum[:])
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// fileCase is one file's way through a client. The instance is this
// machine, so its side is a folder of this test too.
type fileCase struct {
	local, remote string // paths: the client's file and the instance's
	sum           string // SHA-256 of the bytes sent
}

// newUpload prepares a random local file and an instance-side path for it.
func newUpload(t *testing.T) fileCase {
	local, sum := randomFile(t, t.TempDir(), "up.bin")
	return fileCase{local: local, remote: filepath.Join(t.TempDir(), "up.bin"), sum: sum}
}

// newDownload prepares a random instance-side file and a local path for it.
func newDownload(t *testing.T) fileCase {
	remote, sum := randomFile(t, t.TempDir(), "down.bin")
	return fileCase{local: filepath.Join(t.TempDir(), "down.bin"), remote: remote, sum: sum}
}

// check asserts that the file arrived whole at dst.
func (x fileCase) check(t *testing.T, dst string) {
	t.Helper()
	if got := fileSHA256(t, dst); got != x.sum {
		t.Errorf("SHA-256 of %s: got %s, want %s", dst, got, x.sum)
	}
}

func (x fileCase) checkUploaded(t *testing.T)   { t.Helper(); x.check(t, x.remote) }
func (x fileCase) checkDownloaded(t *testing.T) { t.Helper(); x.check(t, x.local) }

// listingNames are the entries of the folder each listing case reads.
var listingNames = []string{"matrix-alpha.txt", "matrix-beta.bin", "matrix-gamma"}

// newListing makes an instance-side folder holding listingNames.
func newListing(t *testing.T) string {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, listingNames[0]), "alpha\n", 0o644)
	writeFile(t, filepath.Join(dir, listingNames[1]), "beta\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, listingNames[2]), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func checkListing(t *testing.T, out string) {
	t.Helper()
	for _, name := range listingNames {
		if !strings.Contains(out, name) {
			t.Errorf("listing: %s missing from %q", name, out)
		}
	}
}

// echoPayload is what a forward case sends to the echo listener.
func echoPayload() []byte {
	b := make([]byte, 256<<10)
	rand.Read(b)
	return b
}

// checkEcho dials addr (a client's local forward), sends a payload, and
// asserts the same bytes come back.
func checkEcho(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dialing the forward %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(matrixTimeout))
	want := echoPayload()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		t.Fatalf("writing through the forward: %v", werr)
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("through the forward: got %d bytes back (err %v), want the %d sent", len(got), err, len(want))
	}
}

// OpenSSH, the reference row.

func opensshExec(t *testing.T, m *matrix, mode string) {
	checkExec(t, m.ssh.ssh(t, nil, append(dest(mode, m.me, m.target), exitCommand)...))
}

func opensshStdio(t *testing.T, m *matrix, mode string) {
	checkStdio(t, m.ssh.ssh(t, nil, append(dest(mode, m.me, m.target), stdioCommand)...))
}

func opensshPTY(t *testing.T, m *matrix, mode string) {
	checkPTY(t, m.ssh.ssh(t, nil, append(append([]string{"-tt"}, dest(mode, m.me, m.target)...), ptyCommand)...))
}

// opensshSCP copies with OpenSSH's scp: over SFTP by default (OpenSSH 9),
// over the SCP protocol with -O.
func opensshSCP(t *testing.T, m *matrix, mode string, legacy, up bool) {
	userHost, opts := remote(mode, m.me, m.target)
	args := append([]string{"-F", m.ssh.ConfigPath, "-q"}, opts...)
	if legacy {
		args = append(args, "-O")
	}
	if up {
		x := newUpload(t)
		mustRunBounded(t, nil, "scp", append(args, x.local, userHost+":"+x.remote)...)
		x.checkUploaded(t)
		return
	}
	x := newDownload(t)
	mustRunBounded(t, nil, "scp", append(args, userHost+":"+x.remote, x.local)...)
	x.checkDownloaded(t)
}

func opensshUpload(t *testing.T, m *matrix, mode string)      { opensshSCP(t, m, mode, false, true) }
func opensshDownload(t *testing.T, m *matrix, mode string)    { opensshSCP(t, m, mode, false, false) }
func opensshSCPUpload(t *testing.T, m *matrix, mode string)   { opensshSCP(t, m, mode, true, true) }
func opensshSCPDownload(t *testing.T, m *matrix, mode string) { opensshSCP(t, m, mode, true, false) }

func opensshList(t *testing.T, m *matrix, mode string) {
	dir := newListing(t)
	userHost, opts := remote(mode, m.me, m.target)
	args := append(append([]string{"-F", m.ssh.ConfigPath, "-b", "-"}, opts...), userHost)
	r := runBounded(t, nil, []byte("ls -1 "+dir+"\n"), "sftp", args...)
	if r.Code != 0 {
		t.Fatalf("sftp: exit %d: %s", r.Code, r.Stderr)
	}
	checkListing(t, r.Stdout)
}

func opensshForward(t *testing.T, m *matrix, mode string) {
	lport := freePort(t)
	args := append([]string{"-F", m.ssh.ConfigPath, "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, m.echo)}, dest(mode, m.me, m.target)...)
	checkEcho(t, waitForward(t, startGroup(t, nil, "ssh", args...), lport))
}

// opensshSCPOnly checks that filesTarget's policy is in force (a command is
// refused) and that scp -O still gets through.
func opensshSCPOnly(t *testing.T, m *matrix, mode string) {
	r := m.ssh.ssh(t, nil, append(dest(mode, m.me, filesTarget), exitCommand)...)
	if want := fmt.Sprintf("no policy lets %s use exec on %s", m.person, filesTarget); r.Code == 3 || !strings.Contains(r.Stderr, want) {
		t.Errorf("exec on %s: got exit %d stderr %q, want it refused", filesTarget, r.Code, r.Stderr)
	}
	scpOnly(opensshSCPUpload, opensshSCPDownload)(t, m, mode)
}

// opensshWrongKey trusts another key for the last hop: in direct mode the
// bastion's, in ProxyJump the target's, both as a plain key and as the host
// CA (the -J hop keeps the config's known_hosts, -o reaches only the last).
func opensshWrongKey(t *testing.T, m *matrix, mode string) {
	other := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(m.other)))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, kh, fmt.Sprintf("[%s]:%s %s\n%s %s\n@cert-authority * %s\n", m.host, m.port, other, m.target, other, other), 0o644)
	args := append([]string{"-o", "UserKnownHostsFile=" + kh}, dest(mode, m.me, m.target)...)
	// The offending line's host names the hop that was refused.
	r := m.ssh.ssh(t, nil, append(args, exitCommand)...)
	checkRefused(t, r, "Host key verification failed")
	checkRefused(t, r, fmt.Sprintf("-R %q", m.hopName(mode)))
}

// PuTTY: plink, pscp, psftp.

// putty returns the options that reach the target in mode and the host
// argument. Host keys are pinned with -hostkey (the bastion's key, which
// the inner ProxyJump server presents too); verification is never off.
// Direct mode logs in as user+target; ProxyJump runs `plink -nc` to the
// bastion as the proxy command and logs in to the target inside it.
func (m *matrix) putty(mode string, tr pinSet) (args []string, host string) {
	pinned := func(k ssh.PublicKey, more ...string) []string {
		return append([]string{"-batch", "-noagent", "-i", m.ppk, "-hostkey", ssh.FingerprintSHA256(k)}, more...)
	}
	if mode == "direct" {
		return pinned(tr.bastion, "-P", m.port, "-l", m.me+"+"+m.target), m.host
	}
	proxy := strings.Join(pinned(tr.bastion, "-P", m.port, "-l", m.person, "-nc", m.target+":22", m.host), " ")
	return pinned(tr.target, "-proxycmd", "plink "+proxy, "-l", m.me), m.target
}

func (m *matrix) plink(t *testing.T, mode string, opts []string, command string) result {
	args, host := m.putty(mode, m.good)
	return runBounded(t, caseHome(t), nil, "plink", append(append(args, opts...), host, command)...)
}

// plinkExec runs the exit-status case five times: plink answers EOF with
// CLOSE, so a relay that sends EOF before exit-status loses the status in
// only some runs (issue 11 item 2).
func plinkExec(t *testing.T, m *matrix, mode string) {
	for i := 0; i < 5; i++ {
		checkExec(t, m.plink(t, mode, nil, exitCommand))
	}
}

func plinkStdio(t *testing.T, m *matrix, mode string) {
	checkStdio(t, m.plink(t, mode, []string{"-T"}, stdioCommand))
}

func plinkPTY(t *testing.T, m *matrix, mode string) {
	checkPTY(t, m.plink(t, mode, []string{"-t"}, ptyCommand))
}

func pscp(t *testing.T, m *matrix, mode string, scp, up bool) {
	args, host := m.putty(mode, m.good)
	args = append(args, "-q")
	if scp {
		args = append(args, "-scp")
	} else {
		args = append(args, "-sftp")
	}
	if up {
		x := newUpload(t)
		mustRunBounded(t, caseHome(t), "pscp", append(args, x.local, host+":"+x.remote)...)
		x.checkUploaded(t)
		return
	}
	x := newDownload(t)
	mustRunBounded(t, caseHome(t), "pscp", append(args, host+":"+x.remote, x.local)...)
	x.checkDownloaded(t)
}

func pscpUpload(t *testing.T, m *matrix, mode string)      { pscp(t, m, mode, false, true) }
func pscpDownload(t *testing.T, m *matrix, mode string)    { pscp(t, m, mode, false, false) }
func pscpSCPUpload(t *testing.T, m *matrix, mode string)   { pscp(t, m, mode, true, true) }
func pscpSCPDownload(t *testing.T, m *matrix, mode string) { pscp(t, m, mode, true, false) }

func psftpList(t *testing.T, m *matrix, mode string) {
	dir := newListing(t)
	batch := filepath.Join(t.TempDir(), "batch")
	writeFile(t, batch, "ls "+dir+"\n", 0o644)
	args, host := m.putty(mode, m.good)
	r := mustRunBounded(t, caseHome(t), "psftp", append(args, "-b", batch, "-bc", host)...)
	checkListing(t, r.Stdout)
}

func plinkForward(t *testing.T, m *matrix, mode string) {
	lport := freePort(t)
	args, host := m.putty(mode, m.good)
	args = append(args, "-N", "-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, m.echo), host)
	checkEcho(t, waitForward(t, startGroup(t, caseHome(t), "plink", args...), lport))
}

func plinkWrongKey(t *testing.T, m *matrix, mode string) {
	args, host := m.putty(mode, m.wrong(mode))
	checkRefused(t, runBounded(t, caseHome(t), nil, "plink", append(args, host, exitCommand)...), "Host key not in manually configured list")
}

// Python clients: paramiko and asyncssh, from Debian's packages, run by
// Debian's interpreter (a python3 earlier on PATH may not see them).

// pyArgs is what the Python clients read from their one argument.
type pyArgs struct {
	Mode       string `json:"mode"`
	Op         string `json:"op"`
	Host       string `json:"host"`
	Port       int    `json:"port"`
	Person     string `json:"person"`
	OSUser     string `json:"os_user"`
	Target     string `json:"target"`
	Key        string `json:"key"`
	HostKey    string `json:"host_key"`        // the bastion's, base64 blob, for paramiko's pin
	TargetKey  string `json:"target_host_key"` // the target's, likewise
	KnownHosts string `json:"known_hosts"`     // for asyncssh's pin
	Command    string `json:"command,omitempty"`
	Local      string `json:"local,omitempty"`
	Remote     string `json:"remote,omitempty"`
	Forward    string `json:"forward,omitempty"` // host:port the forward reaches
	Out        string `json:"out,omitempty"`     // where the forward's echo is written
}

// python runs lib's client script for one operation; the script exits
// non-zero with a traceback on any error.
func (m *matrix) python(t *testing.T, lib, mode string, a pyArgs) result {
	t.Helper()
	r := m.pythonTrusting(t, lib, mode, m.good, a)
	if r.Code != 0 {
		t.Fatalf("%s %s %s: exit %d\nstdout: %s\nstderr: %s", lib, mode, a.Op, r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// pythonTrusting runs lib's client pinning tr and returns how it ended.
func (m *matrix) pythonTrusting(t *testing.T, lib, mode string, tr pinSet, a pyArgs) result {
	t.Helper()
	var port int
	fmt.Sscan(m.port, &port)
	a.Mode, a.Host, a.Port, a.Person, a.OSUser, a.Target = mode, m.host, port, m.person, m.me, m.target
	a.Key, a.KnownHosts = m.key.Private, tr.knownHosts(t, m)
	a.HostKey = base64.StdEncoding.EncodeToString(tr.bastion.Marshal())
	a.TargetKey = base64.StdEncoding.EncodeToString(tr.target.Marshal())
	js, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return runBounded(t, caseHome(t), nil, "/usr/bin/python3", "-I", "-W", "ignore", filepath.Join(m.scripts, lib+"_client.py"), string(js))
}

// pyCommand runs command through lib and returns the remote result the
// script reports.
func (m *matrix) pyCommand(t *testing.T, lib, mode, op, command string) result {
	t.Helper()
	r := m.python(t, lib, mode, pyArgs{Op: op, Command: command})
	var rep struct {
		Code   int    `json:"code"`
		Stdout string `json:"stdout"`
		Stderr string `json:"stderr"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("%s report %q: %v", lib, r.Stdout, err)
	}
	return result{Stdout: rep.Stdout, Stderr: rep.Stderr, Code: rep.Code}
}

func pyExec(lib string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		checkExec(t, m.pyCommand(t, lib, mode, opExec, exitCommand))
	}
}

func pyStdio(lib string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		checkStdio(t, m.pyCommand(t, lib, mode, opStdio, stdioCommand))
	}
}

func pyPTY(lib string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		checkPTY(t, m.pyCommand(t, lib, mode, opPTY, ptyCommand))
	}
}

func pyUpload(lib, op string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		x := newUpload(t)
		m.python(t, lib, mode, pyArgs{Op: op, Local: x.local, Remote: x.remote})
		x.checkUploaded(t)
	}
}

func pyDownload(lib, op string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		x := newDownload(t)
		m.python(t, lib, mode, pyArgs{Op: op, Local: x.local, Remote: x.remote})
		x.checkDownloaded(t)
	}
}

func pyList(lib string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		dir := newListing(t)
		r := m.python(t, lib, mode, pyArgs{Op: opList, Remote: dir})
		checkListing(t, r.Stdout)
	}
}

// pyForward has the script forward to the echo listener (paramiko: a
// direct-tcpip channel, what -L opens per connection; asyncssh: its
// forward_local_port listener), send the payload and write what came back.
func pyForward(lib string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		dir := t.TempDir()
		want := echoPayload()
		in, out := filepath.Join(dir, "payload"), filepath.Join(dir, "echoed")
		writeFile(t, in, string(want), 0o644)
		m.python(t, lib, mode, pyArgs{Op: opForward, Local: in, Out: out, Forward: m.echo})
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("through the forward: got %d bytes back (err %v), want the %d sent", len(got), err, len(want))
		}
	}
}

// pyWrongKey expects lib's complaint; a %s in it stands for the host the
// refused hop connected to (the bastion's address, or the target in
// ProxyJump).
func pyWrongKey(lib, complaint string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		want := complaint
		if strings.Contains(want, "%s") {
			host := m.target
			if mode == "direct" {
				host = m.host
			}
			want = fmt.Sprintf(want, host)
		}
		checkRefused(t, m.pythonTrusting(t, lib, mode, m.wrong(mode), pyArgs{Op: opWrongKey}), want)
	}
}

// matrixParamikoScript is paramiko's SSHClient as scripts use it: a pinned host
// key (RejectPolicy for anything else), the person's key, and for ProxyJump
// the inner SSHClient over sock= an outer direct-tcpip channel.
const matrixParamikoScript = `import base64, json, sys, threading
import paramiko

a = json.loads(sys.argv[1])
key = paramiko.Ed25519Key.from_private_key_file(a["key"])
pins = {name: paramiko.Ed25519Key(data=base64.b64decode(a[name])) for name in ("host_key", "target_host_key")}

def client(host, port, user, host_key, sock=None):
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.get_host_keys().add(host if port == 22 else "[%s]:%d" % (host, port), "ssh-ed25519", host_key)
    c.connect(host, port, username=user, pkey=key, sock=sock, allow_agent=False,
              look_for_keys=False, timeout=30, banner_timeout=30, auth_timeout=30)
    return c

outer = None
if a["mode"] == "direct":
    c = client(a["host"], a["port"], a["os_user"] + "+" + a["target"], pins["host_key"])
else:
    outer = client(a["host"], a["port"], a["person"], pins["host_key"])
    ch = outer.get_transport().open_channel("direct-tcpip", (a["target"], 22), ("127.0.0.1", 0), timeout=30)
    c = client(a["target"], 22, a["os_user"], pins["target_host_key"], sock=ch)

op = a["op"]
if op == "wrong_host_key":
    sys.exit("connected despite the wrong pin")
elif op in ("exec", "stdio", "pty"):
    stdin, stdout, stderr = c.exec_command(a["command"], get_pty=(op == "pty"), timeout=30)
    stdin.close()
    out, err = stdout.read(), stderr.read()
    code = stdout.channel.recv_exit_status()
    print(json.dumps({"code": code, "stdout": out.decode(), "stderr": err.decode()}))
elif op == "upload":
    c.open_sftp().put(a["local"], a["remote"])
elif op == "download":
    c.open_sftp().get(a["remote"], a["local"])
elif op == "sftp_ls":
    print("\n".join(sorted(c.open_sftp().listdir(a["remote"]))))
elif op == "forward_L":
    host, port = a["forward"].rsplit(":", 1)
    ch = c.get_transport().open_channel("direct-tcpip", (host, int(port)), ("127.0.0.1", 0), timeout=30)
    data = open(a["local"], "rb").read()
    def send():
        ch.sendall(data)
        ch.shutdown_write()
    sender = threading.Thread(target=send)
    sender.start()
    got = bytearray()
    while True:
        b = ch.recv(65536)
        if not b:
            break
        got += b
    sender.join()
    open(a["out"], "wb").write(got)
else:
    sys.exit("unknown op " + op)
c.close()
if outer:
    outer.close()
`

// matrixAsyncsshScript is asyncssh as scripts use it: known_hosts pinning the
// bastion's plain key, the person's key, and tunnel= an outer connection
// for ProxyJump.
const matrixAsyncsshScript = `import asyncio, json, sys
import asyncssh

a = json.loads(sys.argv[1])
opts = dict(client_keys=[a["key"]], known_hosts=a["known_hosts"], agent_path=None)

async def main():
    outer = None
    if a["mode"] == "direct":
        c = await asyncssh.connect(a["host"], a["port"], username=a["os_user"] + "+" + a["target"], **opts)
    else:
        outer = await asyncssh.connect(a["host"], a["port"], username=a["person"], **opts)
        c = await asyncssh.connect(a["target"], 22, tunnel=outer, username=a["os_user"], **opts)
    op = a["op"]
    if op == "wrong_host_key":
        sys.exit("connected despite the wrong pin")
    elif op in ("exec", "stdio", "pty"):
        kw = {"term_type": "xterm"} if op == "pty" else {}
        r = await c.run(a["command"], **kw)
        print(json.dumps({"code": r.exit_status, "stdout": r.stdout, "stderr": r.stderr}))
    elif op in ("upload", "download", "sftp_ls"):
        async with c.start_sftp_client() as s:
            if op == "upload":
                await s.put(a["local"], a["remote"])
            elif op == "download":
                await s.get(a["remote"], a["local"])
            else:
                print("\n".join(sorted(await s.listdir(a["remote"]))))
    elif op == "scp_upload":
        await asyncssh.scp(a["local"], (c, a["remote"]))
    elif op == "scp_download":
        await asyncssh.scp((c, a["remote"]), a["local"])
    elif op == "forward_L":
        host, port = a["forward"].rsplit(":", 1)
        listener = await c.forward_local_port("127.0.0.1", 0, host, int(port))
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
        data = open(a["local"], "rb").read()
        async def send():
            writer.write(data)
            await writer.drain()
            writer.write_eof()
        sender = asyncio.ensure_future(send())
        got = await reader.read()
        await sender
        writer.close()
        open(a["out"], "wb").write(got)
        listener.close()
    else:
        sys.exit("unknown op " + op)
    c.close()
    await c.wait_closed()
    if outer:
        outer.close()
        await outer.wait_closed()

asyncio.run(main())
`

// curl: sftp:// and scp:// through libssh2, direct mode, with the key
// given explicitly and the bastion's host key pinned by its SHA-256.

func (m *matrix) curlArgs(scheme, path string) []string {
	return m.curlTrusting(m.good, scheme, path)
}

func (m *matrix) curlTrusting(tr pinSet, scheme, path string) []string {
	return []string{"-sS", "--connect-timeout", "20", "-u", m.me + "+" + m.target + ":",
		"--key", m.key.Private, "--pubkey", m.key.Public, "--hostpubsha256", keySHA256(tr.bastion),
		fmt.Sprintf("%s://%s:%s%s", scheme, m.host, m.port, path)}
}

func curlUpload(scheme string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		x := newUpload(t)
		mustRunBounded(t, caseHome(t), "curl", append([]string{"-T", x.local}, m.curlArgs(scheme, x.remote)...)...)
		x.checkUploaded(t)
	}
}

func curlDownload(scheme string) matrixOp {
	return func(t *testing.T, m *matrix, mode string) {
		x := newDownload(t)
		mustRunBounded(t, caseHome(t), "curl", append([]string{"-o", x.local}, m.curlArgs(scheme, x.remote)...)...)
		x.checkDownloaded(t)
	}
}

func curlList(t *testing.T, m *matrix, mode string) {
	dir := newListing(t)
	r := mustRunBounded(t, caseHome(t), "curl", append([]string{"-l"}, m.curlArgs("sftp", dir+"/")...)...)
	checkListing(t, r.Stdout)
}

func curlWrongKey(t *testing.T, m *matrix, mode string) {
	x := newDownload(t)
	args := append([]string{"-o", x.local}, m.curlTrusting(m.wrong(mode), "sftp", x.remote)...)
	checkRefused(t, runBounded(t, caseHome(t), nil, "curl", args...), "mismatch sha256 fingerprint")
}

// lftp: its own SFTP client over `ssh -s sftp` (OpenSSH, with the matrix's
// ssh_config: pinned keys, StrictHostKeyChecking yes, BatchMode).

func (m *matrix) lftp(t *testing.T, mode, command string) result {
	t.Helper()
	connect := "ssh -a -x -F " + m.ssh.ConfigPath
	site := fmt.Sprintf("open -u %s, -p %s sftp://%s", m.me+"+"+m.target, m.port, m.host)
	if mode == "jump" {
		connect += " -J bastion"
		site = fmt.Sprintf("open -u %s, sftp://%s", m.me, m.target)
	}
	script := strings.Join([]string{
		"set cmd:fail-exit yes", "set net:max-retries 1", "set net:timeout 20",
		"set net:reconnect-interval-base 1", "set sftp:auto-confirm no",
		fmt.Sprintf("set sftp:connect-program %q", connect), site, command,
	}, "; ")
	return mustRunBounded(t, caseHome(t), "lftp", "-c", script)
}

func lftpUpload(t *testing.T, m *matrix, mode string) {
	x := newUpload(t)
	m.lftp(t, mode, fmt.Sprintf("put %s -o %s", x.local, x.remote))
	x.checkUploaded(t)
}

func lftpDownload(t *testing.T, m *matrix, mode string) {
	x := newDownload(t)
	m.lftp(t, mode, fmt.Sprintf("get %s -o %s", x.remote, x.local))
	x.checkDownloaded(t)
}

func lftpList(t *testing.T, m *matrix, mode string) {
	dir := newListing(t)
	checkListing(t, m.lftp(t, mode, "cls -1 "+dir).Stdout)
}

// rclone: the sftp backend configured on the command line only, host key
// checked against the matrix's known_hosts.

func (m *matrix) rclone(t *testing.T, args ...string) result {
	t.Helper()
	return m.rcloneTrusting(t, m.good, args...)
}

func (m *matrix) rcloneTrusting(t *testing.T, tr pinSet, args ...string) result {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "rclone.conf")
	writeFile(t, conf, "", 0o600)
	base := []string{"--config", conf, "--sftp-host", m.host, "--sftp-port", m.port,
		"--sftp-user", m.me + "+" + m.target, "--sftp-key-file", m.key.Private,
		"--sftp-known-hosts-file", tr.knownHosts(t, m), "--sftp-shell-type", "unix",
		"--sftp-md5sum-command", "md5sum", "--sftp-sha1sum-command", "sha1sum",
		"--contimeout", "20s", "--timeout", "30s", "--retries", "1", "--low-level-retries", "1"}
	return runBounded(t, caseHome(t), nil, "rclone", append(base, args...)...)
}

func (m *matrix) mustRclone(t *testing.T, args ...string) result {
	t.Helper()
	r := m.rclone(t, args...)
	if r.Code != 0 {
		t.Fatalf("rclone %q: exit %d\nstdout: %s\nstderr: %s", args, r.Code, r.Stdout, r.Stderr)
	}
	return r
}

func rcloneUpload(t *testing.T, m *matrix, mode string) {
	x := newUpload(t)
	m.mustRclone(t, "copyto", x.local, ":sftp:"+x.remote)
	x.checkUploaded(t)
}

func rcloneDownload(t *testing.T, m *matrix, mode string) {
	x := newDownload(t)
	m.mustRclone(t, "copyto", ":sftp:"+x.remote, x.local)
	x.checkDownloaded(t)
}

func rcloneList(t *testing.T, m *matrix, mode string) {
	dir := newListing(t)
	checkListing(t, m.mustRclone(t, "lsf", ":sftp:"+dir).Stdout)
}

func rcloneWrongKey(t *testing.T, m *matrix, mode string) {
	dir := newListing(t)
	checkRefused(t, m.rcloneTrusting(t, m.wrong(mode), "lsf", ":sftp:"+dir), "knownhosts: key mismatch")
}

// rcloneCheck has rclone compare a local folder with its copy on the
// instance by MD5, which the sftp backend gets by running md5sum there: it
// must find the copy equal, then find a same-size change.
func rcloneCheck(t *testing.T, m *matrix, mode string) {
	local := t.TempDir()
	randomFile(t, local, "a.bin")
	remote := t.TempDir()
	m.mustRclone(t, "copy", local, ":sftp:"+remote)
	r := m.mustRclone(t, "check", local, ":sftp:"+remote)
	// Without a hash in common rclone says so and compares sizes only.
	if !strings.Contains(r.Stderr, "0 differences found") || !strings.Contains(r.Stderr, "1 matching files") || strings.Contains(strings.ToLower(r.Stderr), "hash") {
		t.Errorf("rclone check of an equal copy: got %q, want 0 differences and 1 match, by hash", r.Stderr)
	}
	changed := make([]byte, matrixFileSize)
	rand.Read(changed)
	writeFile(t, filepath.Join(remote, "a.bin"), string(changed), 0o644)
	if r := m.rclone(t, "check", local, ":sftp:"+remote); r.Code == 0 || !strings.Contains(r.Stderr, "1 differences found") {
		t.Errorf("rclone check after a same-size change: got exit %d %q, want non-zero and 1 difference", r.Code, r.Stderr)
	}
}

// git: clone and push over ssh, against a bare repository on the instance
// (the instance's sshd runs as this user, so a temporary folder will do).

func (m *matrix) gitEnv(t *testing.T, mode string) []string {
	sshCmd := "ssh -F " + m.ssh.ConfigPath
	if mode == "jump" {
		sshCmd += " -J bastion"
	}
	return append(caseHome(t), "GIT_SSH_COMMAND="+sshCmd, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=matrix", "GIT_AUTHOR_EMAIL=matrix@example.com",
		"GIT_COMMITTER_NAME=matrix", "GIT_COMMITTER_EMAIL=matrix@example.com")
}

// gitURL is the ssh:// address of path on the instance in mode; "bastion"
// is the ssh_config alias that carries the bastion's port.
func (m *matrix) gitURL(mode, path string) string {
	if mode == "jump" {
		return fmt.Sprintf("ssh://%s@%s%s", m.me, m.target, path)
	}
	return fmt.Sprintf("ssh://%s+%s@bastion%s", m.me, m.target, path)
}

// gitRepo makes a local repository with one commit holding a random file,
// and a bare clone of it on the instance. It returns both paths and the
// file's SHA-256.
func gitRepo(t *testing.T, env []string) (work, bare, sum string) {
	work = t.TempDir()
	mustRunBounded(t, env, "git", "-C", work, "init", "-q", "-b", "main")
	_, sum = randomFile(t, work, "blob.bin")
	mustRunBounded(t, env, "git", "-C", work, "add", "blob.bin")
	mustRunBounded(t, env, "git", "-C", work, "commit", "-q", "-m", "first")
	bare = filepath.Join(t.TempDir(), "repo.git")
	mustRunBounded(t, env, "git", "clone", "-q", "--bare", work, bare)
	return work, bare, sum
}

func gitRev(t *testing.T, env []string, dir, rev string) string {
	t.Helper()
	return strings.TrimSpace(mustRunBounded(t, env, "git", "-C", dir, "rev-parse", rev).Stdout)
}

func gitClone(t *testing.T, m *matrix, mode string) {
	env := m.gitEnv(t, mode)
	work, bare, sum := gitRepo(t, env)
	dst := filepath.Join(t.TempDir(), "clone")
	mustRunBounded(t, env, "git", "clone", "-q", m.gitURL(mode, bare), dst)
	if got, want := gitRev(t, env, dst, "HEAD"), gitRev(t, env, work, "HEAD"); got != want {
		t.Errorf("cloned HEAD: got %s, want %s", got, want)
	}
	if got := fileSHA256(t, filepath.Join(dst, "blob.bin")); got != sum {
		t.Errorf("cloned blob.bin SHA-256: got %s, want %s", got, sum)
	}
}

func gitPush(t *testing.T, m *matrix, mode string) {
	env := m.gitEnv(t, mode)
	work, bare, _ := gitRepo(t, env)
	_, sum := randomFile(t, work, "pushed.bin")
	mustRunBounded(t, env, "git", "-C", work, "add", "pushed.bin")
	mustRunBounded(t, env, "git", "-C", work, "commit", "-q", "-m", "second")
	mustRunBounded(t, env, "git", "-C", work, "push", "-q", m.gitURL(mode, bare), "main")
	if got, want := gitRev(t, env, bare, "main"), gitRev(t, env, work, "HEAD"); got != want {
		t.Errorf("pushed main: got %s, want %s", got, want)
	}
	blob := mustRunBounded(t, env, "git", "-C", bare, "cat-file", "blob", "main:pushed.bin").Stdout
	if got := sha256.Sum256([]byte(blob)); hex.EncodeToString(got[:]) != sum {
		t.Errorf("pushed.bin in the bare repository: SHA-256 %x, want %s", got, sum)
	}
}
