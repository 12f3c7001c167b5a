package faults

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"

	"bastion/assemble"
	"bastion/audit"
	"bastion/config"
	"bastion/internal/awsfake"
	"bastion/internal/siminstance"
	"bastion/internal/testkit"
	"bastion/proxy"
)

// Deadlines of the suite. The bastion's own timeouts are short so that the
// suite stays fast; the waits are generous so that a loaded machine under
// -race does not make it flaky.
const (
	// handshakeTimeout, dialTimeout and awsTimeout are the bastion's
	// limits unless a test sets others.
	handshakeTimeout = 2 * time.Second
	dialTimeout      = time.Second
	awsTimeout       = time.Second
	// settleTimeout bounds every wait for the bastion to get back to its
	// baseline.
	settleTimeout = 15 * time.Second
	// endTimeout bounds the wait for a session to end once its other side
	// is gone: the person must never be left hanging.
	endTimeout = 10 * time.Second
	// goroutineSlack is how many goroutines above the baseline are
	// tolerated (runtime and test-framework helpers come and go).
	goroutineSlack = 3
	// region is the AWS region of the Lightsail instances.
	region = "us-east-1"
)

// env is what every test starts from: a folder, the current OS user (the
// instances log sessions in as them), the person's key and the key the
// bastion logs in to static instances with.
type env struct {
	t      *testing.T
	dir    string
	me     string
	person keypair
	upKey  keypair
}

func newEnv(t *testing.T) *env {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &env{t: t, dir: dir, me: u.Username, person: newKey(t, dir, "alice"), upKey: newKey(t, dir, "upstream")}
}

// keypair is an ed25519 key, its private half written to Path.
type keypair struct {
	Signer ssh.Signer
	Path   string
}

func newKey(t *testing.T, dir, name string) keypair {
	t.Helper()
	k := testkit.NewKey(t, dir, name)
	return keypair{Signer: k.Signer, Path: k.Private}
}

// authorizedKey returns k in authorized_keys format, without a newline.
func authorizedKey(k ssh.PublicKey) string { return testkit.AuthorizedKey(k) }

// waitFor waits until cond holds, failing the test after timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, timeout, cond)
}

// poll reports whether cond held within timeout.
func poll(timeout time.Duration, cond func() bool) bool { return testkit.Poll(timeout, cond) }

// within runs f and fails the test if it does not return within timeout.
// f keeps running in the background if it overruns; the test's cleanups
// (closing the bastion, killing processes) end it.
func within(t testing.TB, what string, timeout time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%s did not finish within %s", what, timeout)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer = testkit.SyncBuffer

// logger returns a test logger at info level: debug lines of a thousand
// sessions would drown the log of a failure.
func logger(t *testing.T) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
}

// ---------------------------------------------------------------------------
// Leak checks.

// baseline is the process's goroutine and descriptor counts at rest.
type baseline struct {
	goroutines, fds int
}

// takeBaseline waits for the goroutine count to stop moving (a previous
// session's goroutines may still be returning) and records it.
func takeBaseline(t *testing.T) baseline {
	t.Helper()
	last, stable := -1, 0
	poll(2*time.Second, func() bool {
		n := runtime.NumGoroutine()
		if n == last {
			stable++
		} else {
			last, stable = n, 0
		}
		return stable >= 5
	})
	return baseline{goroutines: runtime.NumGoroutine(), fds: countFDs(t)}
}

// countFDs returns the number of open file descriptors of the process.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// listFDs describes the open descriptors, for failure messages.
func listFDs() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fmt.Fprintf(&b, "  %s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// back waits until the bastion has no connection and the process's
// goroutines and descriptors are back to b (goroutines within a small
// slack). On failure it logs every goroutine's stack, or every descriptor.
func (b baseline) back(t *testing.T, srv *proxy.Server) {
	t.Helper()
	if srv != nil {
		waitFor(t, "Server.ActiveConns() to drop to 0", settleTimeout, func() bool { return srv.ActiveConns() == 0 })
	}
	b.waitGoroutines(t)
	if !poll(settleTimeout, func() bool { return countFDs(t) <= b.fds }) {
		t.Fatalf("open descriptors: got %d, want at most the baseline %d; open now:\n%s", countFDs(t), b.fds, listFDs())
	}
}

// waitGoroutines waits for the goroutine count to come back to within
// goroutineSlack of the baseline, and dumps every stack if it does not.
func (b baseline) waitGoroutines(t *testing.T) {
	t.Helper()
	limit := b.goroutines + goroutineSlack
	if poll(settleTimeout, func() bool { return runtime.NumGoroutine() <= limit }) {
		return
	}
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 2)
	t.Fatalf("goroutines: got %d after %s, want at most %d (baseline %d + %d); stacks:\n%s",
		runtime.NumGoroutine(), settleTimeout, limit, b.goroutines, goroutineSlack, buf.String())
}

