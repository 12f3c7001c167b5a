package awsfake

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

func ssmClient(t *testing.T, s *Server, cc clientConfig, fns ...func(*ssm.Options)) *ssm.Client {
	t.Helper()
	fns = append([]func(*ssm.Options){func(o *ssm.Options) {
		o.BaseEndpoint = aws.String(s.URL())
		o.HTTPClient = hideWriteTo{o.HTTPClient}
		fastRetry(&o.Retryer)
	}}, fns...)
	return ssm.NewFromConfig(awsConfig(t, s, cc), fns...)
}

// testPrivateKey is a stand-in for a PEM private key: what the parameters
// hold does not matter to the fake.
const testPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"

func TestGetParameter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now})
	s.PutParameter("/bastion/host_ed25519", testPrivateKey)
	s.PutParameter("/bastion/host_ca_ed25519", "old CA")
	clock.Advance(time.Minute)
	s.PutParameter("/bastion/host_ca_ed25519", "new CA")
	s.PutParameterType("/bastion/plain", ParameterTypeString, "plain value")
	s.PutParameter("flat", "flat value")

	const arnPrefix = "arn:aws:ssm:eu-west-1:" + fakeAccountID + ":parameter/"
	tests := []struct {
		name         string
		in           string
		decrypt      *bool
		wantName     string
		wantValue    string // "" means: a ciphertext, not any stored value
		wantType     types.ParameterType
		wantVer      int64
		wantSel      string
		wantModified time.Time
		wantCode     string
	}{
		{
			name: "secure string decrypted", in: "/bastion/host_ed25519", decrypt: aws.Bool(true),
			wantName: "/bastion/host_ed25519", wantValue: testPrivateKey, wantType: types.ParameterTypeSecureString,
			wantVer: 1, wantModified: testStart,
		},
		{
			name: "secure string without decryption", in: "/bastion/host_ed25519",
			wantName: "/bastion/host_ed25519", wantType: types.ParameterTypeSecureString, wantVer: 1, wantModified: testStart,
		},
		{
			name: "secure string decryption false", in: "/bastion/host_ed25519", decrypt: aws.Bool(false),
			wantName: "/bastion/host_ed25519", wantType: types.ParameterTypeSecureString, wantVer: 1, wantModified: testStart,
		},
		{
			name: "latest version", in: "/bastion/host_ca_ed25519", decrypt: aws.Bool(true),
			wantName: "/bastion/host_ca_ed25519", wantValue: "new CA", wantType: types.ParameterTypeSecureString,
			wantVer: 2, wantModified: testStart.Add(time.Minute),
		},
		{
			name: "version selector", in: "/bastion/host_ca_ed25519:1", decrypt: aws.Bool(true),
			wantName: "/bastion/host_ca_ed25519", wantValue: "old CA", wantType: types.ParameterTypeSecureString,
			wantVer: 1, wantSel: ":1", wantModified: testStart,
		},
		{
			name: "string ignores decryption", in: "/bastion/plain",
			wantName: "/bastion/plain", wantValue: "plain value", wantType: types.ParameterTypeString,
			wantVer: 1, wantModified: testStart.Add(time.Minute),
		},
		{
			name: "spaces around the name", in: "  /bastion/plain ",
			wantName: "/bastion/plain", wantValue: "plain value", wantType: types.ParameterTypeString,
			wantVer: 1, wantModified: testStart.Add(time.Minute),
		},
		{
			name: "arn", in: arnPrefix + "bastion/host_ed25519", decrypt: aws.Bool(true),
			wantName: "/bastion/host_ed25519", wantValue: testPrivateKey, wantType: types.ParameterTypeSecureString,
			wantVer: 1, wantModified: testStart,
		},
		{
			name: "arn of a name without a path", in: arnPrefix + "flat", decrypt: aws.Bool(true),
			wantName: "flat", wantValue: "flat value", wantType: types.ParameterTypeSecureString,
			wantVer: 1, wantModified: testStart.Add(time.Minute),
		},
		{name: "not found", in: "/bastion/missing", decrypt: aws.Bool(true), wantCode: "ParameterNotFound"},
		{name: "name without its leading slash", in: "bastion/host_ed25519", wantCode: "ParameterNotFound"},
		{name: "arn of another region", in: "arn:aws:ssm:us-east-1:" + fakeAccountID + ":parameter/flat", wantCode: "ParameterNotFound"},
		{name: "arn of another account", in: "arn:aws:ssm:eu-west-1:210987654321:parameter/flat", wantCode: "ParameterNotFound"},
		{name: "label", in: "/bastion/host_ca_ed25519:prod", wantCode: "ParameterNotFound"},
		{name: "version not found", in: "/bastion/host_ca_ed25519:3", wantCode: "ParameterVersionNotFound"},
		{name: "space inside the name", in: "/bastion/host ed25519", wantCode: "ValidationException"},
		{name: "empty name", in: "", wantCode: "ValidationException"},
	}
	client := ssmClient(t, s, clientConfig{region: "eu-west-1"})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := client.GetParameter(t.Context(), &ssm.GetParameterInput{Name: aws.String(tc.in), WithDecryption: tc.decrypt})
			if tc.wantCode != "" {
				if got := errorCode(err); got != tc.wantCode {
					t.Fatalf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
				}
				if got := errorStatus(err); got != http.StatusBadRequest {
					t.Errorf("status: got %d, want %d", got, http.StatusBadRequest)
				}
				if errorRequestID(err) == "" {
					t.Error("request id: got none, want one")
				}
				return
			}
			if err != nil {
				t.Fatalf("GetParameter: %v", err)
			}
			p := out.Parameter
			if got := aws.ToString(p.Name); got != tc.wantName {
				t.Errorf("Name: got %q, want %q", got, tc.wantName)
			}
			wantARN := arnPrefix + strings.TrimPrefix(tc.wantName, "/")
			if got := aws.ToString(p.ARN); got != wantARN {
				t.Errorf("ARN: got %q, want %q", got, wantARN)
			}
			if p.Type != tc.wantType {
				t.Errorf("Type: got %q, want %q", p.Type, tc.wantType)
			}
			if p.Version != tc.wantVer {
				t.Errorf("Version: got %d, want %d", p.Version, tc.wantVer)
			}
			if got := aws.ToString(p.Selector); got != tc.wantSel {
				t.Errorf("Selector: got %q, want %q", got, tc.wantSel)
			}
			if got := aws.ToString(p.DataType); got != "text" {
				t.Errorf("DataType: got %q, want %q", got, "text")
			}
			if got := aws.ToTime(p.LastModifiedDate); !got.Equal(tc.wantModified) {
				t.Errorf("LastModifiedDate: got %v, want %v", got, tc.wantModified)
			}
			got := aws.ToString(p.Value)
			switch {
			case tc.wantValue != "" && got != tc.wantValue:
				t.Errorf("Value: got %q, want %q", got, tc.wantValue)
			case tc.wantValue == "" && (got == "" || got == testPrivateKey):
				t.Errorf("Value without decryption: got %q, want a ciphertext", got)
			}
		})
	}
}

