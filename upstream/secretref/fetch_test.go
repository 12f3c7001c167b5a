package secretref

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"bastion/upstream"
)

// secretValue is what the stubs answer; the tests check it never reaches a
// log line.
const secretValue = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----\n"

// stubSSM answers GetParameter with out or err and records the input and
// the region its options resolve to.
type stubSSM struct {
	out    *ssm.GetParameterOutput
	err    error
	in     *ssm.GetParameterInput
	region string
}

func (s *stubSSM) GetParameter(_ context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	s.in = in
	o := ssm.Options{Region: "us-east-1"}
	for _, fn := range optFns {
		fn(&o)
	}
	s.region = o.Region
	return s.out, s.err
}

// stubSecretsManager is stubSSM for GetSecretValue.
type stubSecretsManager struct {
	out    *secretsmanager.GetSecretValueOutput
	err    error
	in     *secretsmanager.GetSecretValueInput
	region string
}

func (s *stubSecretsManager) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	s.in = in
	o := secretsmanager.Options{Region: "us-east-1"}
	for _, fn := range optFns {
		fn(&o)
	}
	s.region = o.Region
	return s.out, s.err
}

// metadata returns result metadata with request id id.
func metadata(id string) middleware.Metadata {
	var md middleware.Metadata
	awsmiddleware.SetRequestIDMetadata(&md, id)
	return md
}

// apiError builds an error shaped like the one an SDK client returns for
// an AWS error answer.
func apiError(service, op, code string) error {
	return &smithy.OperationError{
		ServiceID:     service,
		OperationName: op,
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
				Err:      &smithy.GenericAPIError{Code: code},
			},
			RequestID: "req-err",
		},
	}
}

func mustParse(t *testing.T, s string) Ref {
	t.Helper()
	r, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return r
}

func TestFetchSSM(t *testing.T) {
	t.Parallel()
	param := func(typ ssmtypes.ParameterType, value *string) *ssm.GetParameterOutput {
		return &ssm.GetParameterOutput{
			Parameter:      &ssmtypes.Parameter{Name: aws.String("/bastion/host_ed25519"), Type: typ, Value: value},
			ResultMetadata: metadata("req-1"),
		}
	}
	tests := []struct {
		name       string
		ref        string
		out        *ssm.GetParameterOutput
		err        error
		want       string
		wantRegion string
		// wantPublic is the *upstream.Error's Public sentence of a failure.
		wantPublic    string
		wantRequestID string
		wantWarning   bool
	}{
		{
			name: "secure string", ref: "ssm:/bastion/host_ed25519",
			out: param(ssmtypes.ParameterTypeSecureString, aws.String(secretValue)), want: secretValue, wantRegion: "us-east-1",
		},
		{
			name: "string warns", ref: "ssm:/bastion/host_ed25519",
			out: param(ssmtypes.ParameterTypeString, aws.String(secretValue)), want: secretValue, wantRegion: "us-east-1",
			wantWarning: true,
		},
		{
			name: "arn in its region", ref: "ssm:arn:aws:ssm:ap-south-1:123456789012:parameter/bastion/host_ed25519",
			out: param(ssmtypes.ParameterTypeSecureString, aws.String(secretValue)), want: secretValue, wantRegion: "ap-south-1",
		},
		{
			name: "not found", ref: "ssm:/bastion/host_ed25519",
			err:        apiError("SSM", "GetParameter", "ParameterNotFound"),
			wantPublic: "SSM GetParameter /bastion/host_ed25519 failed: ParameterNotFound", wantRequestID: "req-err",
		},
		{
			name: "kms access denied", ref: "ssm:/bastion/host_ed25519:2",
			err:        apiError("SSM", "GetParameter", "AccessDeniedException"),
			wantPublic: "SSM GetParameter /bastion/host_ed25519:2 failed: AccessDeniedException", wantRequestID: "req-err",
		},
		{
			name: "no parameter", ref: "ssm:/bastion/host_ed25519",
			out:        &ssm.GetParameterOutput{ResultMetadata: metadata("req-1")},
			wantPublic: "SSM GetParameter /bastion/host_ed25519 returned no value", wantRequestID: "req-1",
		},
		{
			name: "empty value", ref: "ssm:/bastion/host_ed25519",
			out:        param(ssmtypes.ParameterTypeSecureString, aws.String("")),
			wantPublic: "SSM GetParameter /bastion/host_ed25519 returned no value", wantRequestID: "req-1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.DebugLevel)
			stub := &stubSSM{out: tc.out, err: tc.err}
			f := &Fetcher{SSM: stub, Logger: zap.New(core)}
			ref := mustParse(t, tc.ref)
			got, err := f.Fetch(t.Context(), ref)

			if stub.in == nil {
				t.Fatal("GetParameter: got no call, want one")
			}
			if got := aws.ToString(stub.in.Name); got != ref.Name {
				t.Errorf("GetParameter Name: got %q, want %q", got, ref.Name)
			}
			if !aws.ToBool(stub.in.WithDecryption) {
				t.Error("GetParameter WithDecryption: got false, want true")
			}
			checkResult(t, got, err, tc.want, tc.wantPublic, tc.wantRequestID)
			if tc.wantPublic == "" && stub.region != tc.wantRegion {
				t.Errorf("region: got %q, want %q", stub.region, tc.wantRegion)
			}
			checkLogs(t, logs, ref, "GetParameter", tc.wantWarning)
		})
	}
}

