package auth

import (
	"strings"
	"testing"

	"bastion/config"
)

func TestAuthorize(t *testing.T) {
	cfg := &config.Config{Policies: []config.Policy{
		{Groups: []string{"dev"}, Targets: []string{"web-*", "ec2:tag:env=staging"}, OSUsers: []string{"ec2-user", "ubuntu"}},
		{Groups: []string{"ops"}, Targets: []string{"*"}, OSUsers: []string{"*"}, Allow: []string{config.CapPortForwarding, config.CapAgentForwarding}},
		{Users: []string{"carol"}, Targets: []string{"lightsail:us-east-1:db-*"}, OSUsers: []string{"admin"}, Deny: []string{config.CapShell},
			Allow: []string{config.CapPortForwarding}, ForwardTo: []string{"127.0.0.1:5432"}},
	}}
	p := NewPolicy(cfg)
	alice := Identity{User: "alice", Groups: []string{"dev"}}
	bob := Identity{User: "bob", Groups: []string{"ops"}}
	carol := Identity{User: "carol"}
	web := Target{Provider: "lightsail", Name: "web-1", ID: "web-1", Region: "us-east-1"}
	staging := Target{Provider: "ec2", Name: "api", ID: "i-0123456789abcdef0", Region: "eu-west-1", Tags: map[string]string{"env": "staging"}}
	prod := Target{Provider: "ec2", Name: "api", ID: "i-0fedcba9876543210", Region: "eu-west-1", Tags: map[string]string{"env": "prod"}}
	db := Target{Provider: "lightsail", Name: "db-1", Region: "us-east-1"}
	dbEU := Target{Provider: "lightsail", Name: "db-1", Region: "eu-west-1"}

	tests := []struct {
		name       string
		id         Identity
		target     Target
		osUser     string
		capability string
		dest       string
		allow      bool
		reason     string
	}{
		{"dev login web", alice, web, "ec2-user", "", "", true, ""},
		{"dev shell web", alice, web, "ubuntu", config.CapShell, "", true, ""},
		{"dev sftp web", alice, web, "ubuntu", config.CapSFTP, "", true, ""},
		{"dev root web", alice, web, "root", "", "", false, "no policy lets alice log in to web-1 as root"},
		{"dev tag staging", alice, staging, "ec2-user", "", "", true, ""},
		{"dev tag prod", alice, prod, "ec2-user", "", "", false, "no policy lets alice reach api"},
		{"dev no forwarding", alice, web, "ec2-user", config.CapPortForwarding, "10.0.0.1:80", false, "no policy lets alice use port forwarding to 10.0.0.1:80 on web-1"},
		{"dev no agent", alice, web, "ec2-user", config.CapAgentForwarding, "", false, "no policy lets alice use agent forwarding on web-1"},
		{"ops anything", bob, prod, "root", config.CapPortForwarding, "10.0.0.1:80", true, ""},
		{"ops agent", bob, prod, "root", config.CapAgentForwarding, "", true, ""},
		{"ops no x11", bob, prod, "root", config.CapX11, "", false, "no policy lets bob use x11 on api"},
		{"carol exec db", carol, db, "admin", config.CapExec, "", true, ""},
		{"carol shell denied", carol, db, "admin", config.CapShell, "", false, "no policy lets carol use shell on db-1"},
		{"carol forward allowed dest", carol, db, "admin", config.CapPortForwarding, "127.0.0.1:5432", true, ""},
		{"carol forward other dest", carol, db, "admin", config.CapPortForwarding, "127.0.0.1:22", false, "no policy lets carol use port forwarding to 127.0.0.1:22 on db-1"},
		{"carol forwarded channel (no dest)", carol, db, "admin", config.CapPortForwarding, "", true, ""},
		{"carol other region", carol, dbEU, "admin", "", "", false, "no policy lets carol reach db-1"},
		{"nobody", Identity{User: "eve"}, web, "ec2-user", "", "", false, "no policy lets eve reach web-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Authorize(Request{Identity: tc.id, Target: tc.target, OSUser: tc.osUser, Capability: tc.capability, Dest: tc.dest})
			if d.Allow != tc.allow || d.Reason != tc.reason {
				t.Errorf("got %+v, want allow=%v reason=%q", d, tc.allow, tc.reason)
			}
		})
	}
	if d := p.Reachable(alice, prod); d.Allow {
		t.Errorf("Reachable(alice, prod): got allow, want deny")
	}
	if d := p.Reachable(alice, staging); !d.Allow {
		t.Errorf("Reachable(alice, staging): got %q, want allow", d.Reason)
	}
}

func TestOSUsers(t *testing.T) {
	p := NewPolicy(&config.Config{Policies: []config.Policy{
		{Groups: []string{"dev"}, Targets: []string{"web-*"}, OSUsers: []string{"ec2-user", "ubuntu"}},
		{Users: []string{"alice"}, Targets: []string{"*"}, OSUsers: []string{"ubuntu", "*"}},
	}})
	tests := []struct {
		name   string
		id     Identity
		target string
		want   string
	}{
		{"two policies", Identity{User: "alice", Groups: []string{"dev"}}, "web-1", "ec2-user,ubuntu,*"},
		{"group only", Identity{User: "bob", Groups: []string{"dev"}}, "web-1", "ec2-user,ubuntu"},
		{"unreachable", Identity{User: "bob", Groups: []string{"dev"}}, "db-1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(p.OSUsers(tc.id, Target{Provider: "static", Name: tc.target}), ",")
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
