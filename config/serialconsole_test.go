package config

import (
	"strings"
	"testing"
)

// TestSerialConsoleConfig checks providers.ec2.serial_console: its keys
// decode, and a bad endpoint, region or fingerprint is an error at its
// line, as is a region with no fingerprint; serial_console granted without
// recordings is a warning.
func TestSerialConsoleConfig(t *testing.T) {
	const users = "users: [{name: alice, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZtH5y1xGcR3sAa1F2B0YtJvNqZk7lq3bYg0tW1Xm2U\"], groups: [dev]}]\n"
	const fp = "SHA256:dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw"
	ec2 := func(sc string) string {
		return "providers:\n  ec2:\n    regions: [us-east-1]\n    known_hosts: kh\n    serial_console: " + sc + "\n"
	}
	const recorded = "audit: {recordings: /var/lib/bastion/recordings}\n"
	const policy = "policies:\n  - {groups: [dev], targets: [\"serial:*\"], os_users: [port0], allow: [serial_console]}\n"
	tests := []struct {
		name, body string
		errs       []string
		warn       string
	}{
		{name: "valid", body: ec2(`{endpoint: "127.0.0.1:2022", host_keys: {us-east-1: ["`+fp+`"]}}`) + recorded + policy},
		{name: "template", body: ec2(`{endpoint: "sc.{region}.example:22"}`) + recorded + policy},
		{name: "bad endpoint", body: ec2(`{endpoint: "no-port"}`) + recorded,
			errs: []string{`config:8: providers.ec2.serial_console.endpoint: "no-port" is not host:port (with {region} for the region)`}},
		{name: "bad region and fingerprint", body: ec2(`{host_keys: {us-east: ["SHA256:short"], eu-west-1: []}}`) + recorded,
			errs: []string{
				`providers.ec2.serial_console.host_keys.eu-west-1: lists no fingerprint`,
				`providers.ec2.serial_console.host_keys.us-east: "us-east" is not an AWS region name`,
				`providers.ec2.serial_console.host_keys.us-east[0]: "SHA256:short" is not a SHA256 fingerprint`,
			}},
		{name: "not recorded", body: ec2("{}") + policy,
			warn: "policies[0].allow: grants serial_console, but audit.recordings is not set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(minimalHead+users+tc.body), "")
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				var warns []string
				for _, w := range cfg.Warnings {
					warns = append(warns, w.Error())
				}
				if got := strings.Join(warns, "\n"); (tc.warn == "") != (got == "") || !strings.Contains(got, tc.warn) {
					t.Errorf("warnings: got %q, want %q", got, tc.warn)
				}
				return
			}
			if err == nil {
				t.Fatal("got no error, want some")
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q: want %q", err, want)
				}
			}
		})
	}
	cfg, err := Parse([]byte(minimalHead+users+ec2(`{endpoint: "127.0.0.1:2022", host_keys: {us-east-1: ["`+fp+`"]}}`)), "")
	if err != nil {
		t.Fatal(err)
	}
	if sc := cfg.Providers.EC2.SerialConsole; sc == nil || sc.Endpoint != "127.0.0.1:2022" || len(sc.HostKeys["us-east-1"]) != 1 || sc.HostKeys["us-east-1"][0] != fp {
		t.Errorf("decoded serial_console %+v", sc)
	}
}