func TestFetchSecretsManager(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		ref           string
		out           *secretsmanager.GetSecretValueOutput
		err           error
		want          string
		wantRegion    string
		wantPublic    string
		wantRequestID string
	}{
		{
			name: "secret string", ref: "secretsmanager:bastion/host_ca_ed25519",
			out:  &secretsmanager.GetSecretValueOutput{SecretString: aws.String(secretValue), ResultMetadata: metadata("req-1")},
			want: secretValue, wantRegion: "us-east-1",
		},
		{
			name: "secret binary", ref: "secretsmanager:bastion/host_ca_ed25519",
			out:  &secretsmanager.GetSecretValueOutput{SecretBinary: []byte(secretValue), ResultMetadata: metadata("req-1")},
			want: secretValue, wantRegion: "us-east-1",
		},
		{
			name: "binary wins over string", ref: "secretsmanager:bastion/host_ca_ed25519",
			out:  &secretsmanager.GetSecretValueOutput{SecretBinary: []byte(secretValue), SecretString: aws.String("other"), ResultMetadata: metadata("req-1")},
			want: secretValue, wantRegion: "us-east-1",
		},
		{
			name: "arn in its region", ref: "secretsmanager:arn:aws:secretsmanager:eu-central-1:123456789012:secret:bastion/ca-AbCdEf",
			out:  &secretsmanager.GetSecretValueOutput{SecretString: aws.String(secretValue), ResultMetadata: metadata("req-1")},
			want: secretValue, wantRegion: "eu-central-1",
		},
		{
			name: "not found", ref: "secretsmanager:bastion/host_ca_ed25519",
			err:        apiError("Secrets Manager", "GetSecretValue", "ResourceNotFoundException"),
			wantPublic: "Secrets Manager GetSecretValue bastion/host_ca_ed25519 failed: ResourceNotFoundException", wantRequestID: "req-err",
		},
		{
			name: "no value", ref: "secretsmanager:bastion/host_ca_ed25519",
			out:        &secretsmanager.GetSecretValueOutput{ResultMetadata: metadata("req-1")},
			wantPublic: "Secrets Manager GetSecretValue bastion/host_ca_ed25519 returned no value", wantRequestID: "req-1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zapcore.DebugLevel)
			stub := &stubSecretsManager{out: tc.out, err: tc.err}
			f := &Fetcher{SecretsManager: stub, Logger: zap.New(core)}
			ref := mustParse(t, tc.ref)
			got, err := f.Fetch(t.Context(), ref)

			if stub.in == nil {
				t.Fatal("GetSecretValue: got no call, want one")
			}
			if got := aws.ToString(stub.in.SecretId); got != ref.Name {
				t.Errorf("GetSecretValue SecretId: got %q, want %q", got, ref.Name)
			}
			if stub.in.VersionId != nil || stub.in.VersionStage != nil {
				t.Errorf("GetSecretValue version: got %v, %v, want none (AWSCURRENT)", stub.in.VersionId, stub.in.VersionStage)
			}
			checkResult(t, got, err, tc.want, tc.wantPublic, tc.wantRequestID)
			if tc.wantPublic == "" && stub.region != tc.wantRegion {
				t.Errorf("region: got %q, want %q", stub.region, tc.wantRegion)
			}
			checkLogs(t, logs, ref, "GetSecretValue", false)
		})
	}
}

