package awsfake

import (
	"net/http"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// The parameter and secret the tests below read.
const (
	storeParameter = "/bastion/host_ed25519"
	storeSecret    = "bastion/host_ed25519"
)

// storeCalls returns, by operation name, a function that reads the test
// parameter or secret with a client made for cc and returns its value.
func storeCalls(s *Server) map[string]func(t *testing.T, cc clientConfig) (string, error) {
	return map[string]func(t *testing.T, cc clientConfig) (string, error){
		"GetParameter": func(t *testing.T, cc clientConfig) (string, error) {
			out, err := ssmClient(t, s, cc).GetParameter(t.Context(),
				&ssm.GetParameterInput{Name: aws.String(storeParameter), WithDecryption: aws.Bool(true)})
			if err != nil {
				return "", err
			}
			return aws.ToString(out.Parameter.Value), nil
		},
		"GetSecretValue": func(t *testing.T, cc clientConfig) (string, error) {
			out, err := secretsManagerClient(t, s, cc).GetSecretValue(t.Context(),
				&secretsmanager.GetSecretValueInput{SecretId: aws.String(storeSecret)})
			if err != nil {
				return "", err
			}
			return aws.ToString(out.SecretString), nil
		},
	}
}

// startStoreServer starts a fake that holds the test parameter and secret.
func startStoreServer(t *testing.T) *Server {
	t.Helper()
	s := startServer(t, Options{Now: newFakeClock().Now})
	s.PutParameter(storeParameter, testPrivateKey)
	s.PutSecret(storeSecret, testPrivateKey)
	return s
}

// TestSecretStoresSigV4 checks that SSM and Secrets Manager verify the
// signature of the real clients' requests, and of requests altered after
// signing, with the awsJson error codes; and that such an error is not
// retried.
func TestSecretStoresSigV4(t *testing.T) {
	t.Parallel()
	s := startStoreServer(t)
	calls := storeCalls(s)

	t.Run("sdk", func(t *testing.T) {
		tests := []struct {
			name, op string
			cc       clientConfig
			wantCode string
		}{
			{"ssm right credentials", "GetParameter", clientConfig{}, ""},
			{"ssm wrong secret", "GetParameter", clientConfig{secret: "wrong"}, "InvalidSignatureException"},
			{"ssm unknown key", "GetParameter", clientConfig{keyID: "AKIDUNKNOWN"}, "UnrecognizedClientException"},
			{"secrets manager right credentials", "GetSecretValue", clientConfig{}, ""},
			{"secrets manager wrong secret", "GetSecretValue", clientConfig{secret: "wrong"}, "InvalidSignatureException"},
			{"secrets manager unknown key", "GetSecretValue", clientConfig{keyID: "AKIDUNKNOWN"}, "UnrecognizedClientException"},
		}
		for _, tc := range tests {
			// Sequential: each case counts the calls of its operation.
			t.Run(tc.name, func(t *testing.T) {
				before := s.CallCount(tc.op)
				tc.cc.attempts = 3
				value, err := calls[tc.op](t, tc.cc)
				if tc.wantCode == "" {
					if err != nil {
						t.Fatalf("got error %v, want nil", err)
					}
					if value != testPrivateKey {
						t.Errorf("value: got %q, want %q", value, testPrivateKey)
					}
				} else {
					if got := errorCode(err); got != tc.wantCode {
						t.Errorf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
					}
					if got := errorStatus(err); got != http.StatusForbidden {
						t.Errorf("status: got %d, want %d", got, http.StatusForbidden)
					}
				}
				if got := s.CallCount(tc.op) - before; got != 1 {
					t.Errorf("calls: got %d, want 1", got)
				}
			})
		}
	})

	t.Run("raw", func(t *testing.T) {
		getParameter := rawRequest{ServiceSSM, DefaultRegion, ssmTargetPrefix + "GetParameter",
			`{"Name":"/bastion/host_ed25519","WithDecryption":true}`}
		getSecret := rawRequest{ServiceSecretsManager, DefaultRegion, secretsManagerTargetPrefix + "GetSecretValue",
			`{"SecretId":"bastion/host_ed25519"}`}
		tests := []struct {
			name       string
			rr         rawRequest
			tamper     func(*http.Request)
			wantStatus int
			wantCode   string
		}{
			{name: "ssm intact", rr: getParameter, wantStatus: http.StatusOK},
			{
				name: "ssm name tampered", rr: getParameter,
				tamper:     func(r *http.Request) { setBody(r, `{"Name":"/bastion/host_rsa_key","WithDecryption":true}`) },
				wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
			},
			{
				name: "ssm target tampered", rr: getParameter,
				tamper:     func(r *http.Request) { r.Header.Set("X-Amz-Target", ssmTargetPrefix+"GetParameters") },
				wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
			},
			{
				name: "ssm unsigned", rr: getParameter,
				tamper:     func(r *http.Request) { r.Header.Del("Authorization") },
				wantStatus: http.StatusForbidden, wantCode: "MissingAuthenticationTokenException",
			},
			{
				name:       "ssm signed for secrets manager",
				rr:         rawRequest{ServiceSecretsManager, DefaultRegion, getParameter.target, getParameter.body},
				wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
			},
			{name: "secrets manager intact", rr: getSecret, wantStatus: http.StatusOK},
			{
				name: "secrets manager id tampered", rr: getSecret,
				tamper:     func(r *http.Request) { setBody(r, `{"SecretId":"bastion/host_ca_ed25519"}`) },
				wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
			},
			{
				name:       "secrets manager signed for ssm",
				rr:         rawRequest{ServiceSSM, DefaultRegion, getSecret.target, getSecret.body},
				wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
			},
			{
				name:       "unknown ssm operation",
				rr:         rawRequest{ServiceSSM, DefaultRegion, ssmTargetPrefix + "PutParameter", `{}`},
				wantStatus: http.StatusBadRequest, wantCode: "UnknownOperationException",
			},
			{
				name:       "unknown secrets manager operation",
				rr:         rawRequest{ServiceSecretsManager, DefaultRegion, secretsManagerTargetPrefix + "DeleteSecret", `{}`},
				wantStatus: http.StatusBadRequest, wantCode: "UnknownOperationException",
			},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				req := newSignedRequest(t, s, tc.rr, s.AccessKeyID(), s.SecretAccessKey())
				if tc.tamper != nil {
					tc.tamper(req)
				}
				status, code := doRaw(t, req)
				if status != tc.wantStatus || code != tc.wantCode {
					t.Errorf("answer: got %d %q, want %d %q", status, code, tc.wantStatus, tc.wantCode)
				}
			})
		}
	})
}

