package static

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"bastion/internal/secfile"
	"bastion/internal/testkit"
	"bastion/upstream"
)

// newKey returns a fresh ed25519 signer.
func newKey(t *testing.T) ssh.Signer { return testkit.NewSigner(t) }

// writeKnownHosts writes a known_hosts file holding key under addr.
func writeKnownHosts(t *testing.T, addr string, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNew(t *testing.T) {
	signer, hostKey := newKey(t), newKey(t).PublicKey()
	kh := writeKnownHosts(t, "10.0.0.5:22", hostKey)
	broken := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(broken, []byte("10.0.0.5 ssh-ed25519 not-base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		hosts   []Host
		wantErr string // "" means New succeeds
	}{
		{"none", nil, ""},
		{"pinned", []Host{{Name: "db", Address: "10.0.0.5:22", User: "admin", Signer: signer, HostKey: hostKey}}, ""},
		{"known_hosts", []Host{{Name: "db", Address: "10.0.0.5:22", User: "admin", Signer: signer, KnownHosts: kh}}, ""},
		{"two hosts", []Host{
			{Name: "db", Signer: signer, HostKey: hostKey},
			{Name: "web", Signer: signer, HostKey: hostKey},
		}, ""},
		{"defined twice", []Host{
			{Name: "db", Signer: signer, HostKey: hostKey},
			{Name: "db", Signer: signer, HostKey: hostKey},
		}, `static host "db": defined twice`},
		{"no private key", []Host{{Name: "db", HostKey: hostKey}}, `static host "db": no private key`},
		{"no host key", []Host{{Name: "db", Signer: signer}}, `static host "db": no host key to verify against`},
		{"missing known_hosts", []Host{{Name: "db", Signer: signer, KnownHosts: filepath.Join(t.TempDir(), "absent")}}, `static host "db": reading known_hosts:`},
		{"broken known_hosts", []Host{{Name: "db", Signer: signer, KnownHosts: broken}}, `static host "db": reading known_hosts:`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.hosts)
			if tc.wantErr == "" {
				if err != nil || p == nil {
					t.Fatalf("got %v, %v; want a provider", p, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	p, err := New([]Host{{Name: "db", Address: "10.0.0.5:22", User: "admin", Signer: newKey(t), HostKey: newKey(t).PublicKey(), Tags: map[string]string{"env": "prod"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Name(); got != upstream.ProviderStatic {
		t.Errorf("Name: got %q, want %q", got, upstream.ProviderStatic)
	}
	tests := []struct {
		name string
		q    upstream.Query
		want []string // Target.String() of each result
	}{
		{"bare name", upstream.Query{Name: "db"}, []string{"db.static"}},
		{"with provider", upstream.Query{Name: "db", Provider: upstream.ProviderStatic}, []string{"db.static"}},
		{"unknown name", upstream.Query{Name: "web"}, nil},
		{"other case", upstream.Query{Name: "DB"}, nil},
		{"a region", upstream.Query{Name: "db", Region: "us-east-1"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := p.Resolve(context.Background(), tc.q)
			if err != nil {
				t.Fatalf("got error %v, want none (no match is an empty result)", err)
			}
			var got []string
			for _, tg := range ts {
				got = append(got, tg.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	ts, _ := p.Resolve(context.Background(), upstream.Query{Name: "db"})
	if want := (upstream.Target{Provider: "static", Name: "db", ID: "db"}); len(ts) != 1 || ts[0].Provider != want.Provider || ts[0].ID != want.ID || ts[0].Region != "" || ts[0].Tags["env"] != "prod" {
		t.Errorf("got %+v, want %+v with the host's tags", ts, want)
	}
}

func TestCredentials(t *testing.T) {
	signer, hostKey := newKey(t), newKey(t).PublicKey()
	kh := writeKnownHosts(t, "10.0.0.6:2222", hostKey)
	p, err := New([]Host{
		{Name: "db", Address: "10.0.0.5:22", User: "admin", Signer: signer, HostKey: hostKey},
		{Name: "old", Address: "10.0.0.6:2222", User: "root", Signer: signer, KnownHosts: kh},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		target     string
		osUser     string
		wantAddr   string
		wantSource string
		wantAlgos  []string
		wantErr    error
		wantPublic string
	}{
		{name: "pinned", target: "db", osUser: "admin", wantAddr: "10.0.0.5:22", wantSource: "pinned", wantAlgos: []string{ssh.KeyAlgoED25519}},
		{name: "known_hosts", target: "old", osUser: "root", wantAddr: "10.0.0.6:2222", wantSource: "known_hosts"},
		{name: "other user", target: "db", osUser: "root", wantErr: upstream.ErrUserMismatch, wantPublic: "this host admits only admin"},
		{name: "empty user", target: "db", osUser: "", wantErr: upstream.ErrUserMismatch, wantPublic: "this host admits only admin"},
		{name: "unknown host", target: "web", osUser: "admin", wantErr: upstream.ErrNotFound, wantPublic: "no such target"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := p.Credentials(context.Background(), upstream.Target{Provider: "static", Name: tc.target, ID: tc.target}, tc.osUser)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || c != nil {
					t.Fatalf("got %v, %v; want %v", c, err, tc.wantErr)
				}
				if got := upstream.PublicMessage(err); got != tc.wantPublic {
					t.Errorf("public message: got %q, want %q", got, tc.wantPublic)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want credentials", err)
			}
			if c.Addr != tc.wantAddr || c.User != tc.osUser || c.Signer != signer || c.HostKeySource != tc.wantSource || !c.Expires.IsZero() {
				t.Errorf("got addr %q user %q source %q expires %v, want %q %q %q and never", c.Addr, c.User, c.HostKeySource, c.Expires, tc.wantAddr, tc.osUser, tc.wantSource)
			}
			if !slices.Equal(c.HostKeyAlgorithms, tc.wantAlgos) {
				t.Errorf("host key algorithms: got %q, want %q", c.HostKeyAlgorithms, tc.wantAlgos)
			}
			if c.HostKeyCallback == nil {
				t.Error("got no host key callback, want one")
			}
		})
	}
}

// TestHostKeyPinning checks the host key callbacks of both kinds of host:
// the pinned or listed key is accepted, any other refused with the public
// sentence naming where the expected key came from and a
// *upstream.HostKeyMismatchError for errors.As.
func TestHostKeyPinning(t *testing.T) {
	signer, hostKey, otherKey := newKey(t), newKey(t).PublicKey(), newKey(t).PublicKey()
	kh := writeKnownHosts(t, "10.0.0.6:2222", hostKey)
	p, err := New([]Host{
		{Name: "db", Address: "10.0.0.5:22", User: "admin", Signer: signer, HostKey: hostKey},
		{Name: "old", Address: "10.0.0.6:2222", User: "root", Signer: signer, KnownHosts: kh},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target, user, addr string
		key                      ssh.PublicKey
		wantPublic               string // "" means accepted
	}{
		{"pinned key", "db", "admin", "10.0.0.5:22", hostKey, ""},
		{"pinned, other key", "db", "admin", "10.0.0.5:22", otherKey, "upstream host key does not match pinned host_key; refusing to connect"},
		{"known_hosts key", "old", "root", "10.0.0.6:2222", hostKey, ""},
		{"known_hosts, other key", "old", "root", "10.0.0.6:2222", otherKey, "upstream host key does not match " + kh + "; refusing to connect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := p.Credentials(context.Background(), upstream.Target{Name: tc.target}, tc.user)
			if err != nil {
				t.Fatal(err)
			}
			remote, err := net.ResolveTCPAddr("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			err = c.HostKeyCallback(tc.addr, remote, tc.key)
			if tc.wantPublic == "" {
				if err != nil {
					t.Errorf("got %v, want the key accepted", err)
				}
				return
			}
			var mismatch *upstream.HostKeyMismatchError
			if !errors.As(err, &mismatch) || mismatch.Target != tc.target || !bytes.Equal(mismatch.Got.Marshal(), tc.key.Marshal()) {
				t.Fatalf("got %v, want a *HostKeyMismatchError for %s", err, tc.target)
			}
			if got := upstream.PublicMessage(err); got != tc.wantPublic {
				t.Errorf("public message: got %q, want %q", got, tc.wantPublic)
			}
		})
	}
}

func TestList(t *testing.T) {
	signer, hostKey := newKey(t), newKey(t).PublicKey()
	p, err := New([]Host{
		{Name: "db", Signer: signer, HostKey: hostKey},
		{Name: "web", Signer: signer, HostKey: hostKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range ts {
		got = append(got, tg.String())
	}
	slices.Sort(got)
	if want := []string{"db.static", "web.static"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	empty, _ := New(nil)
	if ts, err := empty.List(context.Background()); err != nil || len(ts) != 0 {
		t.Errorf("no hosts: got %v, %v; want nothing", ts, err)
	}
}

func TestLoadSigner(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(block)
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		path  string
		check func(error) bool // nil means LoadSigner succeeds
	}{
		{"private key", write("ok", keyPEM, 0o600), nil},
		{"read-only key", write("ro", keyPEM, 0o400), nil},
		{"readable by others", write("loose", keyPEM, 0o644), func(err error) bool {
			var me *secfile.ModeError
			return errors.As(err, &me)
		}},
		{"missing", filepath.Join(dir, "absent"), func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{"not a key", write("junk", []byte("not a key\n"), 0o600), func(err error) bool {
			return err != nil && strings.HasPrefix(err.Error(), "parsing private key "+filepath.Join(dir, "junk")+":")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSigner(tc.path)
			if tc.check == nil {
				if err != nil || s == nil || s.PublicKey().Type() != ssh.KeyAlgoED25519 {
					t.Fatalf("got %v, %v; want an ed25519 signer", s, err)
				}
				return
			}
			if s != nil || !tc.check(err) {
				t.Errorf("got %v, %v; want the error of that kind", s, err)
			}
		})
	}
}