// checkResult checks Fetch's result: the value want, or an *upstream.Error
// with wantPublic and wantRequestID.
func checkResult(t *testing.T, got []byte, err error, want, wantPublic, wantRequestID string) {
	t.Helper()
	if wantPublic == "" {
		if err != nil {
			t.Fatalf("Fetch: got error %v, want %q", err, want)
		}
		if string(got) != want {
			t.Errorf("Fetch: got %q, want %q", got, want)
		}
		return
	}
	if got != nil {
		t.Errorf("Fetch: got value %q, want none", got)
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		t.Fatalf("Fetch: got error %T %v, want *upstream.Error", err, err)
	}
	if ue.Public != wantPublic {
		t.Errorf("Public: got %q, want %q", ue.Public, wantPublic)
	}
	if got := upstream.PublicMessage(err); got != wantPublic {
		t.Errorf("PublicMessage: got %q, want %q", got, wantPublic)
	}
	if ue.RequestID != wantRequestID {
		t.Errorf("RequestID: got %q, want %q", ue.RequestID, wantRequestID)
	}
	if strings.Contains(err.Error(), secretValue) {
		t.Errorf("error %q holds the secret", err)
	}
}

// checkLogs checks that Fetch logged one AWS call of op for ref, plus a
// warning if wantWarning, and never the value.
func checkLogs(t *testing.T, logs *observer.ObservedLogs, ref Ref, op string, wantWarning bool) {
	t.Helper()
	var calls, warnings int
	for _, e := range logs.All() {
		fields := e.ContextMap()
		if fields["ref"] != ref.String() {
			t.Errorf("log %q: ref %v, want %q", e.Message, fields["ref"], ref.String())
		}
		switch {
		case fields["operation"] == op:
			calls++
		case e.Level == zapcore.WarnLevel:
			warnings++
		}
		if strings.Contains(e.Message, "BEGIN OPENSSH") {
			t.Errorf("log %q holds the secret", e.Message)
		}
		for k, v := range fields {
			if s, ok := v.(string); ok && strings.Contains(s, "BEGIN OPENSSH") {
				t.Errorf("log %q field %s holds the secret", e.Message, k)
			}
		}
	}
	if calls != 1 {
		t.Errorf("logged calls: got %d, want 1", calls)
	}
	if want := map[bool]int{true: 1}[wantWarning]; warnings != want {
		t.Errorf("warnings: got %d, want %d", warnings, want)
	}
}

func TestFetchNotAWS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		f       *Fetcher
		ref     string
		wantErr string
	}{
		{"file", &Fetcher{SSM: &stubSSM{}, SecretsManager: &stubSecretsManager{}}, "/etc/bastion/host", "fetching /etc/bastion/host: not a reference to AWS"},
		{"no ssm client", &Fetcher{SecretsManager: &stubSecretsManager{}}, "ssm:/bastion/host", "fetching ssm:/bastion/host: no SSM client"},
		{"no secrets manager client", &Fetcher{SSM: &stubSSM{}}, "secretsmanager:bastion/host", "fetching secretsmanager:bastion/host: no Secrets Manager client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.f.Fetch(t.Context(), mustParse(t, tc.ref))
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Fetch: got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestFetchDeadline checks that a fetch runs under Timeout.
func TestFetchDeadline(t *testing.T) {
	t.Parallel()
	f := &Fetcher{SSM: ssmFunc(func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("call context: got no deadline, want one")
		}
		<-ctx.Done()
		return ctx.Err()
	}), Timeout: 1}
	_, err := f.Fetch(t.Context(), mustParse(t, "ssm:/bastion/host"))
	if got, want := upstream.PublicMessage(err), "SSM GetParameter /bastion/host timed out after 1ns"; got != want {
		t.Errorf("PublicMessage: got %q, want %q", got, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error: got %v, want one wrapping context.DeadlineExceeded", err)
	}
}

// ssmFunc is an SSMAPI that runs a function.
type ssmFunc func(ctx context.Context) error

func (fn ssmFunc) GetParameter(ctx context.Context, _ *ssm.GetParameterInput, _ ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	return nil, fn(ctx)
}