// ---------------------------------------------------------------------------
// Processes.

// process is a started background process, killed by pid at cleanup.
type process struct {
	*testkit.Process
	cmd  *exec.Cmd
	out  *syncBuffer
	done <-chan struct{} // closed when the process has exited
}

// startProcess starts cmd with its output captured (unless cmd.Stdout is
// set) and registers a cleanup that kills it and its descendants by pid and
// waits for it.
func startProcess(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := testkit.StartProcess(t, cmd)
	return &process{Process: p, cmd: p.Cmd, out: p.Out, done: p.Done()}
}

// descendants returns the pids of every living descendant of pid.
func descendants(pid int) []int { return testkit.Descendants(pid) }

// lookTool finds an OpenSSH tool on PATH or in /usr/sbin (sshd), failing
// the test (never skipping it) when it is missing.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	return testkit.Tool(t, name)
}

// ---------------------------------------------------------------------------
// Instances.

// sshd is a real OpenSSH server standing in for an instance; it admits the
// env's upstream key.
type sshd struct {
	addr    string
	hostKey ssh.PublicKey
	proc    *process
}

func (e *env) startSSHD() *sshd {
	t := e.t
	t.Helper()
	dir, err := os.MkdirTemp(e.dir, "sshd")
	if err != nil {
		t.Fatal(err)
	}
	d := testkit.StartSSHD(t, testkit.SSHDConfig{Dir: dir, AuthorizedKeys: []string{authorizedKey(e.upKey.Signer.PublicKey())}})
	return &sshd{addr: d.Addr, hostKey: d.HostKey.Signer.PublicKey(),
		proc: &process{Process: d.Proc, cmd: d.Proc.Cmd, out: d.Proc.Out, done: d.Proc.Done()}}
}

// sessions returns the number of sshd processes serving connections (the
// listener's descendants).
func (s *sshd) sessions() int { return len(descendants(s.proc.cmd.Process.Pid)) }

