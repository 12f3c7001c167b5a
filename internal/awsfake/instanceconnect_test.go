package awsfake

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"
)

const (
	eicInstance = "i-0123456789abcdef0"
	eicZone     = "us-east-1a"
)

// fetchKeys GETs the keys endpoint and returns the status and body.
func fetchKeys(t *testing.T, s *Server, method string, query url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL()+KeysPath+"?"+query.Encode(), nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, KeysPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp.StatusCode, string(body)
}

// parseKeys parses an authorized_keys body.
func parseKeys(t *testing.T, body string) []ssh.PublicKey {
	t.Helper()
	var keys []ssh.PublicKey
	rest := []byte(body)
	for len(bytes.TrimSpace(rest)) > 0 {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			t.Fatalf("parsing keys %q: %v", body, err)
		}
		keys = append(keys, k)
		rest = r
	}
	return keys
}

// sameKeys reports whether got and want hold the same keys in order.
func sameKeys(got, want []ssh.PublicKey) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !bytes.Equal(got[i].Marshal(), want[i].Marshal()) {
			return false
		}
	}
	return true
}

func fingerprints(keys []ssh.PublicKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = ssh.FingerprintSHA256(k)
	}
	return out
}

func TestSendSSHPublicKey(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	const ttl = 60 * time.Second
	s := startServer(t, Options{Now: clock.Now, PushedKeyTTL: ttl})
	s.AddEC2Instance(EC2Instance{ID: eicInstance, PrivateIP: "10.0.0.5"})
	client := eicClient(t, s, clientConfig{})

	first, _ := newEd25519Key(t)
	second, _ := newEd25519Key(t)
	other, _ := newEd25519Key(t)
	push := func(t *testing.T, user string, key ssh.PublicKey) {
		t.Helper()
		out, err := client.SendSSHPublicKey(t.Context(), &ec2instanceconnect.SendSSHPublicKeyInput{
			InstanceId:       aws.String(eicInstance),
			InstanceOSUser:   aws.String(user),
			SSHPublicKey:     aws.String(string(ssh.MarshalAuthorizedKey(key))),
			AvailabilityZone: aws.String(eicZone),
		})
		if err != nil {
			t.Fatalf("SendSSHPublicKey: %v", err)
		}
		if !out.Success {
			t.Errorf("Success: got false, want true")
		}
		if got, want := aws.ToString(out.RequestId), lastCall(t, s).RequestID; got != want {
			t.Errorf("RequestId: got %q, want %q", got, want)
		}
	}

	// The steps share the server and its clock, so they run in order.
	tests := []struct {
		name    string
		advance time.Duration
		push    map[string]ssh.PublicKey
		want    map[string][]ssh.PublicKey
	}{
		{
			name: "nothing pushed",
			want: map[string][]ssh.PublicKey{"ec2-user": nil, "ubuntu": nil},
		},
		{
			name: "first push",
			push: map[string]ssh.PublicKey{"ec2-user": first},
			want: map[string][]ssh.PublicKey{"ec2-user": {first}, "ubuntu": nil},
		},
		{
			name:    "second push and another user",
			advance: 30 * time.Second,
			push:    map[string]ssh.PublicKey{"ec2-user": second, "ubuntu": other},
			want:    map[string][]ssh.PublicKey{"ec2-user": {first, second}, "ubuntu": {other}},
		},
		{
			name:    "first expired",
			advance: 30 * time.Second,
			want:    map[string][]ssh.PublicKey{"ec2-user": {second}, "ubuntu": {other}},
		},
		{
			name:    "all expired",
			advance: ttl,
			want:    map[string][]ssh.PublicKey{"ec2-user": nil, "ubuntu": nil},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(tc.advance)
			for user, key := range tc.push {
				push(t, user, key)
			}
			for user, want := range tc.want {
				if got := s.PushedKeys(eicInstance, user); !sameKeys(got, want) {
					t.Errorf("PushedKeys(%s): got %v, want %v", user, fingerprints(got), fingerprints(want))
				}
				status, body := fetchKeys(t, s, http.MethodGet, url.Values{"instance_id": {eicInstance}, "os_user": {user}})
				if status != http.StatusOK {
					t.Fatalf("GET keys for %s: got status %d, want %d", user, status, http.StatusOK)
				}
				if got := parseKeys(t, body); !sameKeys(got, want) {
					t.Errorf("GET keys for %s: got %v, want %v", user, fingerprints(got), fingerprints(want))
				}
			}
		})
	}
}

func TestSendSSHPublicKeyErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	s.AddEC2Instance(EC2Instance{ID: eicInstance, PrivateIP: "10.0.0.5"})
	s.AddEC2Instance(EC2Instance{ID: "i-0123456789abcdef1", PrivateIP: "10.0.0.6", State: "stopped"})
	s.AddEC2Instance(EC2Instance{ID: "i-0123456789abcdef2", PrivateIP: "10.1.0.6", Region: "eu-west-1"})

	ed, _ := newEd25519Key(t)
	edKey := string(ssh.MarshalAuthorizedKey(ed))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatalf("generating rsa key: %v", err)
	}
	smallPub, err := ssh.NewPublicKey(&small.PublicKey)
	if err != nil {
		t.Fatalf("NewPublicKey: %v", err)
	}
	smallKey := string(ssh.MarshalAuthorizedKey(smallPub))

	tests := []struct {
		name                      string
		instance, user, key, zone string
		wantCode                  string
	}{
		{"unknown instance", "i-0fedcba9876543210", "ec2-user", edKey, eicZone, "EC2InstanceNotFoundException"},
		{"instance in another region", "i-0123456789abcdef2", "ec2-user", edKey, "", "EC2InstanceNotFoundException"},
		{"wrong zone", eicInstance, "ec2-user", edKey, "us-east-1b", "InvalidArgsException"},
		{"malformed zone", eicInstance, "ec2-user", edKey, "nowhere", "InvalidArgsException"},
		{"stopped instance", "i-0123456789abcdef1", "ec2-user", edKey, eicZone, "EC2InstanceStateInvalidException"},
		{"malformed instance id", "web-1", "ec2-user", edKey, eicZone, "InvalidArgsException"},
		{"bad os user", eicInstance, "ec2 user", edKey, eicZone, "InvalidArgsException"},
		{"rsa key too small", eicInstance, "ec2-user", smallKey, eicZone, "InvalidArgsException"},
		{"not a key", eicInstance, "ec2-user", "ssh-ed25519 " + strings.Repeat("A", 80), eicZone, "InvalidArgsException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := &ec2instanceconnect.SendSSHPublicKeyInput{
				InstanceId:     aws.String(tc.instance),
				InstanceOSUser: aws.String(tc.user),
				SSHPublicKey:   aws.String(tc.key),
			}
			if tc.zone != "" {
				in.AvailabilityZone = aws.String(tc.zone)
			}
			_, err := eicClient(t, s, clientConfig{}).SendSSHPublicKey(t.Context(), in)
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			if got := errorCode(err); got != tc.wantCode {
				t.Errorf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
			}
			if got := s.PushedKeys(tc.instance, tc.user); len(got) != 0 {
				t.Errorf("PushedKeys: got %v, want none", fingerprints(got))
			}
		})
	}
}

func TestKeysEndpointErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	tests := []struct {
		name       string
		method     string
		query      url.Values
		wantStatus int
	}{
		{"unknown instance", http.MethodGet, url.Values{"instance_id": {eicInstance}, "os_user": {"ec2-user"}}, http.StatusOK},
		{"head", http.MethodHead, url.Values{"instance_id": {eicInstance}, "os_user": {"ec2-user"}}, http.StatusOK},
		{"no os user", http.MethodGet, url.Values{"instance_id": {eicInstance}}, http.StatusBadRequest},
		{"no instance", http.MethodGet, url.Values{"os_user": {"ec2-user"}}, http.StatusBadRequest},
		{"post", http.MethodPost, url.Values{"instance_id": {eicInstance}, "os_user": {"ec2-user"}}, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := fetchKeys(t, s, tc.method, tc.query)
			if status != tc.wantStatus {
				t.Errorf("status: got %d, want %d (body %q)", status, tc.wantStatus, body)
			}
			if status == http.StatusOK && body != "" {
				t.Errorf("body: got %q, want empty", body)
			}
		})
	}
	if got := len(s.Calls()); got != 0 {
		t.Errorf("Calls: got %d, want 0 (the keys endpoint is not an AWS API)", got)
	}
}
