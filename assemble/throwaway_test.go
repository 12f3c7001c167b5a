package assemble_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/assemble"
	"bastion/audit"
	"bastion/config"
	"bastion/internal/siminstance"
	"bastion/internal/testkit"
	"bastion/upstream"
	"bastion/upstream/build"
	"bastion/upstream/provider"
)

// throwawaySection is the config section of the throwaway kind: what a new
// provider's folder would declare.
type throwawaySection struct {
	// Tunnel is where its one instance is reached: the Dial hook's
	// endpoint, standing for a tunnel or another endpoint host.
	Tunnel string `yaml:"tunnel"`
	User   string `yaml:"user"`
}

// throwaway is the provider of the throwaway kind: one instance, web-1,
// reached through its own transport (Credentials.Dial), not TCP to Addr.
type throwaway struct {
	sec     *throwawaySection
	signer  ssh.Signer
	hostKey ssh.PublicKey
}

func (p *throwaway) Name() string { return "throwaway" }

func (p *throwaway) Resolve(_ context.Context, q upstream.Query) ([]upstream.Target, error) {
	if q.Name != "web-1" {
		return nil, nil
	}
	return []upstream.Target{{Provider: "throwaway", Name: "web-1", ID: "web-1"}}, nil
}

func (p *throwaway) Credentials(_ context.Context, _ upstream.Target, osUser string) (*upstream.Credentials, error) {
	return &upstream.Credentials{
		Addr: "web-1.throwaway:22", User: osUser, Signer: p.signer,
		HostKeyCallback: ssh.FixedHostKey(p.hostKey), HostKeySource: "pinned",
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.sec.Tunnel)
		},
	}, nil
}

// The instance's keys, shared by the registration (made once per test
// binary, as init would) and the test.
var throwawayKeys struct {
	user    ssh.Signer
	hostKey ssh.PublicKey
}

// registerThrowaway is everything a new provider kind adds outside its own
// folder: its descriptor (with its config section) and its constructor, one
// registration each. The package list a real kind joins is
// upstream/builtin, one import line.
func registerThrowaway() {
	provider.Register(provider.Descriptor{
		Name:       "throwaway",
		Lists:      false,
		NewSection: func() any { return &throwawaySection{} },
		Validate: func(s any) []error {
			if s.(*throwawaySection).Tunnel == "" {
				return []error{errors.New("tunnel is required")}
			}
			return nil
		},
	})
	build.Register("throwaway", func(_ context.Context, env build.Env) (upstream.Provider, error) {
		sec, ok := env.Config.Providers.Sections["throwaway"].(*throwawaySection)
		if !ok {
			return nil, nil
		}
		return &throwaway{sec: sec, signer: throwawayKeys.user, hostKey: throwawayKeys.hostKey}, nil
	})
}

// TestThrowawayProviderEndToEnd adds a provider kind that exists only in
// this file and shows that the two registrations reach config parsing and
// validation of its own section, policy prefixes, construction by the
// assembly, target names, and a login through its own transport.
func TestThrowawayProviderEndToEnd(t *testing.T) {
	userKey := testkit.NewSigner(t)
	throwawayKeys.user = userKey
	inst, err := siminstance.Start(siminstance.Options{
		Name:  "web-1",
		Users: []string{"ubuntu"},
		Authorize: siminstance.AcceptKeys(func(string) []ssh.PublicKey {
			return []ssh.PublicKey{userKey.PublicKey()}
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	throwawayKeys.hostKey = inst.HostKey()
	registerThrowaway()

	person := testkit.NewSigner(t)
	dir := t.TempDir()
	yml := fmt.Sprintf(`host_key: %s
host_ca_key: %s
users:
  - {name: alice, keys: [%q], groups: [dev]}
providers:
  throwaway: {tunnel: %q}
policies:
  - {groups: [dev], targets: ["throwaway:web-*"], os_users: [ubuntu]}
`, filepath.Join(dir, "host"), filepath.Join(dir, "ca"), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(person.PublicKey()))), inst.Addr())

	// Its section is validated like any other.
	if _, err := config.Parse([]byte(strings.Replace(yml, fmt.Sprintf("{tunnel: %q}", inst.Addr()), "{tunel: x}", 1)), "bastion.yaml"); err == nil ||
		!strings.Contains(err.Error(), "providers.throwaway.tunel: unknown key") || !strings.Contains(err.Error(), "providers.throwaway: tunnel is required") {
		t.Errorf("a bad throwaway section: got %v, want the unknown key and the missing tunnel", err)
	}
	cfg, err := config.Parse([]byte(yml), "bastion.yaml")
	if err != nil {
		t.Fatalf("config with a throwaway section: %v", err)
	}

	b, err := assemble.New(t.Context(), cfg, assemble.Options{Audit: audit.NewLogger(&strings.Builder{}), Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- b.Server.Serve(l) }()
	defer func() {
		b.Server.Close()
		<-served
	}()

	// A direct-mode login to web-1.throwaway runs a command on the
	// instance, through the provider's own transport.
	c, err := ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{
		User:            "ubuntu+web-1.throwaway",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(person)},
		HostKeyCallback: ssh.FixedHostKey(b.Server.HostKey.PublicKey()),
		Timeout:         20 * time.Second,
	})
	if err != nil {
		t.Fatalf("logging in to web-1.throwaway: %v", err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput("echo through-the-hook")
	if err != nil || strings.TrimSpace(string(out)) != "through-the-hook" {
		t.Fatalf("exec on web-1.throwaway: %q, %v", out, err)
	}
}
