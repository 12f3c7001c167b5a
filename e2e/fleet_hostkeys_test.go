package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"bastion/internal/testkit"
)

// TestFleetHostKeysTOFU runs bastion replicas that share one fleet table on
// dynalite (a real DynamoDB implementation, through the real SDK client)
// in front of the AWS fake's EC2 instance: the first host key any replica
// learns wins fleet-wide; a replica that meets another key for the same
// instance refuses it, also after both restart; with the table gone, a key
// a replica confirmed before still works and an unconfirmed one is refused
// with one line.
func TestFleetHostKeysTOFU(t *testing.T) {
	w := newAWSWorld(t)
	d := testkit.StartDynalite(t)
	env := append(awsEnv(w.fake, w.fake.SecretAccessKey()), "AWS_ENDPOINT_URL_DYNAMODB="+d.URL)
	// An impostor answers for the same instance id on another port: what a
	// replica would meet if the instance's address were taken over.
	impostor := startSSHD(t, sshdOptions{})
	_, realPort, _ := strings.Cut(w.ec2.Addr, ":")
	_, fakePort, _ := strings.Cut(impostor.Addr, ":")
	replica := func(name, port string) string {
		cfg := strings.Replace(w.bastionF, "port: "+realPort+", host_keys: tofu", "port: "+port+", host_keys: tofu", 1)
		if !strings.Contains(cfg, "port: "+port+", host_keys: tofu") {
			t.Fatalf("the AWS world's config has no ec2 port %s to replace:\n%s", realPort, w.bastionF)
		}
		return cfg + fmt.Sprintf("fleet: {dynamodb_table: bastion-fleet, replica: %s}\n", name)
	}

	// bastion fleet init creates the table, and is idempotent.
	initDir := t.TempDir()
	initCfg := filepath.Join(initDir, "config.yaml")
	writeFile(t, initCfg, "listen: 127.0.0.1:0\nhost_key: host_ed25519\nhost_ca_key: host_ca_ed25519\n"+replica("init", realPort), 0o600)
	for i, want := range []string{"created table bastion-fleet", "table bastion-fleet exists and is active"} {
		cmd := exec.Command(bastionBin, "fleet", "init", "--config", initCfg)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("fleet init #%d: %v\n%s\nwant %q", i+1, err, out, want)
		}
	}

	aDir, bDir := t.TempDir(), t.TempDir()
	run := func(b *bastionProc, want string) result {
		t.Helper()
		c := newClient(t, b, "dana", w.person)
		r := c.ssh(t, nil, append(dest("jump", w.me, "api-1"), "echo fleet-ok")...)
		if want == "" && (r.Code != 0 || r.Stdout != "fleet-ok\n") {
			t.Fatalf("%s: exit %d %q, stderr %s", b.Dir, r.Code, r.Stdout, r.Stderr)
		}
		if want != "" && (r.Code == 0 || !strings.Contains(r.Stderr, want)) {
			t.Fatalf("%s: exit %d, stderr %q; want %q", b.Dir, r.Code, r.Stderr, want)
		}
		return r
	}
	const mismatch = "differs from the one the bastion's fleet recorded"

	a := startBastionIn(t, aDir, replica("a", realPort), env...)
	run(a, "")
	b := startBastionIn(t, bDir, replica("b", fakePort), env...)
	run(b, mismatch)
	if !auditLineHas(b.AuditLines(t), `"type":"host_key_mismatch"`) {
		t.Errorf("replica b wrote no host_key_mismatch event")
	}

	// Both restart: b still refuses the impostor, a still knows the key.
	a.proc.Stop()
	b.proc.Stop()
	a = startBastionIn(t, aDir, replica("a", realPort), env...)
	b = startBastionIn(t, bDir, replica("b", fakePort), env...)
	run(b, mismatch)
	run(a, "")

	// The table goes away: a's confirmed key still works from its cache; a
	// replica that never confirmed it refuses, in one line, without a hang.
	d.Stop()
	run(a, "")
	c := startBastionIn(t, t.TempDir(), replica("c", realPort), env...)
	run(c, "the fleet store is unreachable and this host key was not confirmed before")
}
