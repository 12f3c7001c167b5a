package auth

import (
	"testing"

	"bastion/config"
)

func TestGrants(t *testing.T) {
	p := &Policy{rules: []config.Policy{
		{Groups: []string{"win"}, Targets: []string{"win-*"}, OSUsers: []string{"Administrator"}, Allow: []string{config.CapRDP}},
		{Groups: []string{"dev"}, Targets: []string{"*"}, OSUsers: []string{"*"}},
		{Groups: []string{"ops"}, Targets: []string{"*"}, OSUsers: []string{"*"}, Allow: []string{config.CapRDP}, Deny: []string{config.CapRDP}},
	}}
	win := Target{Provider: "lightsail", Name: "win-1", ID: "win-1"}
	for _, tc := range []struct {
		name   string
		groups []string
		t      Target
		allow  bool
		reason string
	}{
		{"granted", []string{"win"}, win, true, ""},
		{"reachable, not granted", []string{"dev"}, win, false, "no policy lets p use rdp on win-1"},
		{"granted and denied", []string{"ops"}, win, false, "no policy lets p use rdp on win-1"},
		{"not reachable", []string{"win"}, Target{Provider: "lightsail", Name: "web-1"}, false, "no policy lets p reach web-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Grants(Identity{User: "p", Groups: tc.groups}, tc.t, config.CapRDP)
			if d.Allow != tc.allow || d.Reason != tc.reason {
				t.Errorf("got %+v, want allow %v reason %q", d, tc.allow, tc.reason)
			}
		})
	}
}
