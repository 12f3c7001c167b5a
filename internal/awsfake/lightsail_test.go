package awsfake

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/aws-sdk-go-v2/service/lightsail/types"
	"golang.org/x/crypto/ssh"
)

// newECDSAHostKey returns a fresh ecdsa-sha2-nistp256 public key.
func newECDSAHostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating ecdsa key: %v", err)
	}
	pub, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatalf("NewPublicKey: %v", err)
	}
	return pub
}

// certChecker returns a checker that trusts s's Lightsail CA, on clock.
func certChecker(s *Server, clock *fakeClock) *ssh.CertChecker {
	ca := s.LightsailCA().Marshal()
	return &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool { return bytes.Equal(auth.Marshal(), ca) },
		Clock:           clock.Now,
	}
}

func TestGetInstanceAccessDetails(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	const validity = 30 * time.Minute
	s := startServer(t, Options{Now: clock.Now, CertValidity: validity})

	ed, _ := newEd25519Key(t)
	ec := newECDSAHostKey(t)
	tests := []struct {
		name     string
		instance LightsailInstance
		wantUser string
	}{
		{
			name:     "default user one host key",
			instance: LightsailInstance{Name: "web-1", PublicIP: "203.0.113.10", HostKeys: []ssh.PublicKey{ed}},
			wantUser: "ec2-user",
		},
		{
			name:     "ubuntu two host keys",
			instance: LightsailInstance{Name: "db-1", Username: "ubuntu", PublicIP: "203.0.113.11", HostKeys: []ssh.PublicKey{ec, ed}},
			wantUser: "ubuntu",
		},
		{
			name:     "no host keys",
			instance: LightsailInstance{Name: "bare", Username: "admin", PublicIP: "203.0.113.12"},
			wantUser: "admin",
		},
	}
	client := lightsailClient(t, s, clientConfig{})
	for _, tc := range tests {
		s.AddLightsailInstance(tc.instance)
		t.Run(tc.name, func(t *testing.T) {
			out, err := client.GetInstanceAccessDetails(t.Context(), &lightsail.GetInstanceAccessDetailsInput{
				InstanceName: aws.String(tc.instance.Name),
				Protocol:     types.InstanceAccessProtocolSsh,
			})
			if err != nil {
				t.Fatalf("GetInstanceAccessDetails: %v", err)
			}
			ad := out.AccessDetails
			if got := aws.ToString(ad.Username); got != tc.wantUser {
				t.Errorf("username: got %q, want %q", got, tc.wantUser)
			}
			if got := aws.ToString(ad.InstanceName); got != tc.instance.Name {
				t.Errorf("instanceName: got %q, want %q", got, tc.instance.Name)
			}
			if got := aws.ToString(ad.IpAddress); got != tc.instance.PublicIP {
				t.Errorf("ipAddress: got %q, want %q", got, tc.instance.PublicIP)
			}
			if got := ad.Protocol; got != types.InstanceAccessProtocolSsh {
				t.Errorf("protocol: got %q, want %q", got, types.InstanceAccessProtocolSsh)
			}
			wantExpiry := clock.Now().Add(validity)
			if got := aws.ToTime(ad.ExpiresAt); !got.Equal(wantExpiry) {
				t.Errorf("expiresAt: got %v, want %v", got, wantExpiry)
			}

			// The certificate: a user cert from the fake CA, for the
			// instance's user, valid until expiresAt.
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(aws.ToString(ad.CertKey)))
			if err != nil {
				t.Fatalf("parsing certKey: %v", err)
			}
			cert, ok := pub.(*ssh.Certificate)
			if !ok {
				t.Fatalf("certKey: got %T, want *ssh.Certificate", pub)
			}
			checker := certChecker(s, clock)
			if _, err := checker.Authenticate(connMeta{tc.wantUser}, cert); err != nil {
				t.Errorf("CertChecker.Authenticate(%q): got %v, want nil", tc.wantUser, err)
			}
			if _, err := checker.Authenticate(connMeta{"root"}, cert); err == nil {
				t.Errorf("CertChecker.Authenticate(%q): got nil, want an error", "root")
			}
			if got := time.Unix(int64(cert.ValidBefore), 0); !got.Equal(wantExpiry) {
				t.Errorf("cert valid before: got %v, want %v", got, wantExpiry)
			}

			// The private key matches the certified key and can sign.
			signer, err := ssh.ParsePrivateKey([]byte(aws.ToString(ad.PrivateKey)))
			if err != nil {
				t.Fatalf("parsing privateKey: %v", err)
			}
			if !bytes.Equal(signer.PublicKey().Marshal(), cert.Key.Marshal()) {
				t.Errorf("privateKey's public key: got %s, want the certificate's key %s",
					ssh.FingerprintSHA256(signer.PublicKey()), ssh.FingerprintSHA256(cert.Key))
			}
			certSigner, err := ssh.NewCertSigner(cert, signer)
			if err != nil {
				t.Fatalf("NewCertSigner: %v", err)
			}
			data := []byte("challenge")
			sig, err := certSigner.Sign(rand.Reader, data)
			if err != nil {
				t.Fatalf("signing: %v", err)
			}
			if err := cert.Verify(data, sig); err != nil {
				t.Errorf("verifying a signature by privateKey: got %v, want nil", err)
			}

			// Host keys round-trip.
			if got, want := len(ad.HostKeys), len(tc.instance.HostKeys); got != want {
				t.Fatalf("hostKeys: got %d, want %d", got, want)
			}
			for i, hk := range ad.HostKeys {
				want := tc.instance.HostKeys[i]
				if got := aws.ToString(hk.Algorithm); got != want.Type() {
					t.Errorf("hostKeys[%d].algorithm: got %q, want %q", i, got, want.Type())
				}
				blob, err := base64.StdEncoding.DecodeString(aws.ToString(hk.PublicKey))
				if err != nil {
					t.Fatalf("hostKeys[%d].publicKey: %v", i, err)
				}
				if !bytes.Equal(blob, want.Marshal()) {
					t.Errorf("hostKeys[%d].publicKey: got %x, want %x", i, blob, want.Marshal())
				}
				if got, want := aws.ToString(hk.FingerprintSHA256), ssh.FingerprintSHA256(want); got != want {
					t.Errorf("hostKeys[%d].fingerprintSHA256: got %q, want %q", i, got, want)
				}
				if hk.WitnessedAt == nil {
					t.Errorf("hostKeys[%d].witnessedAt: got nil, want a time", i)
				}
			}
		})
	}
}