// killSessions kills, by pid, every process serving a connection: the
// instance dies under its sessions while its listener lives on.
func (s *sshd) killSessions(t *testing.T) {
	t.Helper()
	pids := descendants(s.proc.cmd.Process.Pid)
	if len(pids) == 0 {
		t.Fatal("sshd serves no connection to kill")
	}
	for _, pid := range pids {
		// syscall.Kill, not os.FindProcess: that opens a pidfd which stays
		// open until a garbage collection and counts as a leaked descriptor.
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// sim is an in-process instance (internal/siminstance) whose connections
// are counted from its log: "login" when one is authenticated, "logout"
// once everything it started has ended.
type sim struct {
	inst            *siminstance.Instance
	logins, logouts atomic.Int64
}

// startSim starts an instance admitting the env's upstream key for the
// current user.
func (e *env) startSim() *sim {
	e.t.Helper()
	up := e.upKey.Signer.PublicKey()
	return e.startSimWith(siminstance.AcceptKeys(func(user string) []ssh.PublicKey {
		if user == e.me {
			return []ssh.PublicKey{up}
		}
		return nil
	}))
}

func (e *env) startSimWith(authorize func(string, ssh.PublicKey) error) *sim {
	t := e.t
	t.Helper()
	s := &sim{}
	log := zap.New(zapcore.NewTee(logger(t).Core(), &countingCore{s: s}))
	inst, err := siminstance.Start(siminstance.Options{Authorize: authorize, Name: "sim", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.inst = inst
	t.Cleanup(func() { inst.Close() })
	return s
}

// open returns the number of authenticated connections not yet over.
func (s *sim) open() int64 { return s.logins.Load() - s.logouts.Load() }

// port returns the instance's TCP port.
func (s *sim) port() int {
	_, p, _ := net.SplitHostPort(s.inst.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// countingCore is a zapcore.Core that counts siminstance's login and
// logout lines.
type countingCore struct{ s *sim }

func (c *countingCore) Enabled(l zapcore.Level) bool      { return l >= zapcore.InfoLevel }
func (c *countingCore) With([]zapcore.Field) zapcore.Core { return c }
func (c *countingCore) Sync() error                       { return nil }
func (c *countingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *countingCore) Write(e zapcore.Entry, _ []zapcore.Field) error {
	switch e.Message {
	case "login":
		c.s.logins.Add(1)
	case "logout":
		c.s.logouts.Add(1)
	}
	return nil
}

// ---------------------------------------------------------------------------
// AWS.

// fakeAWS is the AWS fake with one Lightsail instance per name, all served
// by one sim that trusts the fake's Lightsail CA.
type fakeAWS struct {
	fake *awsfake.Server
	sim  *sim
}

func (e *env) startAWS(names ...string) *fakeAWS {
	t := e.t
	t.Helper()
	fake, err := awsfake.Start(awsfake.Options{Logger: logger(t).Named("awsfake")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	s := e.startSimWith(siminstance.TrustCA(fake.LightsailCA()))
	for _, n := range names {
		fake.AddLightsailInstance(awsfake.LightsailInstance{Name: n, Region: region, Username: e.me,
			PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1", HostKeys: []ssh.PublicKey{s.inst.HostKey()}})
	}
	return &fakeAWS{fake: fake, sim: s}
}

// awsConfig is the SDK configuration cmd/bastion builds from the default
// chain, built explicitly here so that nothing in the environment (such as
// AWS_CA_BUNDLE) changes it: the fake's endpoint, its static credentials,
// no connection reuse (so that no idle connection counts as a leak), and
// the standard retryer with 3 attempts and short backoffs, so that retries
// fit in one aws_timeout.
func (f *fakeAWS) awsConfig() aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(f.fake.AccessKeyID(), f.fake.SecretAccessKey(), ""),
		BaseEndpoint: aws.String(f.fake.URL()),
		HTTPClient:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = 50 * time.Millisecond
			})
		},
	}
}

// ---------------------------------------------------------------------------
// The bastion.

// staticTarget is one providers.static entry.
type staticTarget struct {
	name, addr string
	hostKey    ssh.PublicKey
}

// bastionOptions are what a test varies.
type bastionOptions struct {
	statics []staticTarget
	// aws, if set, adds a Lightsail provider against the fake.
	aws *fakeAWS
	// handshakeTimeout, dialTimeout and awsTimeout replace the suite's
	// defaults.
	handshakeTimeout, dialTimeout, awsTimeout time.Duration
	// limits holds more entries of the limits flow map, such as
	// "max_links_per_user: 2".
	limits string
	// policies, if set, replaces the policies list (a YAML flow sequence;
	// "[]" leaves alice with no policy).
	policies string
	// extra is appended to the config: more top-level sections, such as
	// sso.
	extra string
}

// bastion is an in-process proxy.Server listening on loopback.
type bastion struct {
	env     *env
	srv     *proxy.Server
	addr    string
	hostKey ssh.PublicKey
	hostCA  ssh.PublicKey
	// served is closed when Serve has returned serveErr.
	served   chan struct{}
	serveErr error
	// audit holds the audit log, one JSON event per line.
	audit *syncBuffer
	// built is the assembled bastion (Reload).
	built *assemble.Bastion
}

// startBastion builds a bastion with the assembly `bastion serve` uses
// (package assemble), from a config text, with the audit log in memory and
// AWS at the fake: alice (the env's person key, group dev) may log in to every
// target as any OS user.
func (e *env) startBastion(opt bastionOptions) *bastion {
	t := e.t
	t.Helper()
	var yml strings.Builder
	fmt.Fprintf(&yml, "host_key: %s\nhost_ca_key: %s\n", filepath.Join(e.dir, "host_ed25519"), filepath.Join(e.dir, "host_ca_ed25519"))
	fmt.Fprintf(&yml, "users:\n  - name: alice\n    keys: [%q]\n    groups: [dev]\n", authorizedKey(e.person.Signer.PublicKey()))
	yml.WriteString("providers:\n")
	if opt.aws != nil {
		fmt.Fprintf(&yml, "  lightsail: {regions: [%s], port: %d, resolve_cache: 0s}\n", region, opt.aws.sim.port())
	}
	if len(opt.statics) > 0 {
		yml.WriteString("  static:\n")
		for _, s := range opt.statics {
			fmt.Fprintf(&yml, "    - {name: %s, address: %q, user: %s, private_key: %s, host_key: %q}\n",
				s.name, s.addr, e.me, e.upKey.Path, authorizedKey(s.hostKey))
		}
	}
	if opt.policies != "" {
		fmt.Fprintf(&yml, "policies: %s\n", opt.policies)
	} else {
		yml.WriteString("policies:\n  - {groups: [dev], targets: [\"*\"], os_users: [\"*\"]}\n")
	}
	fmt.Fprintf(&yml, "limits: {handshake_timeout: %s, dial_timeout: %s, aws_timeout: %s",
		cmp.Or(opt.handshakeTimeout, handshakeTimeout), cmp.Or(opt.dialTimeout, dialTimeout), cmp.Or(opt.awsTimeout, awsTimeout))
	if opt.limits != "" {
		fmt.Fprintf(&yml, ", %s", opt.limits)
	}
	yml.WriteString("}\n")
	yml.WriteString(opt.extra)
	cfg, err := config.Parse([]byte(yml.String()), "")
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yml.String(), err)
	}

	auditBuf := &syncBuffer{}
	opts := assemble.Options{Logger: logger(t), Audit: audit.NewLogger(auditBuf), Stderr: io.Discard}
	if opt.aws != nil {
		awsCfg := opt.aws.awsConfig()
		opts.AWS = &awsCfg
	}
	built, err := assemble.New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := built.Server
	hostKey, hostCA := srv.HostKey, srv.HostCA
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &bastion{env: e, srv: srv, addr: l.Addr().String(), hostKey: hostKey.PublicKey(), hostCA: hostCA.PublicKey(),
		served: make(chan struct{}), audit: auditBuf, built: built}
	go func() {
		defer close(b.served)
		b.serveErr = srv.Serve(l)
	}()
	t.Cleanup(func() {
		built.Close()
		select {
		case <-b.served:
			if !errors.Is(b.serveErr, proxy.ErrServerClosed) {
				t.Errorf("Serve: got %v, want ErrServerClosed", b.serveErr)
			}
		case <-time.After(settleTimeout):
			t.Errorf("Serve did not return within %s of Close", settleTimeout)
		}
		if t.Failed() {
			t.Logf("audit log:\n%s", auditBuf.String())
		}
	})
	return b
}

// ---------------------------------------------------------------------------
// People.

// link is a person's connection to a target through the bastion.
type link struct {
	// tcp is the connection to the bastion; outer the SSH client over it.
	tcp   net.Conn
	outer *ssh.Client
	// inner is the SSH client to the target over a direct-tcpip channel
	// (ProxyJump); nil in direct mode, where outer reaches the target.
	inner *ssh.Client
	// banner is what the bastion said during the inner authentication.
	banner syncBuffer
}

// target returns the client that reaches the target.
func (l *link) target() *ssh.Client {
	if l.inner != nil {
		return l.inner
	}
	return l.outer
}

// close closes the person's side.
func (l *link) close() {
	if l.inner != nil {
		l.inner.Close()
	}
	if l.outer != nil {
		l.outer.Close()
	}
	if l.tcp != nil {
		l.tcp.Close()
	}
}

// abort closes the person's TCP connection abruptly, with a reset, as a
// crashed laptop or a killed client would.
func (l *link) abort() {
	if tc, ok := l.tcp.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	l.tcp.Close()
}

// dial opens the outer SSH connection as login, authenticating with the
// person's key and checking the bastion's host key. The returned link is
// never nil: its tcp is set once connected, so that a caller can close it.
func (b *bastion) dial(login string) (*link, error) {
	l := &link{}
	nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		return l, err
	}
	l.tcp = nc
	nc.SetDeadline(time.Now().Add(endTimeout))
	c, chans, reqs, err := ssh.NewClientConn(nc, b.addr, &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(b.env.person.Signer)},
		HostKeyCallback: ssh.FixedHostKey(b.hostKey),
	})
	if err != nil {
		return l, err
	}
	nc.SetDeadline(time.Time{})
	l.outer = ssh.NewClient(c, chans, reqs)
	return l, nil
}

