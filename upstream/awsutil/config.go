// Package awsutil holds what the AWS-backed providers share: loading the SDK
// configuration, running one API call under a deadline with a log line, and
// turning an SDK error into the one-line *upstream.Error a person sees.
package awsutil

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
)

// LoadConfig loads the AWS configuration from the SDK's default chain:
// environment variables, the shared config and credentials files (and
// AWS_PROFILE), web identity tokens (IRSA), container and instance (IMDS)
// credentials. The SDK itself honours the per-service endpoint overrides
// AWS_ENDPOINT_URL_LIGHTSAIL, AWS_ENDPOINT_URL_EC2 and
// AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT, and AWS_CA_BUNDLE.
//
// Unless opts say otherwise, clients retry with the SDK's standard retryer:
// at most 3 attempts, exponential backoff with jitter, throttling errors
// backing off and drawing on a retry quota. AWS_MAX_ATTEMPTS, AWS_RETRY_MODE,
// config.WithRetryMaxAttempts and WithRetry change that.
//
// opts are applied after the defaults, in order. Do not pass
// config.WithHTTPClient with a client other than *awshttp.BuildableClient:
// the SDK cannot then apply AWS_CA_BUNDLE and loading fails.
func LoadConfig(ctx context.Context, opts ...func(*config.LoadOptions) error) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Credentials != nil {
		cfg.Credentials = markedCredentials{cfg.Credentials}
	}
	return cfg, nil
}

// ErrNoCredentials marks the errors of the SDK's credentials chain: the
// bastion has no credentials to sign a call with. ToError tells a person
// so in those words.
var ErrNoCredentials = errors.New("no AWS credentials")

// markedCredentials wraps the errors of a credentials provider in
// ErrNoCredentials, so that they are recognised after the SDK has wrapped
// them in its own ("operation error …: get identity: get credentials: …").
type markedCredentials struct{ aws.CredentialsProvider }

func (m markedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	return c, nil
}

// WithRetry returns a LoadConfig option that makes every client use the
// standard retryer with at most maxAttempts attempts (including the first)
// and at most maxBackoff between attempts. Zero values keep the SDK's
// defaults (3 attempts, 20s). It takes precedence over AWS_MAX_ATTEMPTS and
// AWS_RETRY_MODE.
func WithRetry(maxAttempts int, maxBackoff time.Duration) func(*config.LoadOptions) error {
	return config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			if maxAttempts > 0 {
				o.MaxAttempts = maxAttempts
			}
			if maxBackoff > 0 {
				o.MaxBackoff = maxBackoff
			}
		})
	})
}
