package awsfake

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

func secretsManagerClient(t *testing.T, s *Server, cc clientConfig, fns ...func(*secretsmanager.Options)) *secretsmanager.Client {
	t.Helper()
	fns = append([]func(*secretsmanager.Options){func(o *secretsmanager.Options) {
		o.BaseEndpoint = aws.String(s.URL())
		o.HTTPClient = hideWriteTo{o.HTTPClient}
		fastRetry(&o.Retryer)
	}}, fns...)
	return secretsmanager.NewFromConfig(awsConfig(t, s, cc), fns...)
}

func TestGetSecretValue(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now})
	keyV1 := s.PutSecret("bastion/host_ed25519", testPrivateKey)
	binary := []byte{0, 1, 2, 0xff, '\n'}
	binV1 := s.PutSecretBinary("bastion/host_ca_ed25519", binary)
	oldV := s.PutSecret("bastion/rotated", "v1")
	clock.Advance(time.Minute)
	prevV := s.PutSecret("bastion/rotated", "v2")
	clock.Advance(time.Minute)
	curV := s.PutSecret("bastion/rotated", "v3")

	// The ARN's random suffix is learnt from a first answer.
	client := secretsManagerClient(t, s, clientConfig{region: "eu-west-1"})
	first, err := client.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/host_ed25519")})
	if err != nil {
		t.Fatalf("GetSecretValue: %v", err)
	}
	const arnPrefix = "arn:aws:secretsmanager:eu-west-1:" + fakeAccountID + ":secret:"
	fullARN := aws.ToString(first.ARN)
	suffix, ok := strings.CutPrefix(fullARN, arnPrefix+"bastion/host_ed25519-")
	if !ok || len(suffix) != 6 {
		t.Fatalf("ARN: got %q, want %sbastion/host_ed25519-XXXXXX", fullARN, arnPrefix)
	}

	str := func(v string) *string { return &v }
	tests := []struct {
		name        string
		in          secretsmanager.GetSecretValueInput
		wantName    string
		wantString  *string
		wantBinary  []byte
		wantVersion string
		wantStages  []string
		wantCreated time.Time
		wantCode    string
	}{
		{
			name:     "string by name",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/host_ed25519")},
			wantName: "bastion/host_ed25519", wantString: str(testPrivateKey),
			wantVersion: keyV1, wantStages: []string{StageCurrent}, wantCreated: testStart,
		},
		{
			name:     "binary by name",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/host_ca_ed25519")},
			wantName: "bastion/host_ca_ed25519", wantBinary: binary,
			wantVersion: binV1, wantStages: []string{StageCurrent}, wantCreated: testStart,
		},
		{
			name:     "full arn",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String(fullARN)},
			wantName: "bastion/host_ed25519", wantString: str(testPrivateKey),
			wantVersion: keyV1, wantStages: []string{StageCurrent}, wantCreated: testStart,
		},
		{
			name:     "partial arn",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String(arnPrefix + "bastion/host_ed25519")},
			wantName: "bastion/host_ed25519", wantString: str(testPrivateKey),
			wantVersion: keyV1, wantStages: []string{StageCurrent}, wantCreated: testStart,
		},
		{
			name:     "current after rotation",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/rotated")},
			wantName: "bastion/rotated", wantString: str("v3"),
			wantVersion: curV, wantStages: []string{StageCurrent}, wantCreated: testStart.Add(2 * time.Minute),
		},
		{
			name:     "previous stage",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/rotated"), VersionStage: aws.String(StagePrevious)},
			wantName: "bastion/rotated", wantString: str("v2"),
			wantVersion: prevV, wantStages: []string{StagePrevious}, wantCreated: testStart.Add(time.Minute),
		},
		{
			name:     "deprecated version by id",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/rotated"), VersionId: aws.String(oldV)},
			wantName: "bastion/rotated", wantString: str("v1"),
			wantVersion: oldV, wantStages: []string{}, wantCreated: testStart,
		},
		{
			name:     "version id and its stage",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/rotated"), VersionId: aws.String(curV), VersionStage: aws.String(StageCurrent)},
			wantName: "bastion/rotated", wantString: str("v3"),
			wantVersion: curV, wantStages: []string{StageCurrent}, wantCreated: testStart.Add(2 * time.Minute),
		},
		{
			name:     "not found",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/missing")},
			wantCode: "ResourceNotFoundException",
		},
		{
			name:     "arn with a wrong suffix",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String(arnPrefix + "bastion/host_ed25519-AAAAAA")},
			wantCode: "ResourceNotFoundException",
		},
		{
			name:     "arn of another region",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String(strings.Replace(fullARN, "eu-west-1", "us-east-1", 1))},
			wantCode: "ResourceNotFoundException",
		},
		{
			name:     "unknown stage",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/rotated"), VersionStage: aws.String("AWSPENDING")},
			wantCode: "ResourceNotFoundException",
		},
		{
			name:     "unknown version id",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/rotated"), VersionId: aws.String("00000000-0000-4000-8000-000000000000")},
			wantCode: "ResourceNotFoundException",
		},
		{
			name:     "version id with another stage",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/rotated"), VersionId: aws.String(oldV), VersionStage: aws.String(StageCurrent)},
			wantCode: "InvalidRequestException",
		},
		{
			name:     "empty id",
			in:       secretsmanager.GetSecretValueInput{SecretId: aws.String("")},
			wantCode: "ValidationException",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := client.GetSecretValue(t.Context(), &tc.in)
			if tc.wantCode != "" {
				if got := errorCode(err); got != tc.wantCode {
					t.Fatalf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
				}
				if got := errorStatus(err); got != http.StatusBadRequest {
					t.Errorf("status: got %d, want %d", got, http.StatusBadRequest)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetSecretValue: %v", err)
			}
			if got := aws.ToString(out.Name); got != tc.wantName {
				t.Errorf("Name: got %q, want %q", got, tc.wantName)
			}
			if got := aws.ToString(out.ARN); !strings.HasPrefix(got, arnPrefix+tc.wantName+"-") || len(got) != len(arnPrefix+tc.wantName)+7 {
				t.Errorf("ARN: got %q, want %s%s-XXXXXX", got, arnPrefix, tc.wantName)
			}
			switch {
			case tc.wantString != nil:
				if out.SecretString == nil || *out.SecretString != *tc.wantString {
					t.Errorf("SecretString: got %v, want %q", aws.ToString(out.SecretString), *tc.wantString)
				}
				if out.SecretBinary != nil {
					t.Errorf("SecretBinary: got %x, want none", out.SecretBinary)
				}
			default:
				if !bytes.Equal(out.SecretBinary, tc.wantBinary) {
					t.Errorf("SecretBinary: got %x, want %x", out.SecretBinary, tc.wantBinary)
				}
				if out.SecretString != nil {
					t.Errorf("SecretString: got %q, want none", *out.SecretString)
				}
			}
			if got := aws.ToString(out.VersionId); got != tc.wantVersion {
				t.Errorf("VersionId: got %q, want %q", got, tc.wantVersion)
			}
			if !slices.Equal(out.VersionStages, tc.wantStages) {
				t.Errorf("VersionStages: got %v, want %v", out.VersionStages, tc.wantStages)
			}
			if got := aws.ToTime(out.CreatedDate); !got.Equal(tc.wantCreated) {
				t.Errorf("CreatedDate: got %v, want %v", got, tc.wantCreated)
			}
		})
	}
}

