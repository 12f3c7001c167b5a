package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
	"bastion/internal/siminstance"
)

// TestFirstRunSSHConfigTrust follows the README: `bastion ssh-config
// --write` on a laptop's ~/.ssh, then `ssh -J bastion ec2-user@web-1` with
// StrictHostKeyChecking yes and nothing but the written files. The host CA
// is trusted for the bastion's targets and for no other name; a second run
// after an instance is added replaces the line (issue 11, item 7).
func TestFirstRunSSHConfigTrust(t *testing.T) {
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	const id = "i-0f1e2d3c4b5a69788"
	inst, err := siminstance.Start(siminstance.Options{
		Name:      "web-1",
		Authorize: siminstance.AcceptKeys(func(user string) []ssh.PublicKey { return fake.PushedKeys(id, user) }),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	_, port, _ := net.SplitHostPort(inst.Addr())
	fake.AddEC2Instance(awsfake.EC2Instance{ID: id, Region: region, AvailabilityZone: region + "a",
		PrivateIP: "127.0.0.1", PublicIP: "127.0.0.1", Tags: map[string]string{"Name": "web-1"}})
	// Names whoever may tag an instance chooses: none may widen the trust
	// beyond the bastion's own names.
	for i, name := range []string{"github.com", "*", "a,b", "x y"} {
		fake.AddEC2Instance(awsfake.EC2Instance{ID: fmt.Sprintf("i-0bbbbbbbbbbbbbbb%d", i), Region: region, AvailabilityZone: region + "a",
			PrivateIP: "127.0.0.1", Tags: map[string]string{"Name": name}})
	}

	dir := t.TempDir()
	dana := newKey(t, dir, "dana")
	env := awsEnv(fake, fake.SecretAccessKey())
	b := startBastion(t, fmt.Sprintf(`users:
  - {name: dana, keys: [%q], groups: [dev]}
providers:
  ec2: {regions: [%s], port: %s, host_keys: tofu, known_hosts: ec2_known_hosts}
policies:
  - {groups: [dev], targets: ["*"], os_users: [ec2-user]}
`, dana.AuthorizedKey(), region, port), env...)

	sshDir := filepath.Join(dir, "laptop", ".ssh")
	writeConfig := func(t *testing.T) string {
		t.Helper()
		cmd := exec.Command(bastionBin, "ssh-config", "--config", b.Config, "--host", b.Addr, "--user", "dana", "--write", "--ssh-dir", sshDir)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bastion ssh-config --write: %v\n%s", err, out)
		}
		return string(out)
	}
	writeConfig(t)
	cfgPath := filepath.Join(sshDir, "config")
	known := filepath.Join(sshDir, "known_hosts")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// What a person has anyway: their key, and strict checking. Nothing
	// else of the test's own set-up.
	writeFile(t, cfgPath, string(data)+fmt.Sprintf("Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
		dana.Private, known), 0o600)
	laptop := func(args ...string) (string, error) {
		out, err := exec.Command("ssh", append([]string{"-F", cfgPath}, args...)...).CombinedOutput()
		return string(out), err
	}

	kh, err := os.ReadFile(known)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(kh), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "@cert-authority" {
			for _, name := range strings.Split(f[1], ",") {
				if name != "*.lightsail" && name != "*.ec2" && name != "*.static" && name != "*.serial" && strings.ContainsAny(name, "*., ") {
					t.Errorf("the @cert-authority line trusts %q: %s", name, l)
				}
			}
		}
	}
	for _, args := range [][]string{
		{"-J", "bastion", "ec2-user@web-1"},     // the README's headline
		{"-J", "bastion", "ec2-user@" + id},     // by instance id
		{"ec2-user@web-1.ec2"},                  // the stanza's ProxyJump
		{"-J", "bastion", "ec2-user@web-1.ec2"}, // suffix pattern
	} {
		if out, err := laptop(append(args, "echo trusted-$BASTION_DEMO_INSTANCE")...); err != nil || !strings.Contains(out, "trusted-web-1") {
			t.Errorf("ssh %v: got %v %q, want the instance's echo", args, err, out)
		}
	}

	// A host that is not a target, presenting a certificate from the
	// bastion's own host CA, is not trusted; the same certificate is for
	// a name that is.
	certDir := t.TempDir()
	hk := newKey(t, certDir, "other_host")
	if out, err := exec.Command("ssh-keygen", "-q", "-s", filepath.Join(b.Dir, "host_ca_ed25519"), "-I", "other", "-h",
		"-n", "not-a-target,web-1", hk.Public).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
	}
	other := startSSHD(t, sshdOptions{
		AuthorizedKeys: []string{dana.AuthorizedKey()},
		Extra:          []string{"HostKey " + hk.Private, "HostCertificate " + filepath.Join(certDir, "other_host-cert.pub")},
	})
	host, oport, _ := net.SplitHostPort(other.Addr)
	me := currentUser(t)
	out, err := laptop("-o", "HostKeyAlias=not-a-target", "-p", oport, me+"@"+host, "true")
	if err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Errorf("a non-target name with a bastion-CA certificate: got %v %q, want Host key verification failed", err, out)
	}
	if out, err := laptop("-o", "HostKeyAlias=web-1", "-p", oport, me+"@"+host, "true"); err != nil {
		t.Errorf("control, the same certificate as web-1: got %v %q, want it trusted", err, out)
	}

	// A new instance: a second run replaces the CA line, so one line
	// trusts both names.
	fake.AddEC2Instance(awsfake.EC2Instance{ID: "i-0aaaaaaaaaaaaaaa1", Region: region, AvailabilityZone: region + "a",
		PrivateIP: "127.0.0.1", PublicIP: "127.0.0.1", Tags: map[string]string{"Name": "web-9"}})
	writeConfig(t)
	kh, err = os.ReadFile(known)
	if err != nil {
		t.Fatal(err)
	}
	var caLines []string
	for _, l := range strings.Split(string(kh), "\n") {
		if strings.HasPrefix(l, "@cert-authority ") {
			caLines = append(caLines, l)
		}
	}
	if len(caLines) != 1 || !strings.Contains(caLines[0], ",web-9,") && !strings.Contains(caLines[0], ",web-9 ") {
		t.Errorf("known_hosts after a second run: got CA lines %q, want one that names web-9", caLines)
	}
	if n := strings.Count(string(kh), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(b.HostKey)))); n != 1 {
		t.Errorf("known_hosts after a second run has the bastion's host key %d times, want 1", n)
	}
}
