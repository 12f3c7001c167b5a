package main

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"bastion/audit"
)

// TestAuditCommandUnit checks `bastion audit`'s command line: the exit
// codes (0 verified, 1 not, 2 a mistake), files and flags in any order,
// and pubkey printing the key serve signs with.
func TestAuditCommandUnit(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte("host_key: host\nhost_ca_key: host_ca\naudit: {log: audit.jsonl, signing_key: audit_ed25519}\n"+
		"users:\n  - {name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILfj/DEnIlmhKCh3rQhfbVOc542yzKRurjYk4vzv2DpH\"], groups: [dev]}\n"+
		"policies: [{groups: [dev], targets: [\"*\"], os_users: [\"*\"]}]\n"), 0o600)
	if code, _, errOut := runCmd(t, "audit", "pubkey", "--config", cfgPath); code != 1 || !strings.Contains(errOut, "serve creates the key at its first start") {
		t.Errorf("pubkey before the key exists: got %d %q", code, errOut)
	}
	key, err := audit.LoadSigningKey(filepath.Join(dir, "audit_ed25519"), true)
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "audit.jsonl")
	l, err := audit.OpenWith(log, audit.Options{SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(audit.Event{Type: audit.TypeConnectionAccepted})
	l.Close()
	code, pub, _ := runCmd(t, "audit", "pubkey", "--config", cfgPath)
	if code != 0 || strings.TrimSpace(pub) != audit.PublicKeyText(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("pubkey: got %d %q", code, pub)
	}
	pubFile := filepath.Join(dir, "audit.pub")
	os.WriteFile(pubFile, []byte(pub), 0o644)
	broken := filepath.Join(dir, "broken.jsonl")
	data, _ := os.ReadFile(log)
	os.WriteFile(broken, []byte(strings.Replace(string(data), "connection_accepted", "connection_closed", 1)), 0o600)
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		out, error string
	}{
		{"no subcommand", []string{"audit"}, 2, "", "missing the audit command"},
		{"unknown subcommand", []string{"audit", "erase"}, 2, "", `unknown audit command "erase"`},
		{"verify without files", []string{"audit", "verify", "--pubkey", pubFile}, 2, "", "give the audit files"},
		{"verify a missing file", []string{"audit", "verify", filepath.Join(dir, "none")}, 1, "", "no such file"},
		{"verify, flags after the file", []string{"audit", "verify", log, "--pubkey", pubFile}, 0, "chain intact", ""},
		{"verify, flags first, key as text", []string{"audit", "verify", "--pubkey", strings.TrimSpace(pub), log}, 0, "with the given key", ""},
		{"verify a bad key", []string{"audit", "verify", log, "--pubkey", "ssh-ed25519 nonsense"}, 1, "", "--pubkey"},
		{"verify a changed log", []string{"audit", "verify", broken, "--pubkey", pubFile}, 1, "FAIL " + broken + ":2: changed", "the audit log does not verify"},
		{"help", []string{"audit", "--help"}, 0, "usage: bastion audit pubkey", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.error) {
				t.Errorf("got %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tc.code, tc.out, tc.error)
			}
		})
	}
}
