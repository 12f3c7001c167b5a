package secretref_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/zap"

	"bastion/internal/awsfake"
	"bastion/upstream"
	"bastion/upstream/secretref"
)

func ExampleParse() {
	for _, v := range []string{
		"/run/secrets/bastion/host_ed25519",
		"ssm:/bastion/host_ed25519",
		"secretsmanager:bastion/host_ca_ed25519",
		"secretmanager:bastion/host_ca_ed25519",
	} {
		r, err := secretref.Parse(v)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(r.Kind, r.Name, r.IsAWS())
	}
	// Output:
	// file /run/secrets/bastion/host_ed25519 false
	// ssm /bastion/host_ed25519 true
	// secretsmanager bastion/host_ca_ed25519 true
	// secret reference "secretmanager:bastion/host_ca_ed25519": unknown prefix secretmanager:, want ssm:, secretsmanager: or a file path (./secretmanager:bastion/host_ca_ed25519 for a file of that name)
}

// ExampleFetcher_Fetch reads a host key from Parameter Store (here the fake)
// at start, as `bastion serve` does for `host_key: ssm:/bastion/host_ed25519`.
func ExampleFetcher_Fetch() {
	ctx := context.Background()
	s, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	s.PutParameter("/bastion/host_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n…")

	// In the bastion: awsutil.LoadConfig(ctx).
	awsCfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKeyID(), s.SecretAccessKey(), ""),
		BaseEndpoint: aws.String(s.URL()),
	}
	f := secretref.NewFetcher(awsCfg)
	f.Timeout = 10 * time.Second
	f.Logger = zap.NewNop()

	for _, v := range []string{"ssm:/bastion/host_ed25519", "ssm:/bastion/host_ca_ed25519"} {
		ref, err := secretref.Parse(v)
		if err != nil {
			log.Fatal(err)
		}
		pem, err := f.Fetch(ctx, ref)
		if err != nil {
			fmt.Println(upstream.PublicMessage(err))
			continue
		}
		fmt.Printf("%s: %.35s\n", ref, pem)
	}
	// Output:
	// ssm:/bastion/host_ed25519: -----BEGIN OPENSSH PRIVATE KEY-----
	// SSM GetParameter /bastion/host_ca_ed25519 failed: ParameterNotFound
}
