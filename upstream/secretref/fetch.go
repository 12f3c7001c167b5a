package secretref

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"

	"bastion/upstream"
	"bastion/upstream/awsutil"
)

// Service labels used in messages, as AWS names the services.
const (
	ServiceSSM            = "SSM"
	ServiceSecretsManager = "Secrets Manager"
)

// Operations called, for messages and Call.Operation.
const (
	opGetParameter   = "GetParameter"
	opGetSecretValue = "GetSecretValue"
)

// SSMAPI is the subset of the SSM client a Fetcher uses. The SDK's
// *ssm.Client implements it.
type SSMAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// SecretsManagerAPI is the subset of the Secrets Manager client a Fetcher
// uses. The SDK's *secretsmanager.Client implements it.
type SecretsManagerAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Fetcher reads secrets kept in AWS. Its fields must not change while Fetch
// runs; Fetch is then safe for concurrent use.
type Fetcher struct {
	// SSM reads parameters. If nil, fetching an SSM reference fails.
	SSM SSMAPI
	// SecretsManager reads secrets. If nil, fetching a Secrets Manager
	// reference fails.
	SecretsManager SecretsManagerAPI
	// Timeout bounds one fetch including the SDK's retries; if zero,
	// awsutil.DefaultCallTimeout.
	Timeout time.Duration
	// Logger receives one line per AWS call, with the reference and the
	// request id but never the value. If nil, nothing is logged.
	Logger *zap.Logger
	// Observe, if non-nil, is told of every AWS call (for metrics).
	Observe awsutil.Observer
}

// NewFetcher returns a Fetcher with SDK clients built from awsCfg (region,
// credentials, endpoints, retries, AWS_CA_BUNDLE as the caller loaded
// them), and the zero values of the other fields.
func NewFetcher(awsCfg aws.Config) *Fetcher {
	return &Fetcher{
		SSM:            ssm.NewFromConfig(awsCfg),
		SecretsManager: secretsmanager.NewFromConfig(awsCfg),
	}
}

// Fetch reads the secret r names from AWS with clients built from awsCfg,
// under timeout (zero: awsutil.DefaultCallTimeout), logging nothing. It is
// NewFetcher(awsCfg).Fetch with that Timeout.
func Fetch(ctx context.Context, awsCfg aws.Config, r Ref, timeout time.Duration) ([]byte, error) {
	f := NewFetcher(awsCfg)
	f.Timeout = timeout
	return f.Fetch(ctx, r)
}

// Fetch reads the secret r names: an SSM parameter's value (decrypted, for
// a SecureString), or a Secrets Manager secret's SecretBinary if it has one
// and its SecretString otherwise. A reference by ARN is fetched in the ARN's
// region, whatever the clients' region.
//
// An AWS failure is an *upstream.Error whose Public sentence names the
// service, the operation and the reference, for example
//
//	SSM GetParameter /bastion/host_ed25519 failed: ParameterNotFound
//	Secrets Manager GetSecretValue bastion/host_ca_ed25519 timed out after 10s
//
// and so is an answer without a value. A file reference is an error: the
// caller reads files itself.
func (f *Fetcher) Fetch(ctx context.Context, r Ref) ([]byte, error) {
	switch r.Kind {
	case SSM:
		return f.fetchParameter(ctx, r)
	case SecretsManager:
		return f.fetchSecret(ctx, r)
	}
	return nil, fmt.Errorf("fetching %s: not a reference to AWS", r)
}

func (f *Fetcher) fetchParameter(ctx context.Context, r Ref) ([]byte, error) {
	if f.SSM == nil {
		return nil, fmt.Errorf("fetching %s: no SSM client", r)
	}
	var optFns []func(*ssm.Options)
	if region := r.region(); region != "" {
		optFns = append(optFns, func(o *ssm.Options) { o.Region = region })
	}
	in := &ssm.GetParameterInput{Name: aws.String(r.Name), WithDecryption: aws.Bool(true)}
	out, requestID, err := awsutil.Do(ctx, f.call(ServiceSSM, opGetParameter, r), func(ctx context.Context) (*ssm.GetParameterOutput, middleware.Metadata, error) {
		out, err := f.SSM.GetParameter(ctx, in, optFns...)
		if err != nil {
			return nil, middleware.Metadata{}, err
		}
		return out, out.ResultMetadata, nil
	})
	if err != nil {
		return nil, withRef(err, ServiceSSM, opGetParameter, r)
	}
	p := out.Parameter
	if p == nil || aws.ToString(p.Value) == "" {
		return nil, noValue(ServiceSSM, opGetParameter, r, requestID)
	}
	if p.Type != ssmtypes.ParameterTypeSecureString && f.Logger != nil {
		// Readable by anyone allowed ssm:GetParameter, unencrypted at
		// rest, and shown in the console: worth saying, not refusing.
		f.Logger.Warn("secret parameter is not a SecureString",
			zap.String("ref", r.String()), zap.String("type", string(p.Type)))
	}
	return []byte(*p.Value), nil
}

func (f *Fetcher) fetchSecret(ctx context.Context, r Ref) ([]byte, error) {
	if f.SecretsManager == nil {
		return nil, fmt.Errorf("fetching %s: no Secrets Manager client", r)
	}
	var optFns []func(*secretsmanager.Options)
	if region := r.region(); region != "" {
		optFns = append(optFns, func(o *secretsmanager.Options) { o.Region = region })
	}
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(r.Name)}
	out, requestID, err := awsutil.Do(ctx, f.call(ServiceSecretsManager, opGetSecretValue, r), func(ctx context.Context) (*secretsmanager.GetSecretValueOutput, middleware.Metadata, error) {
		out, err := f.SecretsManager.GetSecretValue(ctx, in, optFns...)
		if err != nil {
			return nil, middleware.Metadata{}, err
		}
		return out, out.ResultMetadata, nil
	})
	if err != nil {
		return nil, withRef(err, ServiceSecretsManager, opGetSecretValue, r)
	}
	switch {
	case len(out.SecretBinary) > 0:
		return out.SecretBinary, nil
	case aws.ToString(out.SecretString) != "":
		return []byte(*out.SecretString), nil
	}
	return nil, noValue(ServiceSecretsManager, opGetSecretValue, r, requestID)
}

// call describes one AWS call for awsutil.Do.
func (f *Fetcher) call(service, op string, r Ref) awsutil.Call {
	return awsutil.Call{
		Service:   service,
		Operation: op,
		Timeout:   f.Timeout,
		Logger:    f.Logger,
		Fields:    []zap.Field{zap.String("ref", r.String())},
		Observe:   f.Observe,
	}
}

// withRef puts r's name into the Public sentence of the *upstream.Error
// that awsutil.Do returned, after the service and operation it starts with:
// "SSM GetParameter failed: X" becomes "SSM GetParameter NAME failed: X".
func withRef(err error, service, op string, r Ref) error {
	ue, ok := err.(*upstream.Error)
	if !ok {
		return err
	}
	what := service + " " + op
	if rest, ok := strings.CutPrefix(ue.Public, what); ok {
		ue.Public = what + " " + r.Name + rest
	}
	return ue
}

// noValue is the error for an answer without a value.
func noValue(service, op string, r Ref, requestID string) error {
	return &upstream.Error{
		Public:    fmt.Sprintf("%s %s %s returned no value", service, op, r.Name),
		RequestID: requestID,
	}
}

var (
	_ SSMAPI            = (*ssm.Client)(nil)
	_ SecretsManagerAPI = (*secretsmanager.Client)(nil)
)