// jump logs in to target as osUser the way `ssh -J bastion osUser@target`
// does: a direct-tcpip channel to target:22 and an SSH connection over it
// whose host certificate must be signed by the bastion's host CA for the
// name typed.
func (b *bastion) jump(target, osUser string) (*link, error) {
	l, err := b.dial("alice")
	if err != nil {
		return l, err
	}
	addr := net.JoinHostPort(target, "22")
	ch, err := l.outer.Dial("tcp", addr)
	if err != nil {
		return l, err
	}
	// Channels have no deadlines: bound the inner handshake by closing.
	timer := time.AfterFunc(endTimeout, func() { l.tcp.Close() })
	defer timer.Stop()
	c, chans, reqs, err := ssh.NewClientConn(ch, addr, &ssh.ClientConfig{
		User:            osUser,
		HostKeyCallback: b.hostCertChecker().CheckHostKey,
		BannerCallback: func(msg string) error {
			l.banner.Write([]byte(msg))
			return nil
		},
	})
	if err != nil {
		ch.Close()
		return l, err
	}
	l.inner = ssh.NewClient(c, chans, reqs)
	return l, nil
}

// hostCertChecker accepts only host certificates signed by the bastion's
// host CA for the name dialled, as "@cert-authority *" in known_hosts does.
func (b *bastion) hostCertChecker() *ssh.CertChecker {
	ca := b.hostCA.Marshal()
	return &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return bytes.Equal(auth.Marshal(), ca) }}
}