// TestGetParameterNotFoundWire checks the bytes of the ParameterNotFound
// answer: status 400, the awsJson content type, a request id, and a body
// with the error type and no message.
func TestGetParameterNotFoundWire(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	req := newSignedRequest(t, s, rawRequest{ServiceSSM, DefaultRegion, ssmTargetPrefix + "GetParameter",
		`{"Name":"/bastion/missing","WithDecryption":true}`}, s.AccessKeyID(), s.SecretAccessKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status: got %d, want %d", resp.StatusCode, http.StatusBadRequest)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/x-amz-json-1.1"; got != want {
		t.Errorf("Content-Type: got %q, want %q", got, want)
	}
	c := lastCall(t, s)
	if got := resp.Header.Get("X-Amzn-RequestId"); got == "" || got != c.RequestID {
		t.Errorf("X-Amzn-RequestId: got %q, want %q as recorded", got, c.RequestID)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if len(m) != 1 || m["__type"] != "ParameterNotFound" {
		t.Errorf("body: got %s, want {\"__type\":\"ParameterNotFound\"}", body)
	}
	want := Call{Service: ServiceSSM, Operation: "GetParameter", Region: DefaultRegion, RequestID: c.RequestID,
		Time: c.Time, Status: http.StatusBadRequest, ErrorCode: "ParameterNotFound"}
	checkCall(t, c, want)
	if got := c.Params["Name"]; got != "/bastion/missing" {
		t.Errorf("Params[Name]: got %q, want %q", got, "/bastion/missing")
	}

	// The SDK decodes it into its modelled type.
	_, err = ssmClient(t, s, clientConfig{}).GetParameter(t.Context(), &ssm.GetParameterInput{Name: aws.String("/x")})
	var nf *types.ParameterNotFound
	if !errors.As(err, &nf) {
		t.Fatalf("error: got %T %v, want *types.ParameterNotFound", err, err)
	}
	if got := nf.ErrorMessage(); got != "" {
		t.Errorf("ErrorMessage: got %q, want none", got)
	}
}
