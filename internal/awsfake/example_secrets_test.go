package awsfake_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"

	"bastion/internal/awsfake"
)

// ExampleServer_PutParameter stores a host key in the fake's Parameter
// Store and Secrets Manager and reads it back with the real clients.
func ExampleServer_PutParameter() {
	ctx := context.Background()
	s, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	s.PutParameter("/bastion/host_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----…")
	s.PutSecret("bastion/host_ca_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----…")

	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKeyID(), s.SecretAccessKey(), ""),
		BaseEndpoint: aws.String(s.URL()),
	}
	p, err := ssm.NewFromConfig(cfg).GetParameter(ctx, &ssm.GetParameterInput{
		Name:           aws.String("/bastion/host_ed25519"),
		WithDecryption: aws.Bool(true),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(aws.ToString(p.Parameter.Name), p.Parameter.Type, aws.ToString(p.Parameter.Value)[:10])

	v, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String("bastion/host_ca_ed25519"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(aws.ToString(v.Name), v.VersionStages, aws.ToString(v.SecretString)[:10])

	_, err = ssm.NewFromConfig(cfg).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/bastion/missing")})
	var ae smithy.APIError
	if errors.As(err, &ae) {
		fmt.Println(ae.ErrorCode())
	}
	// Output:
	// /bastion/host_ed25519 SecureString -----BEGIN
	// bastion/host_ca_ed25519 [AWSCURRENT] -----BEGIN
	// ParameterNotFound
}
