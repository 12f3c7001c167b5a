package proxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"
)

// allowGuard lets everything through except the channel types in deny.
type allowGuard struct{ deny map[string]bool }

func (g allowGuard) allowChannel(_ direction, typ string, _ []byte) (bool, string) {
	if g.deny[typ] {
		return false, "denied " + typ
	}
	return true, ""
}
func (g allowGuard) allowRequest(direction, string, *ssh.Request) (bool, string)    { return true, "" }
func (g allowGuard) observe(direction, string, []byte, ssh.Channel) channelObserver { return nil }
func (g allowGuard) allowGlobal(dir direction, req *ssh.Request) bool {
	return dir == fromPerson || req.Type != reqHostkeys
}

func testSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// connPair returns an SSH server and client connected over loopback TCP.
func connPair(t testing.TB) (server peer, client peer) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(testSigner(t))
	type res struct {
		p   peer
		err error
	}
	sres := make(chan res, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			sres <- res{err: err}
			return
		}
		c, chans, reqs, err := ssh.NewServerConn(nc, scfg)
		if err != nil {
			sres <- res{err: err}
			return
		}
		sres <- res{p: peer{conn: c, chans: chans, reqs: reqs}}
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, "test", &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	s := <-sres
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.p, peer{conn: c, chans: chans, reqs: reqs}
}

// instance serves sessions the way sshd does for the commands the tests
// use, on the upstream end of the splice.
func instance(t *testing.T, p peer, globals func(*ssh.Request)) {
	go func() {
		for req := range p.reqs {
			if globals != nil {
				globals(req)
			} else if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}()
	go func() {
		for nc := range p.chans {
			if nc.ChannelType() != chanSession {
				nc.Reject(ssh.UnknownChannelType, "no")
				continue
			}
			ch, reqs, err := nc.Accept()
			if err != nil {
				return
			}
			go func() {
				defer ch.Close()
				for req := range reqs {
					if req.Type != reqExec {
						req.Reply(false, nil)
						continue
					}
					req.Reply(true, nil)
					var cmd struct{ Command string }
					ssh.Unmarshal(req.Payload, &cmd)
					runCommand(ch, cmd.Command)
					return
				}
			}()
		}
	}()
}

// runCommand acts out one command on ch: output, EOF, exit status, close,
// sent back to back so the splice must keep their order.
func runCommand(ch ssh.Channel, cmd string) {
	switch cmd {
	case "out-err-exit3":
		io.WriteString(ch, "out")
		io.WriteString(ch.Stderr(), "err")
		ch.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{3}))
		ch.CloseWrite()
	case "bulk-then-exit":
		// Exit status before EOF, right after lots of data: the person
		// must still get every byte before the status.
		buf := bytes.Repeat([]byte("x"), 1<<20)
		ch.Write(buf)
		ch.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{0}))
		ch.CloseWrite()
	case "echo":
		io.Copy(ch, ch)
		ch.CloseWrite()
		ch.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{0}))
	case "quick":
		ch.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{0}))
	case "signal":
		ch.SendRequest(reqExitSignal, false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{"TERM", false, "", ""}))
	}
}

// linked starts a splice between a person's client and an instance and
// returns the person's client connection and the instance's server
// connection. The splice's end is waited for at cleanup.
func linked(t *testing.T, g guard, globals func(*ssh.Request)) (peer, ssh.Conn) {
	personSrv, personCli := connPair(t)
	upSrv, upCli := connPair(t)
	instance(t, upSrv, globals)
	done := make(chan struct{})
	go func() {
		splice(t.Context(), personSrv, upCli, g, zaptest.NewLogger(t))
		close(done)
	}()
	t.Cleanup(func() {
		personCli.conn.Close()
		<-done
	})
	return personCli, upSrv.conn
}

func newClient(p peer) *ssh.Client { return ssh.NewClient(p.conn, p.chans, p.reqs) }

