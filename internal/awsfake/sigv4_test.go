package awsfake

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"golang.org/x/crypto/ssh"
)

// TestSigV4SDKClients checks that the real SDK clients are rejected when
// they sign with the wrong credentials, with each protocol's error code,
// and that such an error is not retried.
func TestSigV4SDKClients(t *testing.T) {
	t.Parallel()
	// A clock far from the real time: the fake's answers must not make the
	// SDK take a signature error for clock skew and retry it.
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now})
	s.AddLightsailInstance(LightsailInstance{Name: "web-1"})
	s.AddEC2Instance(EC2Instance{ID: eicInstance, PrivateIP: "10.0.0.5"})
	key, _ := newEd25519Key(t)

	type call func(t *testing.T, cc clientConfig) error
	getInstance := func(t *testing.T, cc clientConfig) error {
		_, err := lightsailClient(t, s, cc).GetInstance(t.Context(), &lightsail.GetInstanceInput{InstanceName: aws.String("web-1")})
		return err
	}
	describe := func(t *testing.T, cc clientConfig) error {
		_, err := ec2Client(t, s, cc).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{eicInstance}})
		return err
	}
	sendKey := func(t *testing.T, cc clientConfig) error {
		_, err := eicClient(t, s, cc).SendSSHPublicKey(t.Context(), &ec2instanceconnect.SendSSHPublicKeyInput{
			InstanceId:     aws.String(eicInstance),
			InstanceOSUser: aws.String("ec2-user"),
			SSHPublicKey:   aws.String(string(ssh.MarshalAuthorizedKey(key))),
		})
		return err
	}
	tests := []struct {
		name     string
		op       string
		call     call
		cc       clientConfig
		wantCode string
	}{
		{"lightsail right credentials", "GetInstance", getInstance, clientConfig{}, ""},
		{"lightsail wrong secret", "GetInstance", getInstance, clientConfig{secret: "wrong"}, "InvalidSignatureException"},
		{"lightsail unknown key", "GetInstance", getInstance, clientConfig{keyID: "AKIDUNKNOWN"}, "UnrecognizedClientException"},
		{"ec2 right credentials", "DescribeInstances", describe, clientConfig{}, ""},
		{"ec2 wrong secret", "DescribeInstances", describe, clientConfig{secret: "wrong"}, "SignatureDoesNotMatch"},
		{"ec2 unknown key", "DescribeInstances", describe, clientConfig{keyID: "AKIDUNKNOWN"}, "AuthFailure"},
		{"instance connect right credentials", "SendSSHPublicKey", sendKey, clientConfig{}, ""},
		{"instance connect wrong secret", "SendSSHPublicKey", sendKey, clientConfig{secret: "wrong"}, "InvalidSignatureException"},
	}
	for _, tc := range tests {
		// Sequential: each case counts the calls of its operation.
		t.Run(tc.name, func(t *testing.T) {
			before := s.CallCount(tc.op)
			tc.cc.attempts = 3
			err := tc.call(t, tc.cc)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
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
			if c := lastCall(t, s); c.ErrorCode != tc.wantCode {
				t.Errorf("recorded error code: got %q, want %q", c.ErrorCode, tc.wantCode)
			}
		})
	}
}

// rawRequest is a request the test signs with the SDK's signer itself.
type rawRequest struct {
	service, region string
	// target is the X-Amz-Target of a JSON request; empty for EC2.
	target string
	body   string
}

