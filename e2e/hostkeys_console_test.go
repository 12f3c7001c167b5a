package e2e

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
)

// consoleBlock is what cloud-init prints on an instance's console for its
// host keys, amid other boot output.
func consoleBlock(keys ...ssh.PublicKey) string {
	var b strings.Builder
	b.WriteString("[    0.000000] Linux version 6.1\n[  OK  ] Started cloud-init.\n")
	b.WriteString("-----BEGIN SSH HOST KEY KEYS-----\n")
	for _, k := range keys {
		b.WriteString(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " root@ip-127-0-0-1\n")
	}
	b.WriteString("-----END SSH HOST KEY KEYS-----\n")
	b.WriteString("Amazon Linux 2023\nip-127-0-0-1 login: ")
	return b.String()
}

// TestHostKeysConsole runs bastions with providers.ec2.host_keys: console
// against the AWS fake's GetConsoleOutput and a real sshd as the instance:
// the key its console printed is accepted before any first use; a console
// that shows another key is refused before a key is pushed; a console
// without the block is refused, or trusted on first use with
// host_keys_fallback: tofu.
func TestHostKeysConsole(t *testing.T) {
	w := newAWSWorld(t)
	real := w.ec2.HostKey.Signer.PublicKey()
	other := newKey(t, t.TempDir(), "not_the_host_key").Signer.PublicKey()
	setConsole := func(out string) {
		w.fake.AddEC2Instance(awsfake.EC2Instance{ID: instanceID, Region: region, AvailabilityZone: region + "a",
			PrivateIP: "127.0.0.1", PublicIP: "127.0.0.1", Tags: map[string]string{"Name": "api-1", "env": "staging"},
			ConsoleOutput: out})
	}
	consoleBastion := func(t *testing.T, fallback string) (*bastionProc, *client) {
		cfg := strings.Replace(w.bastionF, "host_keys: tofu,", "host_keys: console,"+fallback, 1)
		if cfg == w.bastionF {
			t.Fatal("the AWS world's config has no host_keys: tofu to replace")
		}
		b := startBastion(t, cfg, awsEnv(w.fake, w.fake.SecretAccessKey())...)
		return b, newClient(t, b, "dana", w.person)
	}
	pushes := func() int { return len(w.fake.PushedKeys(instanceID, w.me)) }

	t.Run("printed key accepted", func(t *testing.T) {
		setConsole(consoleBlock(other, real))
		b, c := consoleBastion(t, "")
		for _, mode := range modes {
			r := c.ssh(t, nil, append(dest(mode, w.me, "api-1"), "echo console-ok")...)
			if r.Code != 0 || r.Stdout != "console-ok\n" {
				t.Fatalf("%s: exit %d %q, stderr %s", mode, r.Code, r.Stdout, r.Stderr)
			}
		}
		if !auditLineHas(b.AuditLines(t), `"type":"host_key_verified"`, `"host_key_source":"console"`) {
			t.Errorf("no host_key_verified event with source console:\n%s", strings.Join(b.AuditLines(t), "\n"))
		}
	})
	t.Run("other key refused", func(t *testing.T) {
		setConsole(consoleBlock(other))
		b, c := consoleBastion(t, "")
		r := c.ssh(t, nil, append(dest("jump", w.me, "api-1"), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "does not match the one this EC2 instance printed on its console") {
			t.Errorf("exit %d, stderr %q; want the console mismatch", r.Code, r.Stderr)
		}
		if !auditLineHas(b.AuditLines(t), `"type":"host_key_mismatch"`) {
			t.Errorf("no host_key_mismatch event:\n%s", strings.Join(b.AuditLines(t), "\n"))
		}
	})
	t.Run("no block refused before a key is pushed", func(t *testing.T) {
		setConsole("[    0.000000] Linux version 6.1\nlogin: ")
		before := pushes()
		_, c := consoleBastion(t, "")
		r := c.ssh(t, nil, append(dest("direct", w.me, "api-1"), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "printed no SSH host keys on its console") {
			t.Errorf("exit %d, stderr %q; want the missing block", r.Code, r.Stderr)
		}
		if n := pushes(); n != before {
			t.Errorf("%d keys pushed to an instance whose host key cannot be verified", n-before)
		}
	})
	t.Run("no block, tofu fallback", func(t *testing.T) {
		setConsole("")
		_, c := consoleBastion(t, " host_keys_fallback: tofu,")
		r := c.ssh(t, nil, append(dest("jump", w.me, "api-1"), "echo fallback-ok")...)
		if r.Code != 0 || r.Stdout != "fallback-ok\n" {
			t.Errorf("exit %d %q, stderr %s", r.Code, r.Stdout, r.Stderr)
		}
	})
}

// auditLineHas reports whether one audit line holds every one of parts.
func auditLineHas(lines []string, parts ...string) bool {
	for _, l := range lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}
