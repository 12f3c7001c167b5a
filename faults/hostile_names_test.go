package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/ssh"

	"bastion/assemble"
	"bastion/audit"
	"bastion/auth"
	"bastion/config"
	"bastion/proxy"
)

// Hostile target names (issue 10 item 1): a logged-in person, with or
// without a policy, types names that are huge, or that are no target, or
// many distinct ones. The bastion must refuse them at the channel open,
// before any host certificate is signed, and write a bounded amount.

// countingCA is the bastion's host CA, counting the certificates it signs.
type countingCA struct {
	ssh.Signer
	signed atomic.Int64
}

func (c *countingCA) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	c.signed.Add(1)
	return c.Signer.Sign(rand, data)
}

// tailSink is a writer that counts what it is given and keeps only the
// last tailKeep bytes, so that measuring the bastion's memory does not
// measure the test's copy of its audit log or logs.
type tailSink struct {
	mu    sync.Mutex
	total int
	tail  []byte
}

const tailKeep = 64 << 10

func (s *tailSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total += len(p)
	s.tail = append(s.tail, p...)
	if over := len(s.tail) - tailKeep; over > 0 {
		s.tail = append(s.tail[:0:0], s.tail[over:]...)
	}
	return len(p), nil
}

func (s *tailSink) Sync() error { return nil }

// size returns the number of bytes written so far.
func (s *tailSink) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// lines returns the whole lines of the kept tail.
func (s *tailSink) lines() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := string(s.tail)
	if i := strings.IndexByte(t, '\n'); i >= 0 && len(s.tail) == tailKeep {
		t = t[i+1:]
	}
	return t
}

// namesBastion is an in-process bastion for these tests: alice may log in
// to every target as any OS user; mallory has a key and no policy at all.
// The one target is a static "web-1" in front of a sim instance.
type namesBastion struct {
	srv     *proxy.Server
	addr    string
	hostKey ssh.PublicKey
	ca      *countingCA
	// audit and log receive the audit events and the log lines (JSON,
	// info level).
	audit, log *tailSink
	mallory    keypair
	env        *env
}

func startNamesBastion(t *testing.T) *namesBastion {
	t.Helper()
	e := newEnv(t)
	sim := e.startSim()
	mallory := newKey(t, e.dir, "mallory")
	yml := fmt.Sprintf(`host_key: %s
host_ca_key: %s
users:
  - {name: alice, keys: [%q], groups: [dev]}
  - {name: mallory, keys: [%q]}
providers:
  static:
    - {name: web-1, address: %q, user: %s, private_key: %s, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
limits: {handshake_timeout: %s, dial_timeout: %s, aws_timeout: %s}
`, filepath.Join(e.dir, "host_ed25519"), filepath.Join(e.dir, "host_ca_ed25519"),
		authorizedKey(e.person.Signer.PublicKey()), authorizedKey(mallory.Signer.PublicKey()),
		sim.inst.Addr(), e.me, e.upKey.Path, authorizedKey(sim.inst.HostKey()),
		handshakeTimeout, dialTimeout, awsTimeout)
	cfg, err := config.Parse([]byte(yml), "")
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yml, err)
	}
	nb := &namesBastion{audit: &tailSink{}, log: &tailSink{}, mallory: mallory, env: e}
	built, err := assemble.New(t.Context(), cfg, assemble.Options{
		Logger: zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
			zapcore.AddSync(nb.log), zap.InfoLevel)),
		Audit:  audit.NewLogger(nb.audit),
		Stderr: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	nb.srv = built.Server
	nb.hostKey = nb.srv.HostKey.PublicKey()
	// The CA counts what it signs; no limits, so that every open reaches
	// the name checks.
	nb.ca = &countingCA{Signer: nb.srv.HostCA}
	nb.srv.HostCA = nb.ca
	nb.srv.SetRules(&proxy.Rules{Auth: auth.NewAuthenticator(cfg), Policy: auth.NewPolicy(cfg)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nb.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- nb.srv.Serve(l) }()
	t.Cleanup(func() {
		built.Close()
		select {
		case err := <-served:
			if !errors.Is(err, proxy.ErrServerClosed) {
				t.Errorf("Serve: got %v, want ErrServerClosed", err)
			}
		case <-time.After(settleTimeout):
			t.Errorf("Serve did not return within %s of Close", settleTimeout)
		}
		if t.Failed() {
			t.Logf("audit log (last 8 KB):\n%s", lastBytes(nb.audit.lines(), 8<<10))
			t.Logf("log (last 8 KB):\n%s", lastBytes(nb.log.lines(), 8<<10))
		}
	})
	return nb
}

