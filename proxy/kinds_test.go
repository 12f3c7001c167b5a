package proxy

import (
	"strings"
	"testing"

	"bastion/auth"
	"bastion/config"
)

// TestKindDecision checks that a serial console target needs
// serial_console on top of the login and of each session's capability,
// decided by the policy given (the one in force), and that other kinds
// need nothing more.
func TestKindDecision(t *testing.T) {
	grant := &config.Config{Policies: []config.Policy{{Groups: []string{"ops"}, Targets: []string{"serial:*"}, OSUsers: []string{"port0"}, Allow: []string{config.CapSerialConsole}}}}
	plain := &config.Config{Policies: []config.Policy{{Groups: []string{"ops"}, Targets: []string{"*"}, OSUsers: []string{"*"}}}}
	id := auth.Identity{User: "dana", Groups: []string{"ops"}}
	serial := auth.Target{Provider: "serial", Name: "web-1", ID: "i-0123456789abcdef0", Region: "us-east-1"}
	ec2 := auth.Target{Provider: "ec2", Name: "web-1", ID: "i-0123456789abcdef0", Region: "us-east-1"}
	tests := []struct {
		name   string
		cfg    *config.Config
		target auth.Target
		cap    string
		allow  bool
	}{
		{"granted login", grant, serial, "", true},
		{"granted shell", grant, serial, config.CapShell, true},
		{"not granted login", plain, serial, "", false},
		{"not granted shell", plain, serial, config.CapShell, false},
		{"ec2 needs nothing more", plain, ec2, config.CapShell, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := auth.Request{Identity: id, Target: tc.target, OSUser: "port0", Capability: tc.cap}
			d := kindDecision(auth.NewPolicy(tc.cfg), r)
			if d.Allow != tc.allow {
				t.Fatalf("got allow %v (%q), want %v", d.Allow, d.Reason, tc.allow)
			}
			if !d.Allow && !strings.Contains(d.Reason, "serial console") {
				t.Errorf("reason %q: want it to name the serial console", d.Reason)
			}
		})
	}
	if listable(auth.NewPolicy(plain), id, serial) || !listable(auth.NewPolicy(grant), id, serial) || !listable(auth.NewPolicy(plain), id, ec2) {
		t.Error("listable: want a serial console listed only where serial_console is granted, other targets always")
	}
}

// TestListedUsers checks that the listing shows a serial console's port0
// when a policy's OS user patterns allow it, and other kinds' patterns as
// they are.
func TestListedUsers(t *testing.T) {
	tests := []struct {
		kind     string
		patterns []string
		want     string
	}{
		{"serial", []string{"*"}, "port0"},
		{"serial", []string{"ec2-user", "port*"}, "port0"},
		{"serial", []string{"ec2-user"}, ""},
		{"ec2", []string{"ec2-user", "*"}, "ec2-user,*"},
	}
	for _, tc := range tests {
		if got := strings.Join(listedUsers(tc.kind, tc.patterns), ","); got != tc.want {
			t.Errorf("listedUsers(%s, %v) = %q, want %q", tc.kind, tc.patterns, got, tc.want)
		}
	}
}
