package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bastion/internal/awsfake"
)

// TestHostKeysFromAWS runs a bastion whose host key is an SSM parameter and
// whose host CA is a Secrets Manager secret, as replicas of a fleet would:
// the keys are fetched at start (real SDK clients against the fake), people
// reach a target with StrictHostKeyChecking against them, ssh-config prints
// them, and nothing is written to disk.
func TestHostKeysFromAWS(t *testing.T) {
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	keys := t.TempDir()
	hostKey, hostCA := newKey(t, keys, "host_ed25519"), newKey(t, keys, "host_ca_ed25519")
	for path, put := range map[string]func(string){
		hostKey.Private: func(v string) { fake.PutParameter("/bastion/host_ed25519", v) },
		hostCA.Private:  func(v string) { fake.PutSecret("bastion/host_ca", v) },
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		put(string(data))
	}

	dir := t.TempDir()
	me := currentUser(t)
	upKey := newKey(t, dir, "upstream_key")
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}})
	person := newKey(t, dir, "erin")
	state := t.TempDir()
	cfg := filepath.Join(state, "config.yaml")
	writeFile(t, cfg, fmt.Sprintf(`listen: 127.0.0.1:0
host_key: ssm:/bastion/host_ed25519
host_ca_key: secretsmanager:bastion/host_ca
audit: {log: audit.jsonl}
users:
  - {name: erin, keys: [%q], groups: [dev]}
providers:
  static:
    - {name: web-1, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
`, person.AuthorizedKey(), up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey()), 0o600)
	env := append(os.Environ(), awsEnv(fake, fake.SecretAccessKey())...)
	env = append(env, "AWS_ENDPOINT_URL_SSM="+fake.URL(), "AWS_ENDPOINT_URL_SECRETS_MANAGER="+fake.URL())
	cmd := exec.Command(bastionBin, "serve", "--config", cfg)
	cmd.Env = env
	b := &bastionProc{Dir: state, Config: cfg, AuditPath: filepath.Join(state, "audit.jsonl"),
		HostKey: hostKey.Signer.PublicKey(), HostCA: hostCA.Signer.PublicKey(), proc: startProcess(t, cmd)}
	waitFor(t, "bastion to listen", 30*time.Second, func() bool {
		m := listeningRE.FindStringSubmatch(b.proc.out.String())
		if m != nil {
			b.Addr = m[1]
		}
		return m != nil
	})

	c := newClient(t, b, "erin", person)
	if r := c.ssh(t, nil, "-J", "bastion", me+"@web-1", "echo keys-from-aws"); r.Code != 0 || r.Stdout != "keys-from-aws\n" {
		t.Fatalf("ssh with the fetched keys trusted: got exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"GetParameter", "GetSecretValue"} {
		if fake.CallCount(want) != 1 {
			t.Errorf("%s calls at start: got %d, want 1", want, fake.CallCount(want))
		}
	}
	sc := exec.Command(bastionBin, "ssh-config", "--config", cfg, "--host", "127.0.0.1")
	sc.Env = env
	out, err := sc.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "@cert-authority") || !strings.Contains(string(out), strings.Fields(hostCA.AuthorizedKey())[1]) {
		t.Errorf("ssh-config: got %v\n%s\nwant the CA from Secrets Manager", err, out)
	}
	for _, name := range []string{"host_ed25519", "host_ca_ed25519", "ssm:", "secretsmanager:"} {
		if m, _ := filepath.Glob(filepath.Join(state, name+"*")); len(m) > 0 {
			t.Errorf("key written to disk: %v", m)
		}
	}
}