// direct logs in as "osUser+target", the direct mode for clients without
// ProxyJump.
func (b *bastion) direct(target, osUser string) (*link, error) {
	return b.dial(osUser + "+" + target)
}

// mode is how a person reaches a target.
type mode struct {
	name  string
	login func(b *bastion, target, osUser string) (*link, error)
}

var modes = []mode{
	{"jump", (*bastion).jump},
	{"direct", (*bastion).direct},
}

// told returns the one line the person was told about a failure: the
// rejection of a channel, or the banner of the inner authentication.
func told(err error, l *link) string {
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		return oce.Message
	}
	return strings.TrimSuffix(l.banner.String(), "\r\n")
}

// run runs cmd on the target and returns its standard output.
func run(t *testing.T, l *link, cmd string) string {
	t.Helper()
	s, err := l.target().NewSession()
	if err != nil {
		t.Fatalf("opening a session: %v", err)
	}
	defer s.Close()
	var out []byte
	within(t, "running "+cmd, endTimeout, func() { out, err = s.Output(cmd) })
	if err != nil {
		t.Fatalf("running %q: %v", cmd, err)
	}
	return string(out)
}

// checkWorks logs in to target as osUser in mode m, runs a command and
// logs out.
func (b *bastion) checkWorks(t *testing.T, m mode, target, osUser string) {
	t.Helper()
	l, err := m.login(b, target, osUser)
	if err != nil {
		l.close()
		t.Fatalf("%s login to %s: %v (told %q)", m.name, target, err, told(err, l))
	}
	defer l.close()
	if got := run(t, l, "echo ok"); got != "ok\n" {
		t.Fatalf("echo ok through %s: got %q, want \"ok\\n\"", target, got)
	}
}

// stream is a command whose standard output is being read and counted.
type stream struct {
	n    atomic.Int64
	done chan struct{}
	err  error // the session's Wait error, set when done is closed
}

func (s *stream) Write(p []byte) (int, error) {
	s.n.Add(int64(len(p)))
	return len(p), nil
}

// startStream starts cmd on l's target and reads its output.
func startStream(t *testing.T, l *link, cmd string) *stream {
	t.Helper()
	sess, err := l.target().NewSession()
	if err != nil {
		t.Fatalf("opening a session: %v", err)
	}
	t.Cleanup(func() { sess.Close() })
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start(cmd); err != nil {
		t.Fatalf("starting %q: %v", cmd, err)
	}
	s := &stream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		io.Copy(s, out)
		s.err = sess.Wait()
	}()
	return s
}

// waitBytes waits until at least n bytes have arrived.
func (s *stream) waitBytes(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d bytes of output", n), endTimeout, func() bool { return s.n.Load() >= n })
}

// waitStalled waits until at least atLeast bytes have gone through and then
// none for half a second: flow control has stopped the stream, for good
// if nothing on the other side reads.
func (s *stream) waitStalled(t *testing.T, atLeast int64) {
	t.Helper()
	last, since := int64(-1), time.Now()
	waitFor(t, fmt.Sprintf("the stream to stall after %d bytes", atLeast), endTimeout, func() bool {
		if n := s.n.Load(); n != last {
			last, since = n, time.Now()
		}
		return last >= atLeast && time.Since(since) >= 500*time.Millisecond
	})
}

// waitEnd waits for the session to end and returns its Wait error.
func (s *stream) waitEnd(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(endTimeout):
		t.Fatalf("session still running %s after its other side went away (%d bytes read)", endTimeout, s.n.Load())
		return nil
	}
}

// waitClosed waits for an SSH client connection to end.
func waitClosed(t *testing.T, what string, c *ssh.Client) {
	t.Helper()
	within(t, what+" to close", endTimeout, func() { c.Wait() })
}

// bigOutput is a command that writes far more than any test reads.
const bigOutput = "head -c 4000000000 /dev/zero"
