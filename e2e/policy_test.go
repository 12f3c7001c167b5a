package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestPolicyMatrix drives each kind of policy decision through the real
// OpenSSH client: what is allowed works, and each refusal's reason reaches
// the person's stderr and the audit log.
func TestPolicyMatrix(t *testing.T) {
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	aliceKey := newKey(t, dir, "alice")
	web := httpServer(t, "page")
	static := func(name string) string {
		return fmt.Sprintf("    - {name: %s, address: %q, user: %s, private_key: %q, host_key: %q}\n", name, up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey())
	}
	b := startBastion(t, fmt.Sprintf(`users:
  - {name: alice, keys: [%q], groups: [dev]}
providers:
  static:
%s%s%s
policies:
  - {groups: [dev], targets: ["web-1"], os_users: [%s], deny: [sftp], allow: [port_forwarding], forward_to: ["127.0.0.1:1"]}
  - {groups: [dev], targets: ["web-2"], os_users: [%s], deny: [shell]}
`, aliceKey.AuthorizedKey(), static("web-1"), static("web-2"), static("db-1"), me, me))
	alice := newClient(t, b, "alice", aliceKey)

	tests := []struct {
		name string
		run  func() result
		// wantOut is expected on stdout of an allowed action; wantErr
		// on stderr (and in the audit log) for a refusal.
		wantOut, wantErr string
	}{
		{name: "allowed shell", run: func() result {
			return alice.ssh(t, []byte("echo shell-$((40+2))\n"), "-J", "bastion", me+"@web-1")
		}, wantOut: "shell-42"},
		{name: "denied target", run: func() result {
			return alice.ssh(t, nil, "-J", "bastion", me+"@db-1", "true")
		}, wantErr: "no policy lets alice reach db-1"},
		{name: "denied os user", run: func() result {
			return alice.ssh(t, nil, "-J", "bastion", "nobody@web-1", "true")
		}, wantErr: "no policy lets alice log in to web-1 as nobody"},
		{name: "exec allowed where shell is denied", run: func() result {
			return alice.ssh(t, nil, "-J", "bastion", me+"@web-2", "echo exec-ok")
		}, wantOut: "exec-ok"},
		{name: "shell denied", run: func() result {
			return alice.ssh(t, []byte("echo nope\n"), "-J", "bastion", me+"@web-2")
		}, wantErr: "no policy lets alice use shell on web-2"},
		{name: "sftp denied where shell is allowed", run: func() result {
			return alice.run(t, []byte("ls\n"), "sftp", "-b", "-", "-J", "bastion", me+"@web-1")
		}, wantErr: "no policy lets alice use sftp on web-1"},
		{name: "forward outside allowed destinations", run: func() result {
			return alice.ssh(t, nil, "-J", "bastion", "-W", web, me+"@web-1")
		}, wantErr: "no policy lets alice use port forwarding to " + web + " on web-1"},
		{name: "agent forwarding denied", run: func() result {
			sock, _ := startAgent(t)
			alice.env = []string{"SSH_AUTH_SOCK=" + sock}
			defer func() { alice.env = nil }()
			return alice.ssh(t, nil, "-A", "-J", "bastion", me+"@web-1", "ssh-add -l")
		}, wantErr: "no policy lets alice use agent forwarding on web-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.run()
			if tc.wantOut != "" {
				if r.Code != 0 || !strings.Contains(r.Stdout, tc.wantOut) {
					t.Fatalf("got exit %d stdout %q stderr %q; want 0 and %q", r.Code, r.Stdout, r.Stderr, tc.wantOut)
				}
				return
			}
			if !strings.Contains(r.Stderr, tc.wantErr) {
				t.Errorf("stderr: got %q, want %q", r.Stderr, tc.wantErr)
			}
			if !auditHas(t, b, "policy_denied", tc.wantErr) {
				t.Errorf("audit log: no policy_denied event with reason %q", tc.wantErr)
			}
		})
	}
}

