package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
)

// closedAddr is a loopback address nothing listens on: a test whose Dial
// hook were ignored gets "connection refused" at once, and no packet leaves
// the machine.
const closedAddr = "127.0.0.1:1"

// memPipe returns the two ends of an in-memory connection. Unlike a bare
// net.Pipe, whose writes wait for the other end to read, each direction
// holds one write in flight, so that both SSH ends can send their version
// lines at once; the ends are net.Pipe ends, with deadlines.
func memPipe() (a, b net.Conn) {
	a, aRelay := net.Pipe()
	bRelay, b := net.Pipe()
	go func() {
		io.Copy(bRelay, aRelay)
		bRelay.Close()
	}()
	go func() {
		io.Copy(aRelay, bRelay)
		aRelay.Close()
	}()
	return a, b
}

// pipeInstance runs a real x/crypto SSH server on conn that admits key and
// answers one session channel with "hello from the pipe".
func pipeInstance(t *testing.T, conn net.Conn, hostKey ssh.Signer, key ssh.PublicKey) {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if !bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return &ssh.Permissions{}, nil
		},
	}
	cfg.AddHostKey(hostKey)
	done := make(chan struct{})
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	go func() {
		defer close(done)
		defer conn.Close()
		sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
		if err != nil {
			t.Errorf("instance handshake: %v", err)
			return
		}
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			ch, chReqs, err := nc.Accept()
			if err != nil {
				return
			}
			go ssh.DiscardRequests(chReqs)
			io.WriteString(ch, "hello from the pipe")
			ch.Close()
		}
	}()
}

func TestDialHookReachesInstance(t *testing.T) {
	hostKey, userKey := testSigner(t), testSigner(t)
	theirs, ours := memPipe()
	pipeInstance(t, theirs, hostKey, userKey.PublicKey())
	dials := 0
	var checkedHost string
	creds := &upstream.Credentials{
		Addr:   closedAddr,
		User:   "ec2-user",
		Signer: userKey,
		Dial: func(ctx context.Context) (net.Conn, error) {
			dials++
			if _, ok := ctx.Deadline(); !ok {
				t.Error("the dial hook's context has no deadline")
			}
			return ours, nil
		},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			checkedHost = host
			return ssh.FixedHostKey(hostKey.PublicKey())(host, remote, key)
		},
	}
	up, err := dialUpstream(t.Context(), creds, 20*time.Second, 20*time.Second)
	if err != nil {
		t.Fatalf("dialUpstream over the hook: %v", err)
	}
	defer up.conn.Close()
	go ssh.DiscardRequests(up.reqs)
	go func() {
		for nc := range up.chans {
			nc.Reject(ssh.Prohibited, "no")
		}
	}()
	if dials != 1 {
		t.Errorf("the dial hook ran %d times, want 1", dials)
	}
	if checkedHost != closedAddr {
		t.Errorf("HostKeyCallback got host %q, want Addr %q", checkedHost, closedAddr)
	}
	if up.addr != closedAddr {
		t.Errorf("upstreamConn.addr = %q, want %q", up.addr, closedAddr)
	}
	ch, reqs, err := up.conn.OpenChannel(chanSession, nil)
	if err != nil {
		t.Fatalf("opening a session over the hook's transport: %v", err)
	}
	go ssh.DiscardRequests(reqs)
	got, err := io.ReadAll(ch)
	if err != nil || string(got) != "hello from the pipe" {
		t.Fatalf("read %q, %v; want the instance's greeting", got, err)
	}
}

func TestDialHookDeadlines(t *testing.T) {
	const dialTimeout, handshakeTimeout = 300 * time.Millisecond, 300 * time.Millisecond
	// bound is how long any case may take on a loaded machine; each must
	// end long before it would without the deadlines (never).
	const bound = 20 * time.Second
	run := func(t *testing.T, ctx context.Context, dialTimeout time.Duration, dial func(context.Context) (net.Conn, error)) error {
		t.Helper()
		creds := &upstream.Credentials{Addr: closedAddr, User: "ec2-user", Signer: testSigner(t), Dial: dial,
			HostKeyCallback: func(string, net.Addr, ssh.PublicKey) error { return errors.New("not reached") }}
		type result struct{ err error }
		done := make(chan result, 1)
		go func() {
			up, err := dialUpstream(ctx, creds, dialTimeout, handshakeTimeout)
			if up != nil {
				up.conn.Close()
			}
			done <- result{err}
		}()
		select {
		case r := <-done:
			if r.err == nil {
				t.Fatal("dialUpstream succeeded")
			}
			return r.err
		case <-time.After(bound):
			t.Fatalf("dialUpstream still running after %s", bound)
		}
		return nil
	}

	t.Run("hook honours ctx", func(t *testing.T) {
		err := run(t, t.Context(), dialTimeout, func(ctx context.Context) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		if msg := publicMessage(err); !strings.Contains(msg, "did not answer in") {
			t.Errorf("person is told %q, want the dial timeout", msg)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v is not the dial deadline", err)
		}
	})

	t.Run("hook ignores ctx", func(t *testing.T) {
		release := make(chan struct{})
		late, peer := net.Pipe()
		defer peer.Close()
		err := run(t, t.Context(), dialTimeout, func(context.Context) (net.Conn, error) {
			<-release
			return late, nil
		})
		if msg := publicMessage(err); !strings.Contains(msg, "did not answer in") {
			t.Errorf("person is told %q, want the dial timeout", msg)
		}
		// The connection the hook returns too late is closed, not
		// leaked: its peer reads EOF.
		close(release)
		peer.SetReadDeadline(time.Now().Add(bound))
		if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("peer of the late connection read %v, want EOF", err)
		}
	})

	t.Run("handshake deadline", func(t *testing.T) {
		silent, peer := net.Pipe()
		defer peer.Close()
		err := run(t, t.Context(), dialTimeout, func(context.Context) (net.Conn, error) { return silent, nil })
		if msg := publicMessage(err); !strings.Contains(msg, "did not complete the SSH handshake") {
			t.Errorf("person is told %q, want the handshake timeout", msg)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		started := make(chan struct{})
		go func() {
			<-started
			cancel()
		}()
		release := make(chan struct{})
		defer close(release)
		// A dial timeout the cancel comes long before.
		err := run(t, ctx, time.Hour, func(context.Context) (net.Conn, error) {
			close(started)
			<-release // ignores ctx; cut by the cancel
			return nil, errors.New("released")
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want cancelled", err)
		}
		if msg := publicMessage(err); msg != "connection cancelled" {
			t.Errorf("person is told %q, want the cancel", msg)
		}
	})
}
