package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"bastion/audit/recording"
)

// TestAuditDecryptUnit checks `bastion audit decrypt`: the plaintext to
// stdout or to a new -o file, and one clear line (exit 1) for a wrong
// identity, a file that is not age, a truncated recording and a bad
// identity file.
func TestAuditDecryptUnit(t *testing.T) {
	dir := t.TempDir()
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	idFile, otherFile, badFile := filepath.Join(dir, "auditor.key"), filepath.Join(dir, "other.key"), filepath.Join(dir, "bad.key")
	os.WriteFile(idFile, []byte("# created: now\n# public key: "+id.Recipient().String()+"\n"+id.String()+"\n"), 0o600)
	os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)
	os.WriteFile(badFile, []byte("AGE-SECRET-KEY-1NOTAKEY\n"), 0o600)
	r, err := recording.Create(dir, "s"+recording.EncryptedExt, recording.Header{Start: time.Now()}, recording.WithRecipients(id.Recipient()))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		r.Output([]byte("decrypt-marker " + strings.Repeat("v", 1000)))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	rec := r.Path()
	data, _ := os.ReadFile(rec)
	cut := filepath.Join(dir, "cut"+recording.EncryptedExt)
	os.WriteFile(cut, data[:len(data)-int(r.Bytes()-64<<10+16)], 0o600)
	plainFile := filepath.Join(dir, "plain.cast")
	os.WriteFile(plainFile, []byte(`{"version": 2, "width": 80, "height": 24}`+"\n"), 0o600)

	code, out, errOut := runCmd(t, "audit", "decrypt", "--identity", idFile, rec)
	if code != 0 || int64(len(out)) != r.Bytes() || !strings.HasPrefix(out, `{"version":2`) || !strings.Contains(out, "decrypt-marker") {
		t.Fatalf("decrypt to stdout: got %d, %d bytes, %q; want 0 and the %d-byte asciicast", code, len(out), errOut, r.Bytes())
	}
	outFile := filepath.Join(dir, "out.cast")
	if code, _, errOut := runCmd(t, "audit", "decrypt", rec, "-o", outFile, "--identity", idFile); code != 0 {
		t.Fatalf("decrypt -o: got %d %q", code, errOut)
	}
	if got, _ := os.ReadFile(outFile); string(got) != out {
		t.Errorf("decrypt -o: got %d bytes in the file, want the %d of stdout", len(got), len(out))
	}
	if fi, _ := os.Stat(outFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("decrypt -o: got mode %v, want 0600", fi.Mode().Perm())
	}
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		error string
	}{
		{"no identity", []string{"audit", "decrypt", rec}, 2, "--identity is required"},
		{"no recording", []string{"audit", "decrypt", "--identity", idFile}, 2, "give one recording"},
		{"wrong identity", []string{"audit", "decrypt", "--identity", otherFile, rec}, 1, "no identity in " + otherFile + " is a recipient of this recording"},
		{"not an age file", []string{"audit", "decrypt", "--identity", idFile, plainFile}, 1, plainFile + ": not an age file"},
		{"truncated", []string{"audit", "decrypt", "--identity", idFile, cut}, 1, cut + ": truncated"},
		{"bad identity file", []string{"audit", "decrypt", "--identity", badFile, rec}, 1, "is not an age identity file"},
		{"output exists", []string{"audit", "decrypt", "--identity", idFile, rec, "-o", outFile}, 1, "creating output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.error) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("got %d %q, want %d and one line with %q", code, errOut, tc.code, tc.error)
			}
			if strings.Contains(errOut, "NOTAKEY") {
				t.Errorf("the error echoes the identity file: %q", errOut)
			}
		})
	}
}

// TestCheckConfigRecipientsUnit: check-config and serve refuse a malformed
// audit.recordings_recipients entry with the file, line and key.
func TestCheckConfigRecipientsUnit(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	p := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(p, []byte("listen: 127.0.0.1:0\nhost_key: host_key\nhost_ca_key: host_ca\n"+
		"audit:\n  log: audit.jsonl\n  recordings: rec\n  recordings_recipients:\n    - "+id.Recipient().String()+"\n    - age1notarecipient\n"+
		"users:\n  - {name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILfj/DEnIlmhKCh3rQhfbVOc542yzKRurjYk4vzv2DpH\"], groups: [dev]}\n"+
		"policies: [{groups: [dev], targets: [\"*\"], os_users: [\"*\"]}]\n"), 0o600)
	want := p + `:9: audit.recordings_recipients[1]: "age1notarecipient" is not an age X25519 recipient`
	for _, cmd := range []string{"check-config", "serve"} {
		if code, _, errOut := runCmd(t, cmd, "--config", p); code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("%s: got %d %q, want 1 and %q", cmd, code, errOut, want)
		}
	}
}