// TestSecretStoresFaults checks that faults set by operation name apply to
// GetParameter and GetSecretValue, and only to the operation named.
func TestSecretStoresFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		faultOp, op  string
		fault        Fault
		attempts     int
		wantCode     string
		wantStatuses []int
	}{
		{
			name:    "ssm throttled then retried",
			faultOp: "GetParameter", op: "GetParameter",
			fault: Fault{ThrottleFirst: 1}, attempts: 2,
			wantStatuses: []int{400, 200},
		},
		{
			name:    "secrets manager server error then retried",
			faultOp: "GetSecretValue", op: "GetSecretValue",
			fault: Fault{ServerErrorFirst: 1}, attempts: 2,
			wantStatuses: []int{500, 200},
		},
		{
			name:    "ssm access denied",
			faultOp: "GetParameter", op: "GetParameter",
			fault: Fault{ErrorCode: "AccessDeniedException"}, attempts: 3,
			wantCode: "AccessDeniedException", wantStatuses: []int{400},
		},
		{
			name:    "secrets manager kms decryption failure",
			faultOp: "GetSecretValue", op: "GetSecretValue",
			fault: Fault{ErrorCode: "DecryptionFailure"}, attempts: 3,
			wantCode: "DecryptionFailure", wantStatuses: []int{400},
		},
		{
			name:    "secrets manager malformed",
			faultOp: "GetSecretValue", op: "GetSecretValue",
			fault: Fault{Malformed: true}, attempts: 1,
			wantCode: "", wantStatuses: []int{200},
		},
		{
			name:    "fault on the other operation",
			faultOp: "GetSecretValue", op: "GetParameter",
			fault: Fault{ErrorCode: "AccessDeniedException"}, attempts: 1,
			wantStatuses: []int{200},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startStoreServer(t)
			s.SetFault(tc.faultOp, tc.fault)
			value, err := storeCalls(s)[tc.op](t, clientConfig{attempts: tc.attempts})
			switch {
			case tc.fault.Malformed:
				if err == nil {
					t.Errorf("got value %q, want a deserialization error", value)
				}
			case tc.wantCode != "":
				if got := errorCode(err); got != tc.wantCode {
					t.Errorf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
				}
			case err != nil:
				t.Errorf("got error %v, want nil", err)
			case value != testPrivateKey:
				t.Errorf("value: got %q, want %q", value, testPrivateKey)
			}
			var statuses []int
			for _, c := range s.Calls() {
				statuses = append(statuses, c.Status)
			}
			if !slices.Equal(statuses, tc.wantStatuses) {
				t.Errorf("statuses: got %v, want %v", statuses, tc.wantStatuses)
			}
		})
	}
}
