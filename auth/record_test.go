package auth

import (
	"testing"

	"bastion/config"
)

// TestRecordsUnit checks that a policy's record list applies to the targets
// the policy matches, whoever the person is, and to nothing else.
func TestRecordsUnit(t *testing.T) {
	p := NewPolicy(&config.Config{Policies: []config.Policy{
		{Groups: []string{"dev"}, Targets: []string{"web-*"}, OSUsers: []string{"*"}},
		{Groups: []string{"auditors"}, Targets: []string{"ec2:tag:env=prod"}, OSUsers: []string{"*"}, Record: []string{config.RecordPTY, config.RecordExec}},
	}})
	web := Target{Provider: "lightsail", Name: "web-1", ID: "web-1"}
	prod := Target{Provider: "ec2", Name: "web-2", ID: "i-0123456789abcdef0", Tags: map[string]string{"env": "prod"}}
	for _, tc := range []struct {
		name   string
		target Target
		kind   string
		want   bool
	}{
		{"exec on a target of a recording policy", prod, config.RecordExec, true},
		{"pty on it", prod, config.RecordPTY, true},
		{"exec elsewhere", web, config.RecordExec, false},
		{"unknown kind", prod, "subsystem", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Records(tc.target, tc.kind); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