// lastBytes returns the last n bytes of s.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// dial logs in as person with key; the connection is closed at cleanup.
func (nb *namesBastion) dial(t *testing.T, person string, key ssh.Signer) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", nb.addr, &ssh.ClientConfig{
		User: person, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(nb.hostKey), Timeout: endTimeout,
	})
	if err != nil {
		t.Fatalf("logging in as %s: %v", person, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openJump opens the direct-tcpip channel `ssh -J` opens for host:22. An
// accepted channel is closed at once: the tests look at the channel open
// only. It returns the refusal's message, or "" if the channel was
// accepted.
func openJump(t *testing.T, c *ssh.Client, host string) string {
	t.Helper()
	payload := ssh.Marshal(struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}{host, 22, "127.0.0.1", 40000})
	var ch ssh.Channel
	var reqs <-chan *ssh.Request
	var err error
	within(t, fmt.Sprintf("opening a channel to a %d-byte name", len(host)), endTimeout, func() {
		ch, reqs, err = c.OpenChannel("direct-tcpip", payload)
	})
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		return oce.Message
	}
	if err != nil {
		t.Fatalf("opening a channel to a %d-byte name: %v", len(host), err)
	}
	go ssh.DiscardRequests(reqs)
	ch.Close()
	return ""
}

// innerHandshake opens a jump channel to host and runs the inner SSH
// handshake over it, returning the host certificate the bastion presented.
func innerHandshake(t *testing.T, c *ssh.Client, host, osUser string) (*ssh.Certificate, error) {
	t.Helper()
	nc, err := c.Dial("tcp", net.JoinHostPort(host, "22"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	var cert *ssh.Certificate
	timer := time.AfterFunc(endTimeout, func() { nc.Close() })
	defer timer.Stop()
	ic, chans, reqs, err := ssh.NewClientConn(nc, host, &ssh.ClientConfig{
		User: osUser,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			cert, _ = key.(*ssh.Certificate)
			return nil
		},
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01},
	})
	if err != nil {
		return cert, err
	}
	ssh.NewClient(ic, chans, reqs).Close()
	return cert, nil
}

// memory is the process's memory after a collection that returns freed
// memory to the system: the resident set and the live heap.
type memory struct{ rss, heap int64 }

func measure(t *testing.T) memory {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return memory{rss: vmRSS(t), heap: int64(s[0].Value.Uint64())}
}

// growth describes the growth from m to n.
func (m memory) growth(n memory) string {
	return fmt.Sprintf("RSS %+.1f MiB (%.1f -> %.1f), live heap %+.1f MiB (%.1f -> %.1f)",
		float64(n.rss-m.rss)/mib, float64(m.rss)/mib, float64(n.rss)/mib,
		float64(n.heap-m.heap)/mib, float64(m.heap)/mib, float64(n.heap)/mib)
}

// check fails t if the live heap, or (without the race detector, whose
// shadow memory inflates it) the resident set, grew by limit or more.
func (m memory) check(t *testing.T, n memory, limit int64) {
	t.Helper()
	if grew := n.heap - m.heap; grew >= limit {
		t.Errorf("live heap grew by %.1f MiB; want less than %d MiB", float64(grew)/mib, limit/mib)
	}
	if grew := n.rss - m.rss; !raceBuild && grew >= limit {
		t.Errorf("RSS grew by %.1f MiB; want less than %d MiB", float64(grew)/mib, limit/mib)
	}
}

// vmRSS returns the process's resident set.
func vmRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

const mib = 1 << 20

