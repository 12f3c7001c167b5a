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