// newSignedRequest builds rr and signs it with keyID and secret.
func newSignedRequest(t *testing.T, s *Server, rr rawRequest, keyID, secret string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+"/", strings.NewReader(rr.body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if rr.target != "" {
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", rr.target)
	} else {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hashHex([]byte(rr.body)), rr.service, rr.region, time.Now()); err != nil {
		t.Fatalf("SignHTTP: %v", err)
	}
	return req
}

// setBody replaces req's body.
func setBody(req *http.Request, body string) {
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

// doRaw sends req and returns the status and AWS error code of the answer.
func doRaw(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, responseCode(body)
}

// responseCode returns the AWS error code in an error body of either
// protocol, "" if there is none.
func responseCode(body []byte) string {
	var j struct {
		Type string `json:"__type"`
	}
	if json.Unmarshal(body, &j) == nil {
		return j.Type
	}
	var x ec2ErrorResponse
	if xml.Unmarshal(body, &x) == nil && len(x.Errors) > 0 {
		return x.Errors[0].Code
	}
	return ""
}

// TestSigV4RawRequests signs requests with the SDK's v4 signer and then
// alters them, as a man in the middle would.
func TestSigV4RawRequests(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	s.AddLightsailInstance(LightsailInstance{Name: "web-1"})
	s.AddLightsailInstance(LightsailInstance{Name: "web-2"})
	s.AddEC2Instance(EC2Instance{ID: eicInstance, PrivateIP: "10.0.0.5"})

	getInstance := rawRequest{ServiceLightsail, "us-east-1", lightsailTargetPrefix + "GetInstance", `{"instanceName":"web-1"}`}
	describe := rawRequest{ServiceEC2, "us-east-1", "", "Action=DescribeInstances&InstanceId.1=" + eicInstance + "&Version=" + ec2Version}
	tests := []struct {
		name       string
		rr         rawRequest
		keyID      string
		tamper     func(*http.Request)
		wantStatus int
		wantCode   string
	}{
		{
			name: "lightsail intact", rr: getInstance,
			wantStatus: http.StatusOK,
		},
		{
			name: "lightsail body tampered same length", rr: getInstance,
			tamper:     func(r *http.Request) { setBody(r, `{"instanceName":"web-2"}`) },
			wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
		},
		{
			name: "lightsail body tampered longer", rr: getInstance,
			tamper:     func(r *http.Request) { setBody(r, `{"instanceName":"web-1" }`) },
			wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
		},
		{
			name: "lightsail target tampered", rr: getInstance,
			tamper:     func(r *http.Request) { r.Header.Set("X-Amz-Target", lightsailTargetPrefix+"GetInstanceAccessDetails") },
			wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
		},
		{
			name: "lightsail date tampered", rr: getInstance,
			tamper: func(r *http.Request) {
				r.Header.Set("X-Amz-Date", time.Now().UTC().Add(time.Hour).Format(amzDateFormat))
			},
			wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
		},
		{
			name: "lightsail unsigned", rr: getInstance,
			tamper:     func(r *http.Request) { r.Header.Del("Authorization") },
			wantStatus: http.StatusForbidden, wantCode: "MissingAuthenticationTokenException",
		},
		{
			name: "lightsail garbled authorization", rr: getInstance,
			tamper:     func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x") },
			wantStatus: http.StatusForbidden, wantCode: "IncompleteSignatureException",
		},
		{
			name:       "lightsail signed for ec2",
			rr:         rawRequest{ServiceEC2, getInstance.region, getInstance.target, getInstance.body},
			wantStatus: http.StatusForbidden, wantCode: "InvalidSignatureException",
		},
		{
			name: "lightsail unknown key", rr: getInstance, keyID: "AKIDUNKNOWN",
			wantStatus: http.StatusForbidden, wantCode: "UnrecognizedClientException",
		},
		{
			name: "ec2 intact", rr: describe,
			wantStatus: http.StatusOK,
		},
		{
			name: "ec2 body tampered", rr: describe,
			tamper:     func(r *http.Request) { setBody(r, strings.Replace(describe.body, "def0", "def1", 1)) },
			wantStatus: http.StatusForbidden, wantCode: "SignatureDoesNotMatch",
		},
		{
			name: "ec2 unsigned", rr: describe,
			tamper:     func(r *http.Request) { r.Header.Del("Authorization") },
			wantStatus: http.StatusForbidden, wantCode: "AuthFailure",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keyID := tc.keyID
			if keyID == "" {
				keyID = s.AccessKeyID()
			}
			req := newSignedRequest(t, s, tc.rr, keyID, s.SecretAccessKey())
			if tc.tamper != nil {
				tc.tamper(req)
			}
			status, code := doRaw(t, req)
			if status != tc.wantStatus || code != tc.wantCode {
				t.Errorf("answer: got %d %q, want %d %q", status, code, tc.wantStatus, tc.wantCode)
			}
		})
	}
}