// TestHostileNamesLongJumpNoPolicy: a person with no policy opens 300
// ProxyJump channels to 200 KB names. Each is refused at the open with the
// length reason, no certificate is signed, the audit log grows by a
// bounded amount, and the bastion holds on to no memory for them.
func TestHostileNamesLongJumpNoPolicy(t *testing.T) {
	const (
		opens    = 300
		nameLen  = 200 << 10
		maxAudit = 300 << 10
		maxMem   = 16 * mib
	)
	nb := startNamesBastion(t)
	c := nb.dial(t, "mallory", nb.mallory.Signer)
	// Each name differs, as an attacker's would, so that nothing could be
	// cached by name.
	base := strings.Repeat("a", nameLen-8)
	mem0, audit0, log0 := measure(t), nb.audit.size(), nb.log.size()
	start := time.Now()
	var accepted, wrongReason int
	const want = "bastion: target name is longer than 253 bytes"
	for i := range opens {
		msg := openJump(t, c, fmt.Sprintf("%s%08d", base, i))
		switch {
		case msg == "":
			accepted++
		case msg != want:
			if wrongReason == 0 {
				t.Errorf("open %d refused with %.200q…; want %q", i, msg, want)
			}
			wrongReason++
		}
	}
	took := time.Since(start)
	// Wait for whatever the bastion still does with accepted channels
	// (old code: inner handshakes, resolutions) before measuring.
	waitFor(t, "the audit log to settle", settleTimeout, func() bool {
		n := nb.audit.size()
		time.Sleep(200 * time.Millisecond)
		return nb.audit.size() == n
	})
	mem1, audit1, log1 := measure(t), nb.audit.size(), nb.log.size()
	signed := nb.ca.signed.Load()
	t.Logf("%d opens of %d KB names by a user with no policy in %s: %s; audit +%d bytes (%.0f per open), log +%d bytes; %d certificates signed, %d channels accepted",
		opens, nameLen>>10, took.Round(time.Millisecond), mem0.growth(mem1),
		audit1-audit0, float64(audit1-audit0)/opens, log1-log0, signed, accepted)
	if accepted > 0 {
		t.Errorf("%d of %d channels to 200 KB names were accepted; want every one refused at the open", accepted, opens)
	}
	if signed != 0 {
		t.Errorf("host certificates signed: got %d, want 0", signed)
	}
	if grew := audit1 - audit0; grew >= maxAudit {
		t.Errorf("audit log grew by %d bytes; want less than %d", grew, maxAudit)
	}
	if grew := log1 - log0; grew >= maxAudit {
		t.Errorf("log grew by %d bytes; want less than %d", grew, maxAudit)
	}
	mem0.check(t, mem1, maxMem)
	// The refusal is audited, with the name clipped.
	ev := lastEvent(t, nb.audit.lines(), audit.TypeTargetError)
	if ev == nil {
		t.Fatal("no target_error event for the long names")
	}
	if typed, _ := ev["typed"].(string); len(typed) > audit.MaxFieldLen+len("…[truncated]") || !strings.HasPrefix(typed, "aaaa") {
		t.Errorf("target_error typed: %d bytes; want the name clipped to %d", len(typed), audit.MaxFieldLen)
	}
	if reason, _ := ev["reason"].(string); !strings.Contains(reason, "longer than 253 bytes") {
		t.Errorf("target_error reason %q; want the length cap", reason)
	}
}

// lastEvent returns the last audit event of type typ in log, or nil.
func lastEvent(t *testing.T, log, typ string) map[string]any {
	t.Helper()
	var last map[string]any
	for line := range strings.Lines(log) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %.200q: %v", line, err)
		}
		if ev["type"] == typ {
			last = ev
		}
	}
	return last
}

