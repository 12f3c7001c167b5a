package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
)

const (
	region     = "us-east-1"
	instanceID = "i-0123456789abcdef0"
)

// fakeClock is the AWS fake's clock; tests move it forward.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// awsWorld is the AWS fixture: the fake, a Lightsail-like sshd (trusts the
// fake's CA) and an EC2-like sshd (asks the fake for the keys pushed to it),
// and a bastion pointed at the fake through the standard endpoint variables.
type awsWorld struct {
	fake     *awsfake.Server
	clock    *fakeClock
	ls, ec2  *sshd
	eicKeys  string
	me       string
	person   keypair
	bastion  *bastionProc
	client   *client
	bastionF string // config body, for extra bastions
}

// safeBinDir returns a folder for sshd's AuthorizedKeysCommand: sshd wants
// every folder on its path owned by root or the user and writable by no one
// else, which /tmp is not.
func safeBinDir(t *testing.T) string {
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "bastion-e2e", fmt.Sprintf("bin-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o022 != 0 {
			if err := os.Chmod(d, st.Mode().Perm()&^0o022); err != nil {
				t.Fatalf("AuthorizedKeysCommand folder %s is group/world-writable and cannot be fixed: %v", d, err)
			}
		}
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func awsEnv(fake *awsfake.Server, secret string) []string {
	return []string{
		"AWS_ENDPOINT_URL_LIGHTSAIL=" + fake.URL(),
		"AWS_ENDPOINT_URL_EC2=" + fake.URL(),
		"AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT=" + fake.URL(),
		"AWS_ACCESS_KEY_ID=" + fake.AccessKeyID(),
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_REGION=" + region,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

func newAWSWorld(t *testing.T) *awsWorld {
	w := &awsWorld{clock: &fakeClock{}, me: currentUser(t)}
	fake, err := awsfake.Start(awsfake.Options{Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	w.fake = fake
	dir := t.TempDir()

	// Lightsail-like instance: OpenSSH trusting the Lightsail CA.
	caFile := filepath.Join(dir, "lightsail_ca.pub")
	writeFile(t, caFile, string(ssh.MarshalAuthorizedKey(fake.LightsailCA())), 0o644)
	w.ls = startSSHD(t, sshdOptions{Extra: []string{"TrustedUserCAKeys " + caFile}})
	_, lsPort, _ := net.SplitHostPort(w.ls.Addr)
	other := newKey(t, dir, "not_the_host_key")
	for _, name := range []string{"web-ls", "burst", "throttled", "broken", "denied", "hangs"} {
		fake.AddLightsailInstance(awsfake.LightsailInstance{Name: name, Region: region, Username: w.me,
			PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1", HostKeys: []ssh.PublicKey{w.ls.HostKey.Signer.PublicKey()}})
	}
	fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "impostor-ls", Region: region, Username: w.me,
		PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1", HostKeys: []ssh.PublicKey{other.Signer.PublicKey()}})

	// EC2-like instance: OpenSSH asking the fake for pushed keys, as EC2
	// Instance Connect's AuthorizedKeysCommand asks the instance metadata.
	bin := safeBinDir(t)
	w.eicKeys = filepath.Join(bin, "eic-keys")
	if out, err := exec.Command("go", "build", "-o", w.eicKeys, "bastion/internal/awsfake/cmd/eic-keys").CombinedOutput(); err != nil {
		t.Fatalf("building eic-keys: %v\n%s", err, out)
	}
	w.ec2 = startSSHD(t, sshdOptions{Extra: []string{
		fmt.Sprintf("AuthorizedKeysCommand %s %s %s %%u", w.eicKeys, fake.URL(), instanceID),
		"AuthorizedKeysCommandUser " + w.me,
	}})
	_, ec2Port, _ := net.SplitHostPort(w.ec2.Addr)
	fake.AddEC2Instance(awsfake.EC2Instance{ID: instanceID, Region: region, AvailabilityZone: region + "a",
		PrivateIP: "127.0.0.1", PublicIP: "127.0.0.1", Tags: map[string]string{"Name": "api-1", "env": "staging"}})
	for _, id := range []string{"i-00000000000000001", "i-00000000000000002"} {
		fake.AddEC2Instance(awsfake.EC2Instance{ID: id, Region: region, AvailabilityZone: region + "b",
			PrivateIP: "127.0.0.2", Tags: map[string]string{"Name": "twin"}})
	}

	w.person = newKey(t, dir, "dana")
	w.bastionF = fmt.Sprintf(`users:
  - {name: dana, keys: [%q], groups: [dev]}
providers:
  lightsail: {regions: [%s], port: %s, resolve_cache: 30s}
  ec2: {regions: [%s], port: %s, host_keys: tofu, known_hosts: ec2_known_hosts}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
limits: {aws_timeout: 5s, handshake_timeout: 5s}
admin_listen: 127.0.0.1:0
`, w.person.AuthorizedKey(), region, lsPort, region, ec2Port)
	w.bastion = startBastion(t, w.bastionF, awsEnv(fake, fake.SecretAccessKey())...)
	w.client = newClient(t, w.bastion, "dana", w.person)
	return w
}

func TestAWS(t *testing.T) {
	w := newAWSWorld(t)
	for _, mode := range modes {
		t.Run("Lightsail/"+mode, func(t *testing.T) {
			r := w.client.ssh(t, nil, append(dest(mode, w.me, "web-ls"), "echo lightsail-ok")...)
			if r.Code != 0 || r.Stdout != "lightsail-ok\n" {
				t.Fatalf("got exit %d %q, want lightsail-ok; stderr %s", r.Code, r.Stdout, r.Stderr)
			}
		})
		t.Run("EC2/"+mode, func(t *testing.T) {
			before := len(w.fake.PushedKeys(instanceID, w.me))
			for _, name := range []string{"api-1", instanceID, "api-1.ec2", "api-1." + region + ".ec2"} {
				r := w.client.ssh(t, nil, append(dest(mode, w.me, name), "echo ec2-ok")...)
				if r.Code != 0 || r.Stdout != "ec2-ok\n" {
					t.Fatalf("%s: got exit %d %q, want ec2-ok; stderr %s", name, r.Code, r.Stdout, r.Stderr)
				}
			}
			if got := len(w.fake.PushedKeys(instanceID, w.me)) - before; got != 4 {
				t.Errorf("keys pushed for 4 connections: got %d, want 4 distinct ones", got)
			}
		})
	}
	t.Run("WrongOSUser", func(t *testing.T) {
		r := w.client.ssh(t, nil, append(dest("jump", "ubuntu", "web-ls"), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "admits only "+w.me) {
			t.Errorf("got exit %d stderr %q, want the user refused", r.Code, r.Stderr)
		}
	})
	t.Run("HostKeyNotInHostKeys", func(t *testing.T) {
		r := w.client.ssh(t, nil, append(dest("jump", w.me, "impostor-ls"), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "bastion: impostor-ls: upstream host key does not match") {
			t.Errorf("got exit %d stderr %q, want a host key refusal", r.Code, r.Stderr)
		}
	})
	t.Run("Ambiguous", func(t *testing.T) {
		r := w.client.ssh(t, nil, append(dest("jump", w.me, "twin"), "true")...)
		want := "twin is ambiguous, type one of: twin." + region + ".ec2"
		if r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("got exit %d stderr %q, want %q", r.Code, r.Stderr, want)
		}
	})
	t.Run("CredentialCache", func(t *testing.T) {
		calls := func() int { return w.fake.CallCount("GetInstanceAccessDetails") }
		start := calls()
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := w.client.ssh(t, nil, append(dest("jump", w.me, "burst"), "true")...)
				if r.Code != 0 {
					t.Errorf("concurrent connection: exit %d: %s", r.Code, r.Stderr)
				}
			}()
		}
		wg.Wait()
		if got := calls() - start; got != 1 {
			t.Errorf("ten concurrent first connections: got %d GetInstanceAccessDetails calls, want 1", got)
		}
		r := w.client.ssh(t, nil, append(dest("direct", w.me, "burst"), "true")...)
		if r.Code != 0 {
			t.Fatalf("cached connection: exit %d: %s", r.Code, r.Stderr)
		}
		if got := calls() - start; got != 1 {
			t.Errorf("a connection within the cache window: got %d calls in all, want still 1", got)
		}
	})
	t.Run("Faults", func(t *testing.T) {
		const op = "GetInstanceAccessDetails"
		tests := []struct {
			target string
			fault  awsfake.Fault
			want   string // "" means the connection succeeds
		}{
			{"throttled", awsfake.Fault{ThrottleFirst: 2}, ""},
			{"broken", awsfake.Fault{ServerErrorFirst: 10}, "bastion: broken: Lightsail GetInstanceAccessDetails failed: "},
			{"denied", awsfake.Fault{ErrorCode: "AccessDeniedException"}, "bastion: denied: Lightsail GetInstanceAccessDetails failed: AccessDeniedException"},
			{"hangs", awsfake.Fault{Hang: true}, "bastion: hangs: Lightsail GetInstanceAccessDetails timed out"},
		}
		for _, tc := range tests {
			t.Run(tc.target, func(t *testing.T) {
				w.fake.SetFault(op, tc.fault)
				defer w.fake.ClearFaults()
				start := time.Now()
				r := w.client.ssh(t, nil, append(dest("jump", w.me, tc.target), "echo through")...)
				if tc.want == "" {
					if r.Code != 0 || r.Stdout != "through\n" {
						t.Fatalf("got exit %d %q, want success; stderr %s", r.Code, r.Stdout, r.Stderr)
					}
					return
				}
				if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
					t.Errorf("got exit %d stderr %q, want %q", r.Code, r.Stderr, tc.want)
				}
				if took := time.Since(start); took > 15*time.Second {
					t.Errorf("took %s; want the reason within the 5s AWS deadline and a little", took)
				}
			})
		}
	})
	t.Run("Metrics", func(t *testing.T) {
		m := adminRE.FindStringSubmatch(w.bastion.proc.out.String())
		if m == nil {
			t.Fatal("no admin address in the bastion's output")
		}
		got := scrape(t, m[1])
		for _, series := range []string{
			`bastion_aws_call_duration_seconds_count{operation="GetInstanceAccessDetails",result="ok",service="Lightsail"}`,
			`bastion_aws_call_duration_seconds_count{operation="SendSSHPublicKey",result="ok",service="EC2 Instance Connect"}`,
			`bastion_aws_call_duration_seconds_count{operation="DescribeInstances",result="ok",service="EC2"}`,
			`bastion_aws_call_errors_total{code="AccessDeniedException",operation="GetInstanceAccessDetails",service="Lightsail"}`,
			`bastion_aws_call_errors_total{code="timeout",operation="GetInstanceAccessDetails",service="Lightsail"}`,
			`bastion_upstream_connect_duration_seconds_count{provider="lightsail",result="ok"}`,
		} {
			if got[series] < 1 {
				t.Errorf("/metrics: %s = %v, want at least 1", series, got[series])
			}
		}
	})
	t.Run("BadSignature", func(t *testing.T) {
		b := startBastion(t, w.bastionF, awsEnv(w.fake, "not-the-secret")...)
		c := newClient(t, b, "dana", w.person)
		r := c.ssh(t, nil, append(dest("jump", w.me, "web-ls"), "true")...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "bastion: web-ls: Lightsail GetInstance failed: ") {
			t.Errorf("got exit %d stderr %q, want the signature refusal", r.Code, r.Stderr)
		}
	})
	t.Run("PushedKeyExpires", func(t *testing.T) {
		// Push a key of our own with the real SDK, as the bastion does, and
		// log in with it directly; 61 s later (fake clock) it no longer
		// opens the instance.
		cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(region),
			awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(w.fake.AccessKeyID(), w.fake.SecretAccessKey(), "")))
		if err != nil {
			t.Fatal(err)
		}
		eic := ec2instanceconnect.NewFromConfig(cfg, func(o *ec2instanceconnect.Options) { o.BaseEndpoint = aws.String(w.fake.URL()) })
		k := newKey(t, t.TempDir(), "pushed")
		if _, err := eic.SendSSHPublicKey(context.Background(), &ec2instanceconnect.SendSSHPublicKeyInput{
			InstanceId: aws.String(instanceID), InstanceOSUser: aws.String(w.me), SSHPublicKey: aws.String(k.AuthorizedKey()),
			AvailabilityZone: aws.String(region + "a"),
		}); err != nil {
			t.Fatal(err)
		}
		login := func() error {
			c, err := ssh.Dial("tcp", w.ec2.Addr, &ssh.ClientConfig{User: w.me, Auth: []ssh.AuthMethod{ssh.PublicKeys(k.Signer)},
				HostKeyCallback: ssh.FixedHostKey(w.ec2.HostKey.Signer.PublicKey()), Timeout: 10 * time.Second})
			if err == nil {
				c.Close()
			}
			return err
		}
		if err := login(); err != nil {
			t.Fatalf("fresh pushed key: %v", err)
		}
		w.clock.Advance(61 * time.Second)
		if err := login(); err == nil {
			t.Fatal("a key pushed 61 s ago still opened the instance")
		}
	})
}
