package proxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// startPeers serves s's peer listener on loopback until the test ends.
func startPeers(t *testing.T, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServePeers(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServePeers: %v", err)
		}
	})
	return l.Addr().String()
}

func peerClient(addr, user string, key, serverKey ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(serverKey.PublicKey()), Timeout: 10 * time.Second})
}

// TestHostilePeerListener: the peer listener admits only the holder of the
// host key as the peer user; the holder may open watch channels only, and
// a watch of a link the replica does not hold is refused like any other;
// a replica dialing a listener that presents another host key refuses it.
func TestHostilePeerListener(t *testing.T) {
	hostKey := newTestSigner(t)
	s := &Server{HostKey: hostKey}
	addr := startPeers(t, s)

	stranger := newTestSigner(t)
	if c, err := peerClient(addr, peerUser, stranger, hostKey); err == nil {
		c.Close()
		t.Fatal("a stranger's key logged in to the peer listener")
	}
	if c, err := peerClient(addr, "root", hostKey, hostKey); err == nil {
		c.Close()
		t.Fatal("the host key logged in as another user than the peer user")
	}

	pc, err := s.dialPeer(t.Context(), addr)
	if err != nil {
		t.Fatalf("a replica holding the host key: %v", err)
	}
	defer pc.Close()
	if _, _, err := pc.OpenChannel("session", nil); err == nil {
		t.Error("the peer listener opened a session channel")
	}
	if _, _, err := pc.OpenChannel("direct-tcpip", nil); err == nil {
		t.Error("the peer listener opened a direct-tcpip channel")
	}
	for name, extra := range map[string][]byte{
		"unknown link":  ssh.Marshal(&peerWatch{ID: "r1-0011223344556677", By: "bob", Replica: "c"}),
		"overlong id":   ssh.Marshal(&peerWatch{ID: strings.Repeat("x", 100000), By: "bob"}),
		"garbage":       []byte("\xff\xff\xff\xff"),
		"empty request": nil,
	} {
		_, _, err := pc.OpenChannel(peerWatchChannel, extra)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) {
			t.Errorf("%s: opened (%v)", name, err)
		}
	}

	// A listener with another host key is no replica of this bastion.
	other := &Server{HostKey: newTestSigner(t)}
	otherAddr := startPeers(t, other)
	if c, err := s.dialPeer(t.Context(), otherAddr); err == nil {
		c.Close()
		t.Fatal("dialPeer accepted a listener presenting another host key")
	}
}

// TestHostilePeerSlots: connections that never finish their handshake hold
// at most maxPeerConns slots, each for at most peerHandshakeTimeout; past
// the bound, new ones are closed at once, and the replica can still be
// reached once the holders are gone.
func TestHostilePeerSlots(t *testing.T) {
	hostKey := newTestSigner(t)
	s := &Server{HostKey: hostKey}
	addr := startPeers(t, s)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range maxPeerConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// One more: closed by the server without a banner.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(peerHandshakeTimeout / 2))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	c.Close()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || n > 0 {
		t.Fatalf("connection %d past the bound: read %q, %v; want closed at once", maxPeerConns+1, buf[:n], err)
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil
	waitUntil(t, "a replica to get in once the slots are free", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		pc, err := s.dialPeer(ctx, addr)
		if err != nil {
			return false
		}
		pc.Close()
		return true
	})
}
