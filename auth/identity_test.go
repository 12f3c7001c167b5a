package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/config"
)

func newSigner(t *testing.T) ssh.Signer {
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

func TestAuthenticate(t *testing.T) {
	aliceKey, ca, otherCA, stranger := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	cfg := &config.Config{
		Users: []config.User{
			{Name: "alice", Groups: []string{"dev"}, PublicKeys: []ssh.PublicKey{aliceKey.PublicKey()}},
			{Name: "bob", Groups: []string{"ops"}},
		},
		TrustedUserCAs: []ssh.PublicKey{ca.PublicKey()},
	}
	a := NewAuthenticator(cfg)
	from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
	now := time.Now()
	cert := func(signer ssh.Signer, principals []string, after, before time.Time, opts map[string]string) ssh.PublicKey {
		c := &ssh.Certificate{
			Key: stranger.PublicKey(), CertType: ssh.UserCert, KeyId: "laptop", Serial: 7,
			ValidPrincipals: principals, ValidAfter: uint64(after.Unix()), ValidBefore: uint64(before.Unix()),
			Permissions: ssh.Permissions{CriticalOptions: opts},
		}
		if err := c.SignCert(rand.Reader, signer); err != nil {
			t.Fatal(err)
		}
		return c
	}
	hour := time.Hour
	revokedKey, revokedCA := newSigner(t), newSigner(t)
	cfg.Users = append(cfg.Users, config.User{Name: "carol", PublicKeys: []ssh.PublicKey{revokedKey.PublicKey()}})
	cfg.TrustedUserCAs = append(cfg.TrustedUserCAs, revokedCA.PublicKey())
	cfg.RevokedFingerprints = []string{ssh.FingerprintSHA256(revokedKey.PublicKey()), ssh.FingerprintSHA256(revokedCA.PublicKey())}
	a = NewAuthenticator(cfg)
	tests := []struct {
		name     string
		key      ssh.PublicKey
		wantUser string
		wantErr  error
		wantCmd  string
	}{
		{name: "revoked key", key: revokedKey.PublicKey(), wantErr: ErrRevoked},
		{name: "cert from revoked ca", key: cert(revokedCA, []string{"bob"}, now.Add(-hour), now.Add(hour), nil), wantErr: ErrRevoked},
		{name: "force-command", key: cert(ca, []string{"bob"}, now.Add(-hour), now.Add(hour), map[string]string{"force-command": "uptime"}), wantUser: "bob", wantCmd: "uptime"},
		{name: "configured key", key: aliceKey.PublicKey(), wantUser: "alice"},
		{name: "unknown key", key: stranger.PublicKey(), wantErr: ErrUnknownKey},
		{name: "valid cert", key: cert(ca, []string{"bob"}, now.Add(-hour), now.Add(hour), nil), wantUser: "bob"},
		{name: "expired cert", key: cert(ca, []string{"bob"}, now.Add(-2*hour), now.Add(-hour), nil), wantErr: ErrBadCertificate},
		{name: "wrong principal", key: cert(ca, []string{"mallory"}, now.Add(-hour), now.Add(hour), nil), wantErr: ErrUnknownKey},
		{name: "wrong ca", key: cert(otherCA, []string{"bob"}, now.Add(-hour), now.Add(hour), nil), wantErr: ErrBadCertificate},
		{name: "source-address ok", key: cert(ca, []string{"bob"}, now.Add(-hour), now.Add(hour), map[string]string{"source-address": "127.0.0.0/8"}), wantUser: "bob"},
		{name: "source-address elsewhere", key: cert(ca, []string{"bob"}, now.Add(-hour), now.Add(hour), map[string]string{"source-address": "10.0.0.0/8"}), wantErr: ErrBadCertificate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(tc.key, from)
			if tc.wantUser == "" {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got identity %+v, error %v; want %v", id, err, tc.wantErr)
				}
				return
			}
			if id.Restrictions.ForceCommand != tc.wantCmd {
				t.Errorf("Restrictions.ForceCommand: got %q, want %q", id.Restrictions.ForceCommand, tc.wantCmd)
			}
			if err != nil {
				t.Fatalf("got %v, want %s", err, tc.wantUser)
			}
			if id.User != tc.wantUser {
				t.Errorf("got user %q, want %q", id.User, tc.wantUser)
			}
		})
	}
	if _, err := a.Authenticate(stranger.PublicKey(), from); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key: got %v, want ErrUnknownKey", err)
	}
}

func TestAdmits(t *testing.T) {
	alice, bob, ca := newSigner(t), newSigner(t), newSigner(t)
	fp := func(s ssh.Signer) string { return ssh.FingerprintSHA256(s.PublicKey()) }
	before := &config.Config{
		Users: []config.User{
			{Name: "alice", PublicKeys: []ssh.PublicKey{alice.PublicKey()}},
			{Name: "bob", PublicKeys: []ssh.PublicKey{bob.PublicKey()}},
			{Name: "carol"},
		},
		TrustedUserCAs: []ssh.PublicKey{ca.PublicKey()},
	}
	after := &config.Config{
		Users:               []config.User{{Name: "alice", PublicKeys: []ssh.PublicKey{alice.PublicKey()}}, {Name: "carol"}},
		RevokedFingerprints: []string{fp(ca)},
	}
	tests := []struct {
		name       string
		id         Identity
		before     bool
		afterwards bool
	}{
		{"kept user", Identity{User: "alice", KeyFingerprint: fp(alice)}, true, true},
		{"removed user", Identity{User: "bob", KeyFingerprint: fp(bob)}, true, false},
		{"key of another user", Identity{User: "alice", KeyFingerprint: fp(bob)}, false, false},
		{"certificate from a revoked ca", Identity{User: "carol", KeyFingerprint: fp(bob), CAFingerprint: fp(ca)}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewAuthenticator(before).Admits(tc.id); got != tc.before {
				t.Errorf("before: got %v, want %v", got, tc.before)
			}
			if got := NewAuthenticator(after).Admits(tc.id); got != tc.afterwards {
				t.Errorf("after: got %v, want %v", got, tc.afterwards)
			}
		})
	}
}
