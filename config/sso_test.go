package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSSOKeys checks sso: defaults, and errors that name the key and its
// line.
func TestSSOKeys(t *testing.T) {
	const base = "host_key: /k/host\nhost_ca_key: /k/ca\nusers: [{name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByJ4Ir0VYQnZNuz9Y8IxP0+DXNPTFOpt0ZFepP1JDen a\"], groups: [g]}]\npolicies: []\n"
	cfg, err := ParseWith([]byte(base+"sso:\n  issuer: https://login.example.com\n  client_id: bastion\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.SSO
	if !slices.Equal(s.Scopes, DefaultSSOScopes) || s.UsernameClaim != "preferred_username" || s.GroupsClaim != "groups" ||
		s.SessionTTL.D() != 12*time.Hour || s.MaxPending != 32 || s.MaxPendingPerSource != 4 || s.MaxBindings != 10000 ||
		s.BindingsFile != "/k/sso-bindings.json" || s.MergeConfiguredUsers {
		t.Errorf("defaults: got %+v", *s)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"no issuer", "sso:\n  client_id: b\n", "config.yaml:5: sso.issuer: required"},
		{"plain http", "sso:\n  issuer: http://login.example.com\n  client_id: b\n", `config.yaml:6: sso.issuer: "http://login.example.com" uses http; an issuer must use https`},
		{"not a url", "sso:\n  issuer: login.example.com\n  client_id: b\n", `config.yaml:6: sso.issuer: "login.example.com" is not an issuer URL`},
		{"query", "sso:\n  issuer: https://login.example.com/?a=b\n  client_id: b\n", `config.yaml:6: sso.issuer: "https://login.example.com/?a=b" is not an issuer URL`},
		{"ftp", "sso:\n  issuer: ftp://login.example.com\n  client_id: b\n", `config.yaml:6: sso.issuer: "ftp://login.example.com" is not an https URL`},
		{"no client", "sso:\n  issuer: https://login.example.com\n", "config.yaml:5: sso.client_id: required"},
		{"no openid scope", "sso:\n  issuer: https://i\n  client_id: b\n  scopes: [email]\n", "config.yaml:8: sso.scopes: must include openid"},
		{"bad scope", "sso:\n  issuer: https://i\n  client_id: b\n  scopes: [openid, \"a b\"]\n", `config.yaml:8: sso.scopes[1]: "a b" is not a scope`},
		{"short ttl", "sso:\n  issuer: https://i\n  client_id: b\n  session_ttl: 500ms\n", "config.yaml:8: sso.session_ttl: 500ms is out of range"},
		{"bad ttl", "sso:\n  issuer: https://i\n  client_id: b\n  session_ttl: soon\n", "config.yaml:8: sso.session_ttl:"},
		{"bad domain", "sso:\n  issuer: https://i\n  client_id: b\n  allowed_domains: [\"@example.com\"]\n", `config.yaml:8: sso.allowed_domains[0]: "@example.com" is not a domain name`},
		{"no pending", "sso:\n  issuer: https://i\n  client_id: b\n  max_pending: 0\n", "config.yaml:8: sso.max_pending: 0 is too small"},
		{"per source above all", "sso:\n  issuer: https://i\n  client_id: b\n  max_pending: 2\n  max_pending_per_source: 3\n", "config.yaml:9: sso.max_pending_per_source: 3 is out of range"},
		{"no bindings", "sso:\n  issuer: https://i\n  client_id: b\n  max_bindings: 0\n", "config.yaml:8: sso.max_bindings: 0 is too small"},
		{"bad claim", "sso:\n  issuer: https://i\n  client_id: b\n  username_claim: \"a b\"\n", "config.yaml:8: sso.username_claim: must be a claim name"},
		{"unknown key", "sso:\n  issuer: https://i\n  client_id: b\n  client_secret: x\n", "config.yaml:8: sso.client_secret: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWith([]byte(base+tc.yaml), "/etc/bastion/config.yaml", Options{SkipFiles: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err = ParseWith([]byte(base+"sso:\n  issuer: https://i\n  client_id: b\n  session_ttl: 3s\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "config.yaml:8: sso.session_ttl: 3s is shorter than a minute") {
		t.Errorf("session_ttl 3s: got %v, warnings %v; want it valid with a warning", err, cfg)
	}
	for _, issuer := range []string{"http://127.0.0.1:5556", "http://localhost:5556/dex", "http://[::1]:80"} {
		if _, err := ParseWith([]byte(base+"sso:\n  issuer: "+issuer+"\n  client_id: b\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true}); err != nil {
			t.Errorf("loopback issuer %s: %v", issuer, err)
		}
	}
}

// TestSSOBindingsFileDefault: with host_key an AWS reference there is no
// folder to default to; fleet keeps bindings in the table instead.
func TestSSOBindingsFileDefault(t *testing.T) {
	const base = "host_key: ssm:/bastion/host\nhost_ca_key: /k/ca\npolicies: []\n"
	_, err := ParseWith([]byte(base+"sso:\n  issuer: https://i\n  client_id: b\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err == nil || !strings.Contains(err.Error(), "config.yaml:4: sso.bindings_file: required when host_key is not a file") {
		t.Errorf("got %v, want sso.bindings_file required", err)
	}
	cfg, err := ParseWith([]byte(base+"fleet: {dynamodb_table: bastion-fleet}\nsso:\n  issuer: https://i\n  client_id: b\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil || cfg.SSO.BindingsFile != "" || len(cfg.Warnings) != 0 {
		t.Errorf("with fleet: %v, bindings file %q, warnings %v; want no file", err, cfg.SSO.BindingsFile, cfg.Warnings)
	}
	cfg, err = ParseWith([]byte(base+"sso:\n  issuer: https://i\n  client_id: b\n  bindings_file: state/b.json\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SSO.BindingsFile; got != "/etc/bastion/state/b.json" {
		t.Errorf("relative bindings_file: got %s, want it resolved against the config's folder", got)
	}
}

// TestSSOClientSecretFile: the secret file must exist, be private and
// hold something.
func TestSSOClientSecretFile(t *testing.T) {
	dir := t.TempDir()
	const base = "host_key: /k/host\nhost_ca_key: /k/ca\npolicies: []\nsso:\n  issuer: https://i\n  client_id: b\n  client_secret_file: secret\n"
	path := filepath.Join(dir, "config.yaml")
	secret := filepath.Join(dir, "secret")
	check := func(want string) {
		t.Helper()
		_, err := Parse([]byte(base), path)
		switch {
		case want == "" && err != nil:
			t.Errorf("got %v, want none", err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("got %v, want %q", err, want)
		}
	}
	check("config.yaml:7: sso.client_secret_file:")
	if err := os.WriteFile(secret, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("config.yaml:7: sso.client_secret_file: " + secret + " is empty")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(secret, 0o644)
	check("config.yaml:7: sso.client_secret_file:")
	os.Chmod(secret, 0o600)
	check("")
	cfg, err := Parse([]byte(base), path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cfg.SSO.ReadClientSecret(); err != nil || got != "s3cret" {
		t.Errorf("ReadClientSecret: got %q, %v; want s3cret", got, err)
	}
}
