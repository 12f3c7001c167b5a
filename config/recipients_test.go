package config

import (
	"strings"
	"testing"

	"filippo.io/age"
)

// TestRecordingsRecipientsUnit checks audit.recordings_recipients: good
// recipients parse, bad ones fail naming the file, line and index, and a
// pasted secret key is refused without being echoed.
func TestRecordingsRecipientsUnit(t *testing.T) {
	const base = "host_key: /k/host\nhost_ca_key: /k/ca\nusers: [{name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByJ4Ir0VYQnZNuz9Y8IxP0+DXNPTFOpt0ZFepP1JDen a\"], groups: [g]}]\npolicies: []\n"
	id1, _ := age.GenerateX25519Identity()
	id2, _ := age.GenerateX25519Identity()
	cfg, err := ParseWith([]byte(base+"audit:\n  recordings: rec\n  recordings_recipients:\n    - "+id1.Recipient().String()+"\n    - "+id2.Recipient().String()+"\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := cfg.Audit.RecordingRecipients(); err != nil || len(rs) != 2 {
		t.Errorf("got %d recipients, %v; want 2, nil", len(rs), err)
	}
	secret := id1.String()
	for _, tc := range []struct{ name, yaml, want string }{
		{"malformed", "audit:\n  recordings: rec\n  recordings_recipients:\n    - " + id1.Recipient().String() + "\n    - age1nope\n",
			`config.yaml:9: audit.recordings_recipients[1]: "age1nope" is not an age X25519 recipient`},
		{"ssh key", "audit:\n  recordings: rec\n  recordings_recipients: [\"ssh-ed25519 AAAA\"]\n",
			`config.yaml:7: audit.recordings_recipients[0]: "ssh-ed25519 AAAA" is not an age X25519 recipient`},
		{"secret key", "audit:\n  recordings: rec\n  recordings_recipients:\n    - " + secret + "\n",
			"config.yaml:8: audit.recordings_recipients[0]: is an age identity (a secret key), not a recipient"},
		{"no recordings folder", "audit:\n  recordings_recipients: [" + id1.Recipient().String() + "]\n",
			"config.yaml:6: audit.recordings_recipients: needs audit.recordings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWith([]byte(base+tc.yaml), "/etc/bastion/config.yaml", Options{SkipFiles: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secret[15:]) {
				t.Errorf("the error echoes the secret key: %v", err)
			}
		})
	}
}
