package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// countingAgent is an in-memory agent that counts signatures, standing in
// for a hardware key that needs a touch per signature.
type countingAgent struct {
	agent.Agent
	signs atomic.Int32
}

func (a *countingAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	a.signs.Add(1)
	return a.Agent.Sign(key, data)
}

func (a *countingAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	a.signs.Add(1)
	return a.Agent.(agent.ExtendedAgent).SignWithFlags(key, data, flags)
}

func (a *countingAgent) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}

// serveAgent serves ag on a unix socket until the test ends.
func serveAgent(t *testing.T, ag agent.Agent) string {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(ag, c)
			}()
		}
	}()
	return sock
}

// testNoSecondSignature checks that a ProxyJump through the bastion costs
// one signature (one touch of a FIDO key): the inner login is bound to the
// outer connection and needs none.
func testNoSecondSignature(t *testing.T, f *core) {
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: mustRawKey(t, f.alice.Key.Private)}); err != nil {
		t.Fatal(err)
	}
	ag := &countingAgent{Agent: keyring}
	sock := serveAgent(t, ag)
	c := newClient(t, f.bastion, "alice", f.alice.Key, "  IdentityAgent "+sock)
	// Use the agent, not the file: point IdentityFile at the public half.
	cfg, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, c.ConfigPath, strings.Replace(string(cfg), "IdentityFile "+f.alice.Key.Private, "IdentityFile "+f.alice.Key.Public, 1), 0o644)

	r := c.ssh(t, nil, append(dest("jump", f.me, "web-1"), "echo inside")...)
	if r.Code != 0 || r.Stdout != "inside\n" {
		t.Fatalf("got exit %d stdout %q stderr %q, want inside", r.Code, r.Stdout, r.Stderr)
	}
	if got := ag.signs.Load(); got != 1 {
		t.Errorf("signatures for one ProxyJump session: got %d, want 1", got)
	}
}

func mustRawKey(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