// TestHostileNamesNonTarget: a name that is no target, or a target the
// person may not log in to, is refused at the channel open with the
// reason: no certificate is signed and no inner key exchange happens. A
// target the person may reach still gets its certificate.
func TestHostileNamesNonTarget(t *testing.T) {
	nb := startNamesBastion(t)
	alice := nb.dial(t, "alice", nb.env.person.Signer)
	mallory := nb.dial(t, "mallory", nb.mallory.Signer)
	tests := []struct {
		who  string
		c    *ssh.Client
		host string
		want string
	}{
		{"alice", alice, "github.com", "bastion: github.com: no such target"},
		{"alice", alice, "no-such-host", "bastion: no-such-host: no such target"},
		{"alice", alice, "-oProxyCommand=x", "bastion: -oProxyCommand=x: not a valid target name"},
		{"mallory", mallory, "web-1", "bastion: web-1: no policy lets mallory reach web-1"},
	}
	for _, tc := range tests {
		t.Run(tc.who+"/"+tc.host, func(t *testing.T) {
			before := nb.ca.signed.Load()
			if got := openJump(t, tc.c, tc.host); got != tc.want {
				t.Errorf("channel open: got %q, want the refusal %q", got, tc.want)
			}
			// What ssh -J would do next: the inner handshake, which must
			// not get as far as a host key.
			cert, err := innerHandshake(t, tc.c, tc.host, nb.env.me)
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) || cert != nil {
				t.Errorf("inner handshake: got cert %v, err %v; want no key exchange, the channel refused", cert != nil, err)
			}
			if got := nb.ca.signed.Load() - before; got != 0 {
				t.Errorf("host certificates signed: got %d, want 0", got)
			}
		})
	}
	t.Run("alice/web-1", func(t *testing.T) {
		cert, err := innerHandshake(t, alice, "web-1", nb.env.me)
		if err != nil {
			t.Fatalf("a reachable target: %v", err)
		}
		if cert == nil || len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != "web-1" {
			t.Fatalf("a reachable target: got certificate %v, want one for web-1", cert)
		}
		if got := nb.ca.signed.Load(); got != 1 {
			t.Errorf("host certificates signed: got %d, want 1", got)
		}
	})
}

