package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/auth"
	"bastion/config"
	"bastion/upstream"
)

// skSigner signs as a FIDO security key (sk-ssh-ed25519@openssh.com,
// OpenSSH PROTOCOL.u2f) would, with the flags it is given: 0x01 is "user
// present", a touch.
type skSigner struct {
	priv  ed25519.PrivateKey
	pub   ssh.PublicKey
	flags byte
}

func newSKSigner(t *testing.T, flags byte) skSigner {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.ParsePublicKey(ssh.Marshal(struct {
		Name, Key, App string
	}{ssh.KeyAlgoSKED25519, string(pub), "ssh:"}))
	if err != nil {
		t.Fatal(err)
	}
	return skSigner{priv: priv, pub: pk, flags: flags}
}

func (s skSigner) PublicKey() ssh.PublicKey { return s.pub }

func (s skSigner) Sign(_ io.Reader, data []byte) (*ssh.Signature, error) {
	app, msg := sha256.Sum256([]byte("ssh:")), sha256.Sum256(data)
	counter := []byte{0, 0, 0, 1}
	signed := append(append(append(app[:], s.flags), counter...), msg[:]...)
	return &ssh.Signature{Format: ssh.KeyAlgoSKED25519, Blob: ed25519.Sign(s.priv, signed), Rest: append([]byte{s.flags}, counter...)}, nil
}

// TestSecurityKeyTouch logs in to an in-process server with security-key
// signatures with and without the user-presence flag: without it, only a
// key whose line says no-touch-required is accepted, as sshd does.
func TestSecurityKeyTouch(t *testing.T) {
	touchKey, untouched := newSKSigner(t, 0x01), newSKSigner(t, 0x00)
	lenient := newSKSigner(t, 0x00)
	line := func(opts string, s skSigner) string {
		return strings.TrimSpace(opts + " " + string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf("host_key: hk\nhost_ca_key: hca\nusers:\n  - {name: alice, keys: [%q, %q]}\n  - {name: bob, keys: [%q]}\n",
		line("", touchKey), line("", untouched), line("no-touch-required", lenient))), "")
	if err != nil {
		t.Fatal(err)
	}
	hostKey, hostCA := newTestSigner(t), newTestSigner(t)
	srv := &Server{HostKey: hostKey, HostCA: hostCA, Resolver: &upstream.Resolver{}, Audit: audit.NewLogger(io.Discard)}
	srv.SetRules(&Rules{Auth: auth.NewAuthenticator(cfg), Policy: auth.NewPolicy(cfg)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	for _, tc := range []struct {
		name   string
		user   string
		signer ssh.Signer
		ok     bool
	}{
		{"touched", "alice", touchKey, true},
		{"not touched", "alice", untouched, false},
		{"not touched, no-touch-required", "bob", lenient, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{
				User: tc.user, Auth: []ssh.AuthMethod{ssh.PublicKeys(tc.signer)},
				HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey()), Timeout: 20 * time.Second,
			})
			if c != nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("got %v, want login=%v", err, tc.ok)
			}
		})
	}
}

func newTestSigner(t *testing.T) ssh.Signer {
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
