package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRDPKeys checks providers.lightsail's rdp_port and rdp_key_pairs: the
// default port, and one error, at the key's line, per bad entry.
func TestRDPKeys(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	rsaKey, edKey := abs("testdata/keys/win_admins_rsa.pem"), abs("testdata/keys/static_ed25519")
	for _, tc := range []struct {
		name, section, want string
	}{
		{"defaults", `{regions: [us-east-1]}`, ""},
		{"rsa key", `{regions: [us-east-1], rdp_port: 3390, rdp_key_pairs: {win-admins: ` + rsaKey + `}}`, ""},
		{"bad port", `{regions: [us-east-1], rdp_port: 70000}`, "providers.lightsail.rdp_port: 70000 is not a port number (1-65535)"},
		{"not rsa", `{regions: [us-east-1], rdp_key_pairs: {ops: ` + edKey + `}}`, "providers.lightsail.rdp_key_pairs.ops: " + edKey + " is not an RSA private key (Lightsail key pairs are RSA)"},
		{"missing file", `{regions: [us-east-1], rdp_key_pairs: {ops: /nonexistent/ops.pem}}`, "providers.lightsail.rdp_key_pairs.ops: /nonexistent/ops.pem does not exist"},
		{"bad name", `{regions: [us-east-1], rdp_key_pairs: {"-x": ` + rsaKey + `}}`, `providers.lightsail.rdp_key_pairs.-x: "-x" is not a Lightsail key pair name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(minimalHead+"providers:\n  lightsail: "+tc.section+"\n"), "")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if tc.name == "defaults" && cfg.Providers.Lightsail.RDPPort != DefaultRDPPort {
					t.Errorf("rdp_port: got %d, want %d", cfg.Providers.Lightsail.RDPPort, DefaultRDPPort)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestRDPPolicyWarning(t *testing.T) {
	const users = "users: [{name: alice, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZtH5y1xGcR3sAa1F2B0YtJvNqZk7lq3bYg0tW1Xm2U\"], groups: [dev]}]\n"
	for _, tc := range []struct{ name, policy, want string }{
		{"linux users only", `{groups: [dev], targets: ["*"], os_users: [ec2-user], allow: [rdp]}`,
			"config:5: policies[0].allow: grants rdp, but os_users matches no Administrator, the Windows user Lightsail reports, so it grants no Remote Desktop"},
		{"administrator", `{groups: [dev], targets: ["*"], os_users: [ec2-user, Administrator], allow: [rdp]}`, ""},
		{"any user", `{groups: [dev], targets: ["*"], os_users: ["*"], allow: [rdp]}`, ""},
		{"no rdp", `{groups: [dev], targets: ["*"], os_users: [ec2-user]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(minimalHead+users+"policies:\n  - "+tc.policy+"\n"), "")
			if err != nil {
				t.Fatalf("got error %v, want a warning at most", err)
			}
			var got []string
			for _, w := range cfg.Warnings {
				got = append(got, w.Error())
			}
			if strings.Join(got, "\n") != tc.want {
				t.Errorf("warnings: got %q, want %q", got, tc.want)
			}
		})
	}
}