// TestHostileNamesManyDistinct: 10,000 distinct valid-looking names, and
// every spelling of a real target's suffix, opened by a person who may
// reach everything. Only the spellings of the real target get a
// certificate; the bastion's memory does not grow with the names.
func TestHostileNamesManyDistinct(t *testing.T) {
	const (
		names   = 10000
		workers = 4
		maxMem  = 16 * mib
	)
	nb := startNamesBastion(t)
	alice := nb.dial(t, "alice", nb.env.person.Signer)
	// Every upper/lower-case spelling of ".static" names web-1.
	var spellings []string
	for mask := range 1 << len("static") {
		var b strings.Builder
		for i, r := range "static" {
			if mask&(1<<i) != 0 {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
		}
		spellings = append(spellings, "web-1."+b.String())
	}
	mem0 := measure(t)
	start := time.Now()
	var next atomic.Int64
	var mu sync.Mutex
	var accepted, refusedReal int
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= names+len(spellings) {
					return
				}
				real := i >= names
				host := fmt.Sprintf("host-%05d.%s.internal.example", i, strings.Repeat("x", 200))
				if real {
					host = spellings[i-names]
				}
				msg := openJump(t, alice, host)
				mu.Lock()
				switch {
				case msg == "" && !real:
					accepted++
				case msg != "" && real:
					refusedReal++
					t.Errorf("%s: refused with %q; want it reachable", host, msg)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	mem1 := measure(t)
	signed := nb.ca.signed.Load()
	t.Logf("%d distinct names and %d spellings of one target in %s: %d certificates signed, %d non-targets accepted; %s",
		names, len(spellings), took.Round(time.Millisecond), signed, accepted, mem0.growth(mem1))
	if accepted > 0 {
		t.Errorf("%d of %d non-target names were accepted; want every one refused", accepted, names)
	}
	if signed > int64(len(spellings)) {
		t.Errorf("host certificates signed: got %d, want at most the %d spellings of the one target", signed, len(spellings))
	}
	mem0.check(t, mem1, maxMem)
}

// TestHostileNamesLongLogin: direct-mode logins of 200 KB, by a stranger's
// key and by a person with no policy. The stranger is refused as any
// unknown key is; the person's session is refused with the length reason;
// the audit log holds neither login whole.
func TestHostileNamesLongLogin(t *testing.T) {
	const (
		logins   = 20
		nameLen  = 200 << 10
		maxAudit = 64 << 10
	)
	nb := startNamesBastion(t)
	stranger := newKey(t, nb.env.dir, "stranger")
	audit0, log0 := nb.audit.size(), nb.log.size()
	long := func(i int) string { return fmt.Sprintf("ec2-user+%08d", i) + strings.Repeat("a", nameLen) }
	for i := range logins {
		// A stranger: refused at authentication.
		c, err := ssh.Dial("tcp", nb.addr, &ssh.ClientConfig{User: long(i), Auth: []ssh.AuthMethod{ssh.PublicKeys(stranger.Signer)},
			HostKeyCallback: ssh.FixedHostKey(nb.hostKey), Timeout: endTimeout})
		if err == nil {
			c.Close()
			t.Fatalf("a stranger's key logged in")
		}
		// A known person with no policy: refused with the reason.
		c, err = ssh.Dial("tcp", nb.addr, &ssh.ClientConfig{User: long(i), Auth: []ssh.AuthMethod{ssh.PublicKeys(nb.mallory.Signer)},
			HostKeyCallback: ssh.FixedHostKey(nb.hostKey), Timeout: endTimeout})
		if err != nil {
			t.Fatalf("mallory with a 200 KB login: %v", err)
		}
		_, _, err = c.OpenChannel("session", nil)
		c.Close()
		var oce *ssh.OpenChannelError
		if want := "bastion: login name is longer than 253 bytes"; !errors.As(err, &oce) || oce.Message != want {
			t.Fatalf("session on a 200 KB direct login: got %.200v; want the refusal %q", err, want)
		}
	}
	waitFor(t, "the connections to end", settleTimeout, func() bool { return nb.srv.ActiveConns() == 0 })
	grew, logGrew := nb.audit.size()-audit0, nb.log.size()-log0
	t.Logf("%d stranger and %d no-policy logins of %d KB: audit +%d bytes, log +%d bytes; %d certificates signed",
		logins, logins, nameLen>>10, grew, logGrew, nb.ca.signed.Load())
	if grew >= maxAudit || logGrew >= maxAudit {
		t.Errorf("audit grew by %d bytes and log by %d; want each less than %d", grew, logGrew, maxAudit)
	}
	ev := lastEvent(t, nb.audit.lines(), audit.TypeTargetError)
	if ev == nil {
		t.Fatal("no target_error event for the long login")
	}
	if login, _ := ev["login"].(string); len(login) > audit.MaxFieldLen+len("…[truncated]") || !strings.HasPrefix(login, "ec2-user+") {
		t.Errorf("target_error login: %d bytes; want the login clipped to %d", len(login), audit.MaxFieldLen)
	}
}

// TestHostileNamesLongOSUser: the inner login name of a jump (the OS user)
// is typed too. A 200 KB one is refused with the length reason in the
// inner authentication's banner, and the audit log holds it clipped.
func TestHostileNamesLongOSUser(t *testing.T) {
	const tries, maxAudit = 20, 64 << 10
	nb := startNamesBastion(t)
	alice := nb.dial(t, "alice", nb.env.person.Signer)
	audit0, log0 := nb.audit.size(), nb.log.size()
	for i := range tries {
		nc, err := alice.Dial("tcp", "web-1:22")
		if err != nil {
			t.Fatalf("jump to web-1: %v", err)
		}
		var banner syncBuffer
		timer := time.AfterFunc(endTimeout, func() { nc.Close() })
		_, _, _, err = ssh.NewClientConn(nc, "web-1:22", &ssh.ClientConfig{
			User: fmt.Sprintf("u%08d", i) + strings.Repeat("a", 200<<10),
			HostKeyCallback: (&ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
				return bytes.Equal(k.Marshal(), nb.ca.PublicKey().Marshal())
			}}).CheckHostKey,
			BannerCallback: func(msg string) error {
				banner.Write([]byte(msg))
				return nil
			},
		})
		timer.Stop()
		nc.Close()
		if err == nil {
			t.Fatal("a 200 KB OS user logged in")
		}
		if want := "bastion: web-1: OS user name is longer than 253 bytes\r\n"; banner.String() != want {
			t.Fatalf("banner: got %.200q, want %q", banner.String(), want)
		}
	}
	grew, logGrew := nb.audit.size()-audit0, nb.log.size()-log0
	t.Logf("%d jumps with 200 KB OS users: audit +%d bytes, log +%d bytes", tries, grew, logGrew)
	if grew >= maxAudit || logGrew >= maxAudit {
		t.Errorf("audit grew by %d bytes and log by %d; want each less than %d", grew, logGrew, maxAudit)
	}
}
