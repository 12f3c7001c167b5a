package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestHostileTOFUHostKeyLearnedFingerprint: the first connection to an
// EC2 instance writes a host_key_learned event whose host_key_fingerprint
// (the field the schema names for an upstream host key, as in
// host_key_verified) is the instance's host key's fingerprint.
func TestHostileTOFUHostKeyLearnedFingerprint(t *testing.T) {
	w := newAWSWorld(t)
	if r := w.client.ssh(t, nil, "-J", "bastion", w.me+"@api-1.ec2", "echo learned"); r.Code != 0 || r.Stdout != "learned\n" {
		t.Fatalf("first connection to api-1.ec2: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	want := ssh.FingerprintSHA256(w.ec2.HostKey.Signer.PublicKey())
	var ev map[string]any
	waitFor(t, "a host_key_learned event", 30*time.Second, func() bool {
		for _, line := range w.bastion.AuditLines(t) {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["type"] == "host_key_learned" {
				ev = e
				return true
			}
		}
		return false
	})
	if got := ev["host_key_fingerprint"]; got != want {
		t.Errorf("host_key_learned host_key_fingerprint: got %v, want %s (event %v)", got, want, ev)
	}
	if got := ev["instance_id"]; got != instanceID {
		t.Errorf("host_key_learned instance_id: got %v, want %s", got, instanceID)
	}
	if got := ev["host_key_source"]; got != "tofu" {
		t.Errorf("host_key_learned host_key_source: got %v, want tofu", got)
	}
}