// TestGetInstanceAccessDetailsExpiry checks that the certificate expires at
// expiresAt by the server's clock.
func TestGetInstanceAccessDetailsExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, CertValidity: 10 * time.Minute})
	s.AddLightsailInstance(LightsailInstance{Name: "web-1"})
	out, err := lightsailClient(t, s, clientConfig{}).GetInstanceAccessDetails(t.Context(),
		&lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String("web-1")})
	if err != nil {
		t.Fatalf("GetInstanceAccessDetails: %v", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(aws.ToString(out.AccessDetails.CertKey)))
	if err != nil {
		t.Fatalf("parsing certKey: %v", err)
	}
	cert := pub.(*ssh.Certificate)
	checker := certChecker(s, clock)

	tests := []struct {
		name    string
		advance time.Duration
		wantOK  bool
	}{
		{"at issue", 0, true},
		{"just before expiry", 10*time.Minute - time.Second, true},
		{"after expiry", 2 * time.Second, false},
	}
	for _, tc := range tests {
		// Steps are cumulative, so they run in order, not in parallel.
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(tc.advance)
			_, err := checker.Authenticate(connMeta{"ec2-user"}, cert)
			if got := err == nil; got != tc.wantOK {
				t.Errorf("certificate accepted at %v: got %t (%v), want %t", clock.Now(), got, err, tc.wantOK)
			}
		})
	}
}

func TestGetInstanceAccessDetailsErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	s.AddLightsailInstance(LightsailInstance{Name: "web-1", Region: "us-east-1"})
	s.AddLightsailInstance(LightsailInstance{Name: "web-2", Region: "eu-west-1"})

	tests := []struct {
		name     string
		region   string
		instance string
		protocol types.InstanceAccessProtocol
		wantCode string
		// wantErr reports whether the error has the SDK type expected.
		wantErr func(error) bool
	}{
		{"unknown instance", "us-east-1", "nope", "", "NotFoundException", isNotFound},
		{"instance in another region", "eu-west-1", "web-1", "", "NotFoundException", isNotFound},
		{"instance in another region reversed", "us-east-1", "web-2", "", "NotFoundException", isNotFound},
		{"rdp", "us-east-1", "web-1", types.InstanceAccessProtocolRdp, "InvalidInputException", isInvalidInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := lightsailClient(t, s, clientConfig{region: tc.region})
			_, err := client.GetInstanceAccessDetails(t.Context(), &lightsail.GetInstanceAccessDetailsInput{
				InstanceName: aws.String(tc.instance),
				Protocol:     tc.protocol,
			})
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			if got := errorCode(err); got != tc.wantCode {
				t.Errorf("error code: got %q, want %q (error %v)", got, tc.wantCode, err)
			}
			if !tc.wantErr(err) {
				t.Errorf("error: got %T (%v), want it to wrap the SDK's %s type", err, err, tc.wantCode)
			}
			if got, want := errorStatus(err), 400; got != want {
				t.Errorf("status: got %d, want %d", got, want)
			}
		})
	}
}

func isNotFound(err error) bool {
	var nf *types.NotFoundException
	return errors.As(err, &nf)
}

func isInvalidInput(err error) bool {
	var ii *types.InvalidInputException
	return errors.As(err, &ii)
}

// TestGetInstanceAccessDetailsRegion checks that each region sees its own
// instance of a name.
func TestGetInstanceAccessDetailsRegion(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	s.AddLightsailInstance(LightsailInstance{Name: "web-1", Region: "us-east-1", PublicIP: "203.0.113.1"})
	s.AddLightsailInstance(LightsailInstance{Name: "web-1", Region: "eu-west-1", PublicIP: "198.51.100.1"})
	tests := []struct {
		region, wantIP string
	}{
		{"us-east-1", "203.0.113.1"},
		{"eu-west-1", "198.51.100.1"},
	}
	for _, tc := range tests {
		t.Run(tc.region, func(t *testing.T) {
			t.Parallel()
			out, err := lightsailClient(t, s, clientConfig{region: tc.region}).GetInstanceAccessDetails(t.Context(),
				&lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String("web-1")})
			if err != nil {
				t.Fatalf("GetInstanceAccessDetails: %v", err)
			}
			if got := aws.ToString(out.AccessDetails.IpAddress); got != tc.wantIP {
				t.Errorf("ipAddress: got %q, want %q", got, tc.wantIP)
			}
		})
	}
}