// auditHas reports whether the audit log has an event of type typ whose
// line contains text.
func auditHas(t *testing.T, b *bastionProc, typ, text string) bool {
	t.Helper()
	for _, line := range b.AuditLines(t) {
		if strings.Contains(line, `"type":"`+typ+`"`) && strings.Contains(line, text) {
			return true
		}
	}
	return false
}

// startAgent runs an ssh-agent holding one key and returns its socket and
// the key's fingerprint.
func startAgent(t *testing.T) (sock, fingerprint string) {
	t.Helper()
	dir := t.TempDir()
	sock = filepath.Join(dir, "agent.sock")
	startProcess(t, exec.Command("ssh-agent", "-D", "-a", sock))
	waitFor(t, "ssh-agent socket", 10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })
	key := newKey(t, dir, "agent_key")
	add := exec.Command("ssh-add", key.Private)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	return sock, ssh.FingerprintSHA256(key.Signer.PublicKey())
}

// TestUserCertificates logs in with OpenSSH user certificates made by
// ssh-keygen: a valid one is accepted, expired, wrong-principal and
// wrong-CA ones are refused, and force-command replaces what is asked.
func TestUserCertificates(t *testing.T) {
	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	ca := newKey(t, dir, "user_ca")
	otherCA := newKey(t, dir, "other_ca")
	b := startBastion(t, fmt.Sprintf(`users:
  - {name: carol, groups: [dev]}
trusted_user_ca_keys: [%q]
providers:
  static:
    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
`, ca.AuthorizedKey(), up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey()))

	// cert signs a new key for carol's laptop; ssh finds NAME-cert.pub
	// next to NAME by itself.
	cert := func(name string, signer keypair, args ...string) *client {
		key := newKey(t, dir, name)
		all := append([]string{"-q", "-s", signer.Private, "-I", name}, args...)
		if out, err := exec.Command("ssh-keygen", append(all, key.Private+".pub")...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
		}
		return newClient(t, b, "carol", key)
	}
	tests := []struct {
		name    string
		c       *client
		wantOut string
		reason  string // auth_failure reason when refused
	}{
		{"valid", cert("valid", ca, "-n", "carol", "-V", "-5m:+1h"), "asked", ""},
		{"expired", cert("expired", ca, "-n", "carol", "-V", "20200101:20200102"), "", "bad_certificate"},
		{"wrong principal", cert("principal", ca, "-n", "mallory", "-V", "-5m:+1h"), "", "unknown_key"},
		{"wrong ca", cert("wrongca", otherCA, "-n", "carol", "-V", "-5m:+1h"), "", "bad_certificate"},
		{"force-command", cert("forced", ca, "-n", "carol", "-V", "-5m:+1h", "-O", "force-command=echo forced"), "forced", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.c.ssh(t, nil, "-J", "bastion", me+"@web-1", "echo asked")
			if tc.wantOut != "" {
				if r.Code != 0 || strings.TrimSpace(r.Stdout) != tc.wantOut {
					t.Fatalf("got exit %d stdout %q stderr %q; want %q", r.Code, r.Stdout, r.Stderr, tc.wantOut)
				}
				return
			}
			if r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
				t.Errorf("got exit %d stderr %q, want Permission denied", r.Code, r.Stderr)
			}
			if !auditHas(t, b, "auth_failure", `"reason":"`+tc.reason+`"`) {
				t.Errorf("audit log: no auth_failure with reason %s", tc.reason)
			}
		})
	}
	// The instance ran the forced command, told what was asked as sshd
	// tells it.
	if !auditHas(t, b, "session_start", `"command":"SSH_ORIGINAL_COMMAND='echo asked'; export SSH_ORIGINAL_COMMAND; echo forced"`) {
		t.Error("audit log: the forced command's session_start is missing")
	}
	if !auditHas(t, b, "auth_success", `"cert_key_id":"forced"`) {
		t.Error("audit log: no auth_success naming the certificate")
	}
}
