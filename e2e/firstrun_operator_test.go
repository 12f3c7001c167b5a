package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"bastion/internal/awsfake"
)

// noAWSCredentials is an environment in which the SDK's default chain
// finds nothing: no keys, no profile files, no IMDS; the endpoints point
// at a local fake so that nothing leaves loopback.
func noAWSCredentials(fake *awsfake.Server) []string {
	return []string{
		"AWS_ENDPOINT_URL_LIGHTSAIL=" + fake.URL(),
		"AWS_ENDPOINT_URL_EC2=" + fake.URL(),
		"AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT=" + fake.URL(),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
		"AWS_WEB_IDENTITY_TOKEN_FILE=", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=", "AWS_CONTAINER_CREDENTIALS_FULL_URI=",
		"AWS_REGION=" + region,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := plainHTTP.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestFirstRunNoAWSCredentials starts serve where the SDK finds no AWS
// credentials: the start warns naming them, /readyz is 503 with a line
// per provider, and a person is told "the bastion has no AWS credentials"
// and nothing of the SDK's internals (issue 11, item 9). With credentials,
// /readyz is 200 with the same lines saying ok.
func TestFirstRunNoAWSCredentials(t *testing.T) {
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "web-1", Region: region, Username: "ec2-user", PublicIP: "127.0.0.1", PrivateIP: "127.0.0.1"})
	dir := t.TempDir()
	dana := newKey(t, dir, "dana")
	body := fmt.Sprintf(`admin_listen: 127.0.0.1:0
users:
  - {name: dana, keys: [%q], groups: [dev]}
providers:
  lightsail: {regions: [%s]}
  ec2: {regions: [%s], known_hosts: ec2_known_hosts}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
`, dana.AuthorizedKey(), region, region)

	t.Run("without", func(t *testing.T) {
		b := startBastion(t, body, noAWSCredentials(fake)...)
		waitFor(t, "a warning naming the missing AWS credentials", 30*time.Second, func() bool {
			return strings.Contains(b.proc.out.String(), "no AWS credentials")
		})
		admin := adminRE.FindStringSubmatch(b.proc.out.String())[1]
		waitFor(t, "/readyz to report both providers", 30*time.Second, func() bool {
			code, body := readyz(t, admin)
			return code == http.StatusServiceUnavailable && strings.Contains(body, "lightsail: no AWS credentials") && strings.Contains(body, "ec2: no AWS credentials")
		})
		c := newClient(t, b, "dana", dana)
		for _, target := range []string{"web-1", "api-1.ec2"} {
			r := c.ssh(t, nil, "-J", "bastion", "ec2-user@"+target, "true")
			if r.Code == 0 || !strings.Contains(r.Stderr, "bastion: "+target+": the bastion has no AWS credentials") {
				t.Errorf("ssh to %s: got %d %q, want the one-line reason", target, r.Code, r.Stderr)
			}
			for _, internal := range []string{"GetInstance", "DescribeInstances", "IMDS", "SDK", "failed to"} {
				if strings.Contains(r.Stderr, internal) {
					t.Errorf("ssh to %s: stderr %q shows internals (%s)", target, r.Stderr, internal)
				}
			}
		}
	})
	t.Run("with", func(t *testing.T) {
		b := startBastion(t, body, awsEnv(fake, fake.SecretAccessKey())...)
		admin := adminRE.FindStringSubmatch(b.proc.out.String())[1]
		waitFor(t, "/readyz to say ready with both providers ok", 30*time.Second, func() bool {
			code, body := readyz(t, admin)
			return code == http.StatusOK && strings.Contains(body, "lightsail: ok") && strings.Contains(body, "ec2: ok")
		})
		if strings.Contains(b.proc.out.String(), "no AWS credentials") {
			t.Errorf("a warning with credentials present:\n%s", b.proc.out.String())
		}
	})
}
