package siminstance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh/agent"
)

func TestRemoteForward(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)

	l, err := client.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcpip-forward: %v", err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dialing the forward on the instance: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Errorf("echo through -R: got %q, %v; want ping", got, err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("cancel-tcpip-forward: %v", err)
	}
}

func TestAgentForwarding(t *testing.T) {
	user := newSigner(t)
	inst := startInstance(t, admitKeys(user))
	client := mustDial(t, inst, "ec2-user", user)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: mustRawKey(t)}); err != nil {
		t.Fatal(err)
	}
	if err := agent.ForwardToAgent(client, keyring); err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := agent.RequestAgentForwarding(s); err != nil {
		t.Fatalf("auth-agent-req: %v", err)
	}
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Run(`test -S "$SSH_AUTH_SOCK" && echo has-agent`); err != nil || !strings.Contains(out.String(), "has-agent") {
		t.Errorf("SSH_AUTH_SOCK in the session: got %q, %v", out.String(), err)
	}
}

func TestUsers(t *testing.T) {
	user := newSigner(t)
	inst, err := Start(Options{Authorize: admitKeys(user), Users: []string{"ec2-user"}, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	if c, err := dial(inst, "ec2-user", user); err != nil {
		t.Errorf("ec2-user: %v, want admitted", err)
	} else {
		c.Close()
	}
	if c, err := dial(inst, "nosuchuser", user); err == nil {
		c.Close()
		t.Errorf("nosuchuser: admitted, want refused")
	}
}

func TestListenerOption(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	user := newSigner(t)
	inst, err := Start(Options{Listener: l, Authorize: admitKeys(user)})
	if err != nil {
		t.Fatal(err)
	}
	if inst.Addr() != l.Addr().String() {
		t.Errorf("Addr: got %s, want %s", inst.Addr(), l.Addr())
	}
	inst.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("after Close the handed listener: got %v, want closed", err)
	}
}

// mustRawKey returns a fresh ed25519 private key for the agent.
func mustRawKey(t *testing.T) any {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}