// TestSpliceReplyBeforeClose runs commands that end as soon as they are
// answered: the instance's reply to exec, its exit status and its close
// come back to back, and the person must get the reply before the close
// (else their client fails the exec with EOF).
func TestSpliceReplyBeforeClose(t *testing.T) {
	person, _ := linked(t, allowGuard{}, nil)
	client := newClient(person)
	for i := range 300 {
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run("quick"); err != nil {
			t.Fatalf("run %d: got %v, want exit 0", i, err)
		}
	}
}

func TestSpliceExec(t *testing.T) {
	person, _ := linked(t, allowGuard{}, nil)
	client := newClient(person)
	tests := []struct {
		cmd        string
		wantOut    string
		wantErr    string
		wantStatus int
		wantSignal string
	}{
		{cmd: "out-err-exit3", wantOut: "out", wantErr: "err", wantStatus: 3},
		{cmd: "bulk-then-exit", wantOut: strings.Repeat("x", 1<<20)},
		{cmd: "signal", wantSignal: "TERM", wantStatus: -1},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			s, err := client.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			s.Stdout, s.Stderr = &out, &errb
			err = s.Run(tc.cmd)
			status, signal := 0, ""
			var ee *ssh.ExitError
			if errors.As(err, &ee) {
				status, signal = ee.ExitStatus(), ee.Signal()
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if signal != "" {
				status = -1
			}
			if out.String() != tc.wantOut {
				t.Errorf("stdout: got %d bytes, want %d", out.Len(), len(tc.wantOut))
			}
			if errb.String() != tc.wantErr {
				t.Errorf("stderr: got %q, want %q", errb.String(), tc.wantErr)
			}
			if status != tc.wantStatus || signal != tc.wantSignal {
				t.Errorf("exit: got status %d signal %q, want %d %q", status, signal, tc.wantStatus, tc.wantSignal)
			}
		})
	}
}

func TestSpliceEcho(t *testing.T) {
	person, _ := linked(t, allowGuard{}, nil)
	client := newClient(person)
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	s.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Run("echo"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Errorf("echo: got %d bytes back, want the %d sent", out.Len(), len(in))
	}
}

func TestSpliceChannelPolicy(t *testing.T) {
	person, _ := linked(t, allowGuard{deny: map[string]bool{chanDirectTCPIP: true}}, nil)
	client := newClient(person)
	_, err := client.Dial("tcp", "127.0.0.1:1")
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != ssh.Prohibited || oce.Message != "denied direct-tcpip" {
		t.Fatalf("denied channel: got %v, want Prohibited with the guard's message", err)
	}
	// Allowed but refused upstream: the instance's reason comes through.
	_, _, err = client.OpenChannel("x-custom", nil)
	if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType {
		t.Fatalf("upstream refusal: got %v, want UnknownChannelType", err)
	}
}

func TestSpliceGlobalRequests(t *testing.T) {
	person, upstream := linked(t, allowGuard{}, func(req *ssh.Request) {
		if req.Type == reqTCPIPForward {
			req.Reply(true, ssh.Marshal(struct{ Port uint32 }{4242}))
			return
		}
		req.Reply(false, nil)
	})
	ok, payload, err := person.conn.SendRequest(reqTCPIPForward, true, ssh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 0}))
	var port struct{ Port uint32 }
	if err != nil || !ok || ssh.Unmarshal(payload, &port) != nil || port.Port != 4242 {
		t.Fatalf("tcpip-forward: got ok=%v payload=%x err=%v, want the upstream's port 4242", ok, payload, err)
	}
	// hostkeys-00 from the instance must not reach the person; a later
	// keepalive must, which proves ordering without sleeping.
	got := make(chan string, 2)
	go func() {
		for req := range person.reqs {
			got <- req.Type
			if req.WantReply {
				req.Reply(true, nil)
			}
		}
	}()
	upstream.SendRequest(reqHostkeys, false, nil)
	upstream.SendRequest(reqKeepalive, true, nil)
	select {
	case typ := <-got:
		if typ != reqKeepalive {
			t.Errorf("person received %q, want only keepalive@openssh.com", typ)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("keepalive from upstream never reached the person")
	}
}

func TestSpliceClosesBothAndLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			personSrv, personCli := connPair(t)
			upSrv, upCli := connPair(t)
			instance(t, upSrv, nil)
			done := make(chan struct{})
			go func() {
				splice(t.Context(), personSrv, upCli, allowGuard{}, zaptest.NewLogger(t))
				close(done)
			}()
			client := newClient(personCli)
			s, err := client.NewSession()
			if err == nil {
				s.Run("out-err-exit3")
			}
			client.Close()
			<-done
			// The upstream connection must be closed by the splice.
			upSrv.conn.Wait()
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: got %d, want about %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkSpliceDown measures bytes from the instance to the person
// through the splice (two SSH legs, in memory over loopback TCP).
func BenchmarkSpliceDown(b *testing.B) {
	personSrv, personCli := connPair(b)
	upSrv, upCli := connPair(b)
	go execInstance(upSrv.chans, func(ch ssh.Channel) {
		buf := make([]byte, 32*1024)
		for range 1 << 20 {
			if _, err := ch.Write(buf); err != nil {
				break
			}
		}
		ch.Close()
	})
	go ssh.DiscardRequests(upSrv.reqs)
	done := spliceInBackground(personSrv, upCli)
	client := ssh.NewClient(personCli.conn, personCli.chans, personCli.reqs)
	s, err := client.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start("bulk"); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32*1024)
	b.SetBytes(32 * 1024)
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		if _, err := io.ReadFull(out, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// CPU per GiB of the whole process (both SSH legs, the splice, and
	// the person's and instance's ends), which machine load does not
	// inflate the way it does wall time.
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/(float64(b.N)*32*1024)*(1<<30), "cpu-s/GiB")
	client.Close()
	<-done
}

// execInstance plays the instance of the splice benchmarks: it accepts
// every session channel, agrees to every request, and hands the channel of
// each exec to run, on a goroutine of its own.
func execInstance(chans <-chan ssh.NewChannel, run func(ssh.Channel)) {
	for nc := range chans {
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			for req := range reqs {
				req.Reply(true, nil)
				if req.Type == reqExec {
					go run(ch)
				}
			}
		}()
	}
}

// spliceInBackground splices the person's connection to the upstream one
// on a goroutine and returns a channel closed when the splice is over.
func spliceInBackground(person, upstream peer) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		splice(context.Background(), person, upstream, allowGuard{}, zap.NewNop())
		close(done)
	}()
	return done
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSpliceUp measures bytes from the person to the instance through
// the splice, as BenchmarkSpliceDown does the other way.
func BenchmarkSpliceUp(b *testing.B) {
	personSrv, personCli := connPair(b)
	upSrv, upCli := connPair(b)
	got := make(chan int64, 1)
	go execInstance(upSrv.chans, func(ch ssh.Channel) {
		n, _ := io.Copy(io.Discard, ch)
		got <- n
		ch.Close()
	})
	go ssh.DiscardRequests(upSrv.reqs)
	done := spliceInBackground(personSrv, upCli)
	client := ssh.NewClient(personCli.conn, personCli.chans, personCli.reqs)
	s, err := client.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	in, _ := s.StdinPipe()
	if err := s.Start("sink"); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32*1024)
	b.SetBytes(32 * 1024)
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		if _, err := in.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	in.Close()
	if n := <-got; n != int64(b.N)*32*1024 {
		b.Fatalf("instance got %d bytes, want %d", n, int64(b.N)*32*1024)
	}
	b.StopTimer()
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/(float64(b.N)*32*1024)*(1<<30), "cpu-s/GiB")
	client.Close()
	<-done
}
