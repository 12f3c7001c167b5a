package proxy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/auth"
	"bastion/config"
)

// addrConn is a net.Conn with addresses only.
type addrConn struct{ net.Conn }

func (addrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }

func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// userCert returns a user certificate for key with principal user, signed
// by ca.
func userCert(t *testing.T, ca ssh.Signer, key ssh.PublicKey, user string) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{Key: key, CertType: ssh.UserCert, KeyId: user + "-cert", ValidPrincipals: []string{user},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestOwnKey checks which keys the inner server admits for publickey: the
// person's own (any of their configured keys, a certificate for them, the
// key of the certificate they logged in with), never another user's.
func TestOwnKey(t *testing.T) {
	alice1, alice2, bob, stranger, certKey, ca := testSigner(t), testSigner(t), testSigner(t), testSigner(t), testSigner(t), testSigner(t)
	yml := fmt.Sprintf(`host_key: /nonexistent/host
host_ca_key: /nonexistent/ca
users:
  - {name: alice, keys: [%q, %q], groups: [dev]}
  - {name: bob, keys: [%q], groups: [dev]}
trusted_user_ca_keys: [%q]
`, authorizedLine(alice1.PublicKey()), authorizedLine(alice2.PublicKey()), authorizedLine(bob.PublicKey()), authorizedLine(ca.PublicKey()))
	cfg, err := config.Parse([]byte(yml), "")
	if err != nil {
		t.Fatal(err)
	}
	a := auth.NewAuthenticator(cfg)
	srv := &Server{}
	srv.SetRules(&Rules{Auth: a, Policy: auth.NewPolicy(cfg)})
	login := func(key ssh.PublicKey) auth.Identity {
		id, err := a.Authenticate(key, addrConn{}.RemoteAddr())
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	aliceByKey := login(alice1.PublicKey())
	aliceByCert := login(userCert(t, ca, certKey.PublicKey(), "alice"))
	for _, tc := range []struct {
		name    string
		outer   auth.Identity
		inner   ssh.PublicKey
		wantErr error // nil: admitted
	}{
		{"same key", aliceByKey, alice1.PublicKey(), nil},
		{"another of her keys", aliceByKey, alice2.PublicKey(), nil},
		{"a certificate for her", aliceByKey, userCert(t, ca, stranger.PublicKey(), "alice"), nil},
		{"bob's key", aliceByKey, bob.PublicKey(), errNotOwnKey},
		{"a certificate for bob", aliceByKey, userCert(t, ca, stranger.PublicKey(), "bob"), errNotOwnKey},
		{"unknown key", aliceByKey, stranger.PublicKey(), auth.ErrUnknownKey},
		{"her certificate's key", aliceByCert, certKey.PublicKey(), nil},
		{"her certificate again", aliceByCert, userCert(t, ca, certKey.PublicKey(), "alice"), nil},
		{"bob's key after a certificate", aliceByCert, bob.PublicKey(), errNotOwnKey},
		{"another key after a certificate", aliceByCert, stranger.PublicKey(), auth.ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &conn{srv: srv, nc: addrConn{}, identity: tc.outer}
			err := c.ownKey(tc.inner)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("ownKey: got %v, want %v", err, tc.wantErr)
			}
		})
	}
}
