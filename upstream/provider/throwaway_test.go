package provider_test

import (
	"strings"
	"testing"

	"bastion/auth"
	"bastion/config"
	"bastion/upstream"
	"bastion/upstream/provider"
)

// TestThrowawayProvider registers a provider kind that exists only in this
// test and checks that target parsing, policy prefixes, config validation
// and its did-you-mean hints all know it from that one registration.
func TestThrowawayProvider(t *testing.T) {
	provider.Register(provider.Descriptor{Name: "throwaway", Lists: true})

	q, err := upstream.ParseQuery("web-1.throwaway")
	if err != nil || q.Provider != "throwaway" || q.Name != "web-1" {
		t.Fatalf("ParseQuery(web-1.throwaway) = %+v, %v; want provider throwaway, name web-1", q, err)
	}
	if _, err := upstream.ParseQuery("web-1.us-east-1.throwaway"); err == nil || !strings.Contains(err.Error(), "throwaway targets have no region") {
		t.Errorf("ParseQuery(web-1.us-east-1.throwaway) error = %v, want no region", err)
	}
	if got, want := provider.Or(provider.Suffixes()), ".lightsail, .ec2, .static, .serial or .throwaway"; got != want {
		t.Errorf("suffixes: got %q, want %q", got, want)
	}

	const yaml = `
host_key: /nonexistent/host
host_ca_key: /nonexistent/ca
users:
  - {name: alice, keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice"], groups: [dev]}
policies:
  - {groups: [dev], targets: ["throwaway:web-*"], os_users: [ubuntu]}
`
	cfg, err := config.Parse([]byte(yaml), "bastion.yaml")
	if err != nil {
		t.Fatalf("a policy with the prefix throwaway: is refused: %v", err)
	}
	p := auth.NewPolicy(cfg)
	id := auth.Identity{User: "alice", Groups: []string{"dev"}}
	for _, tc := range []struct {
		provider string
		want     bool
	}{{"throwaway", true}, {"static", false}} {
		d := p.Authorize(auth.Request{Identity: id, Target: auth.Target{Provider: tc.provider, Name: "web-1"}, OSUser: "ubuntu", Capability: config.CapShell})
		if d.Allow != tc.want {
			t.Errorf("throwaway:web-* on %s:web-1: got allowed=%v, want %v (%s)", tc.provider, d.Allow, tc.want, d.Reason)
		}
	}
}
