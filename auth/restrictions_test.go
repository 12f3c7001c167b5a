package auth

import (
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/config"
)

func TestRestrictionsAllow(t *testing.T) {
	r := Restrictions{By: "your key entry", NoPTY: true, NoX11Forwarding: true,
		PermitOpen: []string{"db:5432", "*:80", "web:*"}, PermitListen: []string{"*:8080", "127.0.0.?:*"}}
	tests := []struct {
		capability, dest string
		listen           bool
		want             string // "" for allowed
	}{
		{CapPTY, "", false, "your key entry does not permit a pty"},
		{config.CapX11, "", false, "your key entry does not permit X11 forwarding"},
		{config.CapAgentForwarding, "", false, ""},
		{config.CapShell, "", false, ""},
		{config.CapPortForwarding, "db:5432", false, ""},
		{config.CapPortForwarding, "db:5433", false, "your key entry does not permit port forwarding to db:5433"},
		{config.CapPortForwarding, "anything:80", false, ""},
		{config.CapPortForwarding, "web:1", false, ""},
		{config.CapPortForwarding, "DB:5432", false, "your key entry does not permit port forwarding to DB:5432"},
		{config.CapPortForwarding, "/tmp/sock", false, "your key entry does not permit port forwarding to /tmp/sock"},
		{config.CapPortForwarding, "localhost:8080", true, ""},
		{config.CapPortForwarding, ":8080", true, ""},
		{config.CapPortForwarding, "127.0.0.1:22", true, ""},
		{config.CapPortForwarding, "0.0.0.0:9", true, "your key entry does not permit port forwarding to 0.0.0.0:9"},
		// Already-checked forwards' channels carry no destination.
		{config.CapPortForwarding, "", false, ""},
	}
	for _, tc := range tests {
		d := r.Allow(tc.capability, tc.dest, tc.listen)
		if d.Allow != (tc.want == "") || d.Reason != tc.want {
			t.Errorf("Allow(%s, %q, %v): got %+v, want %q", tc.capability, tc.dest, tc.listen, d, tc.want)
		}
	}
	if d := (Restrictions{By: "your certificate", NoPortForwarding: true}).Allow(config.CapPortForwarding, "", false); d.Allow {
		t.Error("no-port-forwarding: got allowed")
	}
}

func TestCheckFrom(t *testing.T) {
	addr := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 1} }
	tests := []struct {
		patterns []string
		remote   string
		ok       bool
	}{
		{[]string{"10.0.0.0/8"}, "127.0.0.1", false},
		{[]string{"10.0.0.0/8"}, "10.2.3.4", true},
		{[]string{"10.0.0.0/8", "!10.1.0.0/16"}, "10.1.2.3", false},
		{[]string{"!10.1.*", "10.*"}, "10.1.2.3", false},
		{[]string{"127.0.0.?"}, "127.0.0.1", true},
		{[]string{"127.0.0.1"}, "127.0.0.1", true},
		{[]string{"::1"}, "::1", true},
		{[]string{"*.example.com"}, "127.0.0.1", false},
		{[]string{"[1]*"}, "127.0.0.1", false},
	}
	for _, tc := range tests {
		err := checkFrom(tc.patterns, addr(tc.remote))
		if (err == nil) != tc.ok {
			t.Errorf("checkFrom(%q, %s): got %v, want ok=%v", tc.patterns, tc.remote, err, tc.ok)
		}
	}
}

func TestKeyOptionsAuthenticate(t *testing.T) {
	expired, limited, plain := newSigner(t), newSigner(t), newSigner(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := &config.Config{Users: []config.User{{
		Name:       "alice",
		PublicKeys: []ssh.PublicKey{expired.PublicKey(), limited.PublicKey(), plain.PublicKey()},
		KeyOptions: []config.KeyOptions{
			{ExpiryTime: now.Add(-time.Second)},
			{From: []string{"10.0.0.0/8"}, NoPTY: true, Command: "echo forced", NoTouchRequired: true},
			{},
		},
	}}}
	a := NewAuthenticator(cfg)
	a.Clock = func() time.Time { return now }
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	if _, err := a.Authenticate(expired.PublicKey(), local); !errors.Is(err, ErrKeyOptions) || FailureReason(err) != "key_options" {
		t.Errorf("expired key: got %v, want ErrKeyOptions", err)
	}
	if _, err := a.Authenticate(limited.PublicKey(), local); !errors.Is(err, ErrKeyOptions) {
		t.Errorf("from= from 127.0.0.1: got %v, want ErrKeyOptions", err)
	}
	id, err := a.Authenticate(limited.PublicKey(), &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 1})
	if err != nil || !id.Restrictions.NoPTY || id.Restrictions.ForceCommand != "echo forced" || !id.NoTouchRequired || id.Restrictions.By != "your key entry" {
		t.Errorf("from= from 10.0.0.9: got %+v, %v; want the key's restrictions", id, err)
	}
	// A reload that restricts the plain key reaches an identity made
	// before it.
	id, _ = a.Authenticate(plain.PublicKey(), local)
	cfg.Users[0].KeyOptions[2] = config.KeyOptions{NoPortForwarding: true}
	if got := NewAuthenticator(cfg).Current(id); !got.Restrictions.NoPortForwarding {
		t.Errorf("Current after a reload: got %+v, want no-port-forwarding", got.Restrictions)
	}
}

func TestCertRestrictions(t *testing.T) {
	ca, key := newSigner(t), newSigner(t)
	a := NewAuthenticator(&config.Config{Users: []config.User{{Name: "carol"}}, TrustedUserCAs: []ssh.PublicKey{ca.PublicKey()}})
	now := time.Now()
	cert := func(exts, crit map[string]string) *ssh.Certificate {
		c := &ssh.Certificate{Key: key.PublicKey(), CertType: ssh.UserCert, KeyId: "k", ValidPrincipals: []string{"carol"},
			ValidAfter: uint64(now.Add(-time.Hour).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
			Permissions: ssh.Permissions{Extensions: exts, CriticalOptions: crit}}
		if err := c.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		return c
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	id, err := a.Authenticate(cert(map[string]string{"permit-pty": "", "permit-agent-forwarding": ""}, nil), local)
	if err != nil {
		t.Fatal(err)
	}
	want := Restrictions{By: "your certificate", NoPortForwarding: true, NoX11Forwarding: true}
	if got := id.Restrictions; got.By != want.By || got.NoPortForwarding != want.NoPortForwarding || got.NoX11Forwarding != want.NoX11Forwarding || got.NoPTY || got.NoAgentForwarding {
		t.Errorf("restrictions: got %+v, want %+v", got, want)
	}
	if _, err := a.Authenticate(cert(nil, map[string]string{"verify-required": ""}), local); !errors.Is(err, ErrBadCertificate) || !strings.Contains(err.Error(), "verify-required cannot be checked") {
		t.Errorf("verify-required: got %v, want it refused with the reason", err)
	}
	if _, err := a.Authenticate(cert(nil, map[string]string{"source-address": "10.0.0.0/8"}), local); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("source-address from 127.0.0.1: got %v, want refused", err)
	}
	if _, err := a.Authenticate(cert(nil, map[string]string{"source-address": "127.0.0.1,bogus"}), local); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("malformed source-address: got %v, want refused", err)
	}
}
