package awsutil

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"go.uber.org/zap/zaptest"

	"bastion/internal/awsfake"
)

// isolateEnv points the SDK's default chain at nothing but the environment
// variables the test sets: no shared files, no IMDS, no stray endpoints.
// AWS_CA_BUNDLE is left as the machine has it.
func isolateEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{
		"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
		"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	} {
		t.Setenv(k, "")
	}
}

// TestLoadConfigHonoursEndpointEnv checks that the SDK sends each service's
// calls to the endpoint in its AWS_ENDPOINT_URL_<SERVICE> variable, signed
// with credentials from the environment. It sets environment variables, so
// it does not run in parallel.
func TestLoadConfigHonoursEndpointEnv(t *testing.T) {
	s, err := awsfake.Start(awsfake.Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("starting fake: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	s.AddLightsailInstance(awsfake.LightsailInstance{Name: "web-1", Region: "eu-west-1", PublicIP: "203.0.113.5"})
	s.AddEC2Instance(awsfake.EC2Instance{ID: "i-0123456789abcdef0", Region: "eu-west-1", PrivateIP: "10.0.0.5"})

	isolateEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKeyID())
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretAccessKey())
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL_LIGHTSAIL", s.URL())
	t.Setenv("AWS_ENDPOINT_URL_EC2", s.URL())
	t.Setenv("AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT", s.URL())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := LoadConfig(ctx)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}

	gi, err := lightsail.NewFromConfig(cfg).GetInstance(ctx, &lightsail.GetInstanceInput{InstanceName: aws.String("web-1")})
	if err != nil {
		t.Fatalf("Lightsail GetInstance: %v", err)
	}
	if got, want := aws.ToString(gi.Instance.PublicIpAddress), "203.0.113.5"; got != want {
		t.Errorf("GetInstance public IP = %q, want %q", got, want)
	}

	di, err := ec2.NewFromConfig(cfg).DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	if err != nil {
		t.Fatalf("EC2 DescribeInstances: %v", err)
	}
	if len(di.Reservations) != 1 || len(di.Reservations[0].Instances) != 1 {
		t.Fatalf("DescribeInstances returned %d reservations, want 1 with 1 instance", len(di.Reservations))
	}

	_, err = ec2instanceconnect.NewFromConfig(cfg).SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId:     aws.String("i-0123456789abcdef0"),
		InstanceOSUser: aws.String("ec2-user"),
		SSHPublicKey:   aws.String("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"),
	})
	if err != nil {
		t.Fatalf("EC2 Instance Connect SendSSHPublicKey: %v", err)
	}

	for _, op := range []string{"GetInstance", "DescribeInstances", "SendSSHPublicKey"} {
		if got := s.CallCount(op); got != 1 {
			t.Errorf("fake saw %d %s calls, want 1", got, op)
		}
	}
	for _, c := range s.Calls() {
		if c.Region != "eu-west-1" {
			t.Errorf("%s signed for region %q, want eu-west-1", c.Operation, c.Region)
		}
	}
}

// TestLoadConfigRetryer checks the retry defaults and WithRetry. It sets
// environment variables, so it does not run in parallel.
func TestLoadConfigRetryer(t *testing.T) {
	isolateEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	tests := []struct {
		name string
		opts []func(*config.LoadOptions) error
		want int
	}{
		{name: "default", want: 3},
		{name: "WithRetry", opts: []func(*config.LoadOptions) error{WithRetry(5, time.Second)}, want: 5},
		{name: "WithRetry zero keeps default", opts: []func(*config.LoadOptions) error{WithRetry(0, 0)}, want: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig(context.Background(), tc.opts...)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			r := lightsail.NewFromConfig(cfg, func(o *lightsail.Options) { o.Region = "us-east-1" }).Options().Retryer
			if got := r.MaxAttempts(); got != tc.want {
				t.Errorf("MaxAttempts = %d, want %d", got, tc.want)
			}
		})
	}
}