// TestGetSecretValueNotFound checks the modelled error and its message,
// which Secrets Manager sends under "Message".
func TestGetSecretValueNotFound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	_, err := secretsManagerClient(t, s, clientConfig{}).GetSecretValue(t.Context(),
		&secretsmanager.GetSecretValueInput{SecretId: aws.String("bastion/missing")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("error: got %T %v, want *types.ResourceNotFoundException", err, err)
	}
	if got, want := nf.ErrorMessage(), "Secrets Manager can't find the specified secret."; got != want {
		t.Errorf("ErrorMessage: got %q, want %q", got, want)
	}
	c := lastCall(t, s)
	if got := errorRequestID(err); got == "" || got != c.RequestID {
		t.Errorf("request id: got %q from the SDK, want %q as recorded", got, c.RequestID)
	}
	want := Call{Service: ServiceSecretsManager, Operation: "GetSecretValue", Region: DefaultRegion, RequestID: c.RequestID,
		Time: c.Time, Status: http.StatusBadRequest, ErrorCode: "ResourceNotFoundException"}
	checkCall(t, c, want)
	if got := c.Params["SecretId"]; got != "bastion/missing" {
		t.Errorf("Params[SecretId]: got %q, want %q", got, "bastion/missing")
	}
}

// TestPutSecretCopiesBinary checks that changing the slice given to
// PutSecretBinary does not change the stored secret.
func TestPutSecretCopiesBinary(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	b := []byte("key")
	s.PutSecretBinary("k", b)
	b[0] = 'X'
	out, err := secretsManagerClient(t, s, clientConfig{}).GetSecretValue(t.Context(),
		&secretsmanager.GetSecretValueInput{SecretId: aws.String("k")})
	if err != nil {
		t.Fatalf("GetSecretValue: %v", err)
	}
	if got := string(out.SecretBinary); got != "key" {
		t.Errorf("SecretBinary: got %q, want %q", got, "key")
	}
}
