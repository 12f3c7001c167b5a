package testkit

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeTB records how a helper ended a test: Fatal and Skip end the calling
// goroutine as the real ones do, so the helper's next line never runs.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Skip(args ...any) { f.SkipNow() }

func (f *fakeTB) Skipf(string, ...any) { f.SkipNow() }

func (f *fakeTB) SkipNow() {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn with a fakeTB on its own goroutine and returns the record.
func run(t *testing.T, fn func(tb testing.TB)) (fatal string, skipped bool) {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal, f.skipped
}

func TestWaitForTimesOutNamingTheCondition(t *testing.T) {
	fatal, _ := run(t, func(tb testing.TB) {
		WaitFor(tb, "the moon to turn blue", 50*time.Millisecond, func() bool { return false })
	})
	if !strings.Contains(fatal, "waiting for the moon to turn blue") {
		t.Fatalf("WaitFor failed with %q, want the condition's name", fatal)
	}
	fatal, _ = run(t, func(tb testing.TB) {
		WaitFor(tb, "true", time.Second, func() bool { return true })
	})
	if fatal != "" {
		t.Fatalf("WaitFor on a holding condition failed: %q", fatal)
	}
}

func TestSyncBufferConcurrentWritesAndAwait(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				fmt.Fprintf(&b, "w%d.%d\n", i, j)
				_ = b.Len()
				_ = b.String()
			}
		}(i)
	}
	go func() {
		wg.Wait()
		b.Write([]byte("all done\n"))
	}()
	next := b.WaitFor(t, 0, "all done", 20*time.Second)
	if next != b.Len()-1 {
		t.Fatalf("WaitFor returned offset %d, want %d (just past the match)", next, b.Len()-1)
	}
	if got := strings.Count(b.String(), "\n"); got != 801 {
		t.Fatalf("buffer holds %d lines, want 801", got)
	}
}

func TestMissingToolFailsNotSkips(t *testing.T) {
	fatal, skipped := run(t, func(tb testing.TB) { Tool(tb, "testkit-no-such-tool") })
	if skipped || !strings.Contains(fatal, "testkit-no-such-tool not found") {
		t.Fatalf("Tool of a missing tool: skipped=%v, failure %q; want a failure naming it", skipped, fatal)
	}
}

func TestStartSSHDAnswersHandshake(t *testing.T) {
	client := NewKey(t, t.TempDir(), "id_ed25519")
	s := StartSSHD(t, SSHDConfig{AuthorizedKeys: []string{client.AuthorizedKey()}})
	if s.Addr != net.JoinHostPort("127.0.0.1", fmt.Sprint(s.Port)) {
		t.Fatalf("sshd address %q does not match port %d", s.Addr, s.Port)
	}
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(client.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey.Signer.PublicKey()),
		Timeout:         30 * time.Second,
	}
	c, err := ssh.Dial("tcp", s.Addr, cfg)
	if err != nil {
		t.Fatalf("handshake with the launched sshd: %v", err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("echo testkit-ok")
	if err != nil || strings.TrimSpace(string(out)) != "testkit-ok" {
		t.Fatalf("exec through sshd: %q, %v", out, err)
	}
}
