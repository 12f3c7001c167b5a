package config

import (
	"os"
	"strings"
	"testing"
)

// TestAuditChainKeysUnit checks the keys of the audit chain and of
// policy recording: defaults, relative paths, and errors that name the key
// and line.
func TestAuditChainKeysUnit(t *testing.T) {
	const base = "host_key: /k/host\nhost_ca_key: /k/ca\nusers: [{name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByJ4Ir0VYQnZNuz9Y8IxP0+DXNPTFOpt0ZFepP1JDen a\"], groups: [g]}]\n"
	cfg, err := ParseWith([]byte(base+"audit:\n  recordings: rec\n  signing_key: audit_ed25519\npolicies: [{groups: [g], targets: [\"*\"], os_users: [\"*\"], record: [pty, exec]}]\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Audit.CheckpointInterval.D() != DefaultCheckpointInterval || cfg.Audit.SigningKey != "/etc/bastion/audit_ed25519" {
		t.Errorf("got checkpoint_interval %s, signing_key %q; want 1m, /etc/bastion/audit_ed25519", cfg.Audit.CheckpointInterval, cfg.Audit.SigningKey)
	}
	loose := t.TempDir() + "/audit_ed25519"
	os.WriteFile(loose, []byte("not a key"), 0o644)
	if _, err := ParseWith([]byte(base+"audit:\n  signing_key: "+loose+"\npolicies: []\n"), "/etc/bastion/config.yaml", Options{}); err == nil || !strings.Contains(err.Error(), "audit.signing_key") {
		t.Errorf("signing key readable by others: got %v, want an error naming audit.signing_key", err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"short interval", "audit:\n  checkpoint_interval: 10ms\npolicies: []\n", "config.yaml:5: audit.checkpoint_interval: 10ms is too short"},
		{"unknown record kind", "audit:\n  recordings: rec\npolicies: [{groups: [g], targets: [\"*\"], os_users: [\"*\"], record: [sftp]}]\n", `policies[0].record[0]: "sftp" is neither "pty" nor "exec"`},
		{"record without recordings", "policies: [{groups: [g], targets: [\"*\"], os_users: [\"*\"], record: [exec]}]\n", "policies[0].record: needs audit.recordings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWith([]byte(base+tc.yaml), "/etc/bastion/config.yaml", Options{SkipFiles: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
