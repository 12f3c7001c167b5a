package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// lightServer is a minimal SSH server standing in for many instances at
// once: it admits the keys it is given, accepts "session" channels, says
// yes to pty-req, env, window-change and shell and then idles (input is
// discarded), and answers exec with exit status 0. It runs no processes,
// so that thousands of idle sessions cost the upstream side almost
// nothing and what is measured is the jump host.
type lightServer struct {
	ln      net.Listener
	cfg     *ssh.ServerConfig
	HostKey ssh.PublicKey

	// Shells counts the shell sessions open now.
	Shells atomic.Int64

	wg     sync.WaitGroup
	mu     sync.Mutex // protects conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// startLight listens on 127.0.0.1 and serves logins by any user with one
// of keys.
func startLight(hostKey ssh.Signer, keys ...ssh.PublicKey) (*lightServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &lightServer{ln: ln, HostKey: hostKey.PublicKey(), conns: make(map[net.Conn]struct{})}
	s.cfg = &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-bench_light",
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range keys {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, errors.New("key not authorized")
		},
	}
	s.cfg.AddHostKey(hostKey)
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *lightServer) Addr() string { return s.ln.Addr().String() }

func (s *lightServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *lightServer) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions here")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Go(func() { s.serveSession(ch, creqs) })
	}
	sc.Close()
	wg.Wait()
}

// serveSession answers a session's requests until the client closes it.
func (s *lightServer) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	shell := false
	defer func() {
		if shell {
			s.Shells.Add(-1)
		}
	}()
	for req := range reqs {
		switch req.Type {
		case "pty-req", "env", "window-change":
			req.Reply(true, nil)
		case "shell":
			if shell {
				req.Reply(false, nil)
				continue
			}
			// Counted before the reply, so that a client whose Shell()
			// has returned is already counted.
			shell = true
			s.Shells.Add(1)
			req.Reply(true, nil)
			wg.Go(func() { io.Copy(io.Discard, ch) })
		case "exec":
			req.Reply(true, nil)
			// RFC 4254 §6.10: exit-status, then EOF and close.
			var status [4]byte
			binary.BigEndian.PutUint32(status[:], 0)
			ch.SendRequest("exit-status", false, status[:])
			ch.CloseWrite()
			ch.Close()
		default:
			req.Reply(false, nil)
		}
	}
}

// Close stops listening, closes every connection and waits for their
// goroutines.
func (s *lightServer) Close() error {
	s.mu.Lock()
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