func TestGetInstance(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	tests := []struct {
		name string
		in   LightsailInstance
		// wantState and wantCode are the state name and code expected.
		wantState string
		wantCode  int32
		wantZone  string
		wantTags  map[string]string
	}{
		{
			name: "running with tags",
			in: LightsailInstance{Name: "web-1", PublicIP: "203.0.113.10", PrivateIP: "172.26.0.10",
				Tags: map[string]string{"env": "prod", "team": "web"}},
			wantState: "running", wantCode: 16, wantZone: "us-east-1a",
			wantTags: map[string]string{"env": "prod", "team": "web"},
		},
		{
			name:      "stopped without public ip",
			in:        LightsailInstance{Name: "db-1", PrivateIP: "172.26.0.11", State: "stopped", AvailabilityZone: "us-east-1c"},
			wantState: "stopped", wantCode: 80, wantZone: "us-east-1c",
			wantTags: map[string]string{},
		},
		{
			name:      "tag without value",
			in:        LightsailInstance{Name: "cache-1", PrivateIP: "172.26.0.12", Tags: map[string]string{"bastion": ""}},
			wantState: "running", wantCode: 16, wantZone: "us-east-1a",
			wantTags: map[string]string{"bastion": ""},
		},
	}
	client := lightsailClient(t, s, clientConfig{})
	for _, tc := range tests {
		s.AddLightsailInstance(tc.in)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := client.GetInstance(t.Context(), &lightsail.GetInstanceInput{InstanceName: aws.String(tc.in.Name)})
			if err != nil {
				t.Fatalf("GetInstance: %v", err)
			}
			in := out.Instance
			if got := aws.ToString(in.Name); got != tc.in.Name {
				t.Errorf("name: got %q, want %q", got, tc.in.Name)
			}
			if got := aws.ToString(in.PublicIpAddress); got != tc.in.PublicIP {
				t.Errorf("publicIpAddress: got %q, want %q", got, tc.in.PublicIP)
			}
			if got := aws.ToString(in.PrivateIpAddress); got != tc.in.PrivateIP {
				t.Errorf("privateIpAddress: got %q, want %q", got, tc.in.PrivateIP)
			}
			if in.State == nil {
				t.Fatal("state: got nil, want one")
			}
			if got := aws.ToString(in.State.Name); got != tc.wantState {
				t.Errorf("state name: got %q, want %q", got, tc.wantState)
			}
			if got := aws.ToInt32(in.State.Code); got != tc.wantCode {
				t.Errorf("state code: got %d, want %d", got, tc.wantCode)
			}
			if in.Location == nil {
				t.Fatal("location: got nil, want one")
			}
			if got := aws.ToString(in.Location.AvailabilityZone); got != tc.wantZone {
				t.Errorf("availabilityZone: got %q, want %q", got, tc.wantZone)
			}
			if got, want := in.Location.RegionName, types.RegionName(DefaultRegion); got != want {
				t.Errorf("regionName: got %q, want %q", got, want)
			}
			gotTags := make(map[string]string)
			for _, tag := range in.Tags {
				gotTags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			if fmt.Sprint(gotTags) != fmt.Sprint(tc.wantTags) {
				t.Errorf("tags: got %v, want %v", gotTags, tc.wantTags)
			}
		})
	}
}

func TestGetInstances(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	var want []string
	for i := range lightsailPageSize + 5 {
		name := fmt.Sprintf("web-%02d", i)
		want = append(want, name)
		s.AddLightsailInstance(LightsailInstance{Name: name})
	}
	s.AddLightsailInstance(LightsailInstance{Name: "elsewhere", Region: "eu-west-1"})

	tests := []struct {
		name   string
		region string
		want   []string
		pages  int
	}{
		{"two pages", "us-east-1", want, 2},
		{"one page", "eu-west-1", []string{"elsewhere"}, 1},
		{"empty region", "ap-south-1", nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := lightsailClient(t, s, clientConfig{region: tc.region})
			var got []string
			pages := 0
			var token *string
			for {
				out, err := client.GetInstances(t.Context(), &lightsail.GetInstancesInput{PageToken: token})
				if err != nil {
					t.Fatalf("GetInstances: %v", err)
				}
				pages++
				for _, in := range out.Instances {
					got = append(got, aws.ToString(in.Name))
				}
				if token = out.NextPageToken; token == nil {
					break
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("instances: got %v, want %v", got, tc.want)
			}
			if pages != tc.pages {
				t.Errorf("pages: got %d, want %d", pages, tc.pages)
			}
		})
	}
}

// TestRSAKeyPool: with keys generated ahead, every call still gets a key
// of its own, and Close stops the generator.
func TestRSAKeyPool(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{RSAKeyPool: 2})
	s.AddLightsailInstance(LightsailInstance{Name: "web-1"})
	client := lightsailClient(t, s, clientConfig{})
	seen := map[string]bool{}
	for i := range 4 {
		out, err := client.GetInstanceAccessDetails(t.Context(), &lightsail.GetInstanceAccessDetailsInput{InstanceName: aws.String("web-1")})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		key := aws.ToString(out.AccessDetails.PrivateKey)
		if seen[key] {
			t.Fatalf("call %d: got a private key already handed out", i)
		}
		seen[key] = true
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.keysDone:
	default:
		t.Error("Close returned with the key generator still running")
	}
}
