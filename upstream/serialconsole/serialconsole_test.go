package serialconsole

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go"
	"golang.org/x/crypto/ssh"

	"bastion/internal/testkit"
	"bastion/upstream"
)

// fakeAPI records SendSerialConsoleSSHPublicKey calls and answers err.
type fakeAPI struct {
	mu    sync.Mutex
	calls []*ec2instanceconnect.SendSerialConsoleSSHPublicKeyInput
	err   error
}

func (f *fakeAPI) SendSerialConsoleSSHPublicKey(_ context.Context, in *ec2instanceconnect.SendSerialConsoleSSHPublicKeyInput, _ ...func(*ec2instanceconnect.Options)) (*ec2instanceconnect.SendSerialConsoleSSHPublicKeyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, in)
	if f.err != nil {
		return nil, f.err
	}
	return &ec2instanceconnect.SendSerialConsoleSSHPublicKeyOutput{RequestId: aws.String("req-1"), Success: true}, nil
}

// fakeInstances answers every query with its targets.
type fakeInstances struct {
	targets []upstream.Target
	asked   []upstream.Query
}

func (f *fakeInstances) Resolve(_ context.Context, q upstream.Query) ([]upstream.Target, error) {
	f.asked = append(f.asked, q)
	return f.targets, nil
}

func (f *fakeInstances) List(context.Context) ([]upstream.Target, error) { return f.targets, nil }

var web1 = upstream.Target{Provider: upstream.ProviderSerial, Name: "web-1", ID: "i-0123456789abcdef0", Region: "us-east-1"}

func newProvider(t *testing.T, api *fakeAPI, cfg Config) *Provider {
	t.Helper()
	p, err := New(&fakeInstances{}, map[string]API{"us-east-1": api, "eu-west-1": api, "xx-test-1": api}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEndpointAndFingerprints checks the built-in table and the config's
// overrides: an endpoint template replaces every region's endpoint,
// host_keys replace one region's fingerprints, and a region in neither has
// no fingerprint at all.
func TestEndpointAndFingerprints(t *testing.T) {
	const fp = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	tests := []struct {
		name, region string
		cfg          Config
		endpoint     string
		fps          []string
		source       string
	}{
		{"published", "us-east-1", Config{}, "serial-console.ec2-instance-connect.us-east-1.aws:22",
			[]string{"SHA256:dXwn5ma/xadVMeBZGEru5l2gx+yI5LDiJaLUcz0FMmw"}, SourcePublished},
		{"published api.aws", "af-south-1", Config{}, "ec2-serial-console.af-south-1.api.aws:22",
			[]string{"SHA256:RMWWZ2fVePeJUqzjO5jL2KIgXsczoHlz21Ed00biiWI"}, SourcePublished},
		{"unpublished", "xx-test-1", Config{}, "serial-console.ec2-instance-connect.xx-test-1.aws:22", nil, ""},
		{"config", "us-east-1", Config{Endpoint: "127.0.0.1:2022", HostKeys: map[string][]string{"us-east-1": {fp}}}, "127.0.0.1:2022", []string{fp}, SourceConfig},
		{"config other region", "eu-west-1", Config{Endpoint: "sc.{region}.example:22", HostKeys: map[string][]string{"us-east-1": {fp}}}, "sc.eu-west-1.example:22",
			[]string{"SHA256:h2AaGAWO4Hathhtm6ezs3Bj7udgUxi2qTrHjZAwCW6E"}, SourcePublished},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t, &fakeAPI{}, tc.cfg)
			if got := p.Endpoint(tc.region); got != tc.endpoint {
				t.Errorf("Endpoint(%s) = %q, want %q", tc.region, got, tc.endpoint)
			}
			fps, source := p.Fingerprints(tc.region)
			if strings.Join(fps, ",") != strings.Join(tc.fps, ",") || source != tc.source {
				t.Errorf("Fingerprints(%s) = %v, %q; want %v, %q", tc.region, fps, source, tc.fps, tc.source)
			}
		})
	}
}

// TestPublishedTable checks every built-in fingerprint is well formed.
func TestPublishedTable(t *testing.T) {
	for region, e := range published {
		if !upstream.IsRegion(region) || e.host == "" || !strings.HasPrefix(e.fingerprint, "SHA256:") || len(e.fingerprint) != 7+43 {
			t.Errorf("published[%s] = %+v: want a region, a host and a SHA256 fingerprint", region, e)
		}
	}
}

// TestCredentials checks one connection's credentials: a fresh ed25519 key
// pushed for serial port 0, the user <id>.port0 at the region's endpoint
// through the Dial hook, and a host key check by fingerprint.
func TestCredentials(t *testing.T) {
	endpointKey, otherKey := testkit.NewSigner(t), testkit.NewSigner(t)
	var dialed []string
	api := &fakeAPI{}
	p := newProvider(t, api, Config{
		Endpoint: "127.0.0.1:1",
		HostKeys: map[string][]string{"us-east-1": {ssh.FingerprintSHA256(endpointKey.PublicKey())}},
		Dial: func(_ context.Context, network, addr string) (net.Conn, error) {
			dialed = append(dialed, network+" "+addr)
			return nil, errors.New("not dialling in a unit test")
		},
	})
	c1, err := p.Credentials(t.Context(), web1, Port)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := p.Credentials(t.Context(), web1, Port)
	if err != nil {
		t.Fatal(err)
	}
	if len(api.calls) != 2 {
		t.Fatalf("pushes: %d, want 2", len(api.calls))
	}
	in := api.calls[0]
	if aws.ToString(in.InstanceId) != web1.ID || in.SerialPort != 0 {
		t.Errorf("push input: instance %q port %d, want %s port 0", aws.ToString(in.InstanceId), in.SerialPort, web1.ID)
	}
	pushed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(aws.ToString(in.SSHPublicKey)))
	if err != nil || pushed.Type() != ssh.KeyAlgoED25519 || string(pushed.Marshal()) != string(c1.Signer.PublicKey().Marshal()) {
		t.Errorf("pushed key %v (%v): want the credentials' ed25519 key", pushed, err)
	}
	if string(c1.Signer.PublicKey().Marshal()) == string(c2.Signer.PublicKey().Marshal()) {
		t.Error("two connections got the same key, want a fresh one each")
	}
	if c1.User != web1.ID+".port0" || c1.Addr != "127.0.0.1:1" || c1.HostKeySource != SourceConfig || c1.RequestID != "req-1" {
		t.Errorf("credentials: user %q addr %q source %q request %q", c1.User, c1.Addr, c1.HostKeySource, c1.RequestID)
	}
	if c1.Dial == nil {
		t.Fatal("no Dial hook")
	}
	c1.Dial(t.Context())
	if len(dialed) != 1 || dialed[0] != "tcp 127.0.0.1:1" {
		t.Errorf("dialled %v, want tcp 127.0.0.1:1", dialed)
	}
	if err := c1.HostKeyCallback(c1.Addr, nil, endpointKey.PublicKey()); err != nil {
		t.Errorf("endpoint's own key refused: %v", err)
	}
	err = c1.HostKeyCallback(c1.Addr, nil, otherKey.PublicKey())
	var mismatch *upstream.HostKeyMismatchError
	if !errors.As(err, &mismatch) || !strings.Contains(upstream.PublicMessage(err), "not in providers.ec2.serial_console.host_keys.us-east-1") {
		t.Errorf("another key: %v (%q), want a mismatch naming the config", err, upstream.PublicMessage(err))
	}
}

// TestCredentialsRefusals checks what is refused before any key is pushed:
// a user other than port0, and a region without a known fingerprint.
func TestCredentialsRefusals(t *testing.T) {
	api := &fakeAPI{}
	p := newProvider(t, api, Config{})
	_, err := p.Credentials(t.Context(), web1, "root")
	if msg := upstream.PublicMessage(err); !strings.Contains(msg, "port0") {
		t.Errorf("root: %q, want a sentence naming port0", msg)
	}
	unknown := web1
	unknown.Region = "xx-test-1"
	_, err = p.Credentials(t.Context(), unknown, Port)
	if msg := upstream.PublicMessage(err); !strings.Contains(msg, "no host key fingerprint is known") {
		t.Errorf("unpublished region: %q, want no fingerprint known", msg)
	}
	if len(api.calls) != 0 {
		t.Errorf("pushes: %d, want none", len(api.calls))
	}
}

// TestCredentialsAWSErrors checks that the errors a person can act on reach
// them as AWS's documented sentence with the code, on one line.
func TestCredentialsAWSErrors(t *testing.T) {
	tests := []struct{ code, want string }{
		{"SerialConsoleAccessDisabledException", "Your account is not authorized to use the EC2 Serial Console."},
		{"EC2InstanceTypeInvalidException", "Only Nitro instance types are currently supported."},
		{"SerialConsoleSessionLimitExceededException", "The instance currently has 1 active serial console session. Only 1 session is supported at a time."},
		{"ThrottlingException", "The requests were made too frequently and have been throttled."},
		{"SomethingNewException", "EC2 Instance Connect SendSerialConsoleSSHPublicKey failed: SomethingNewException"},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			p := newProvider(t, &fakeAPI{err: &smithy.GenericAPIError{Code: tc.code, Message: "from AWS"}}, Config{})
			_, err := p.Credentials(t.Context(), web1, Port)
			msg := upstream.PublicMessage(err)
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.code) || strings.ContainsAny(msg, "\r\n") {
				t.Errorf("%s: %q, want one line with %q and the code", tc.code, msg, tc.want)
			}
		})
	}
}

// TestResolveOnlySerial checks that only .serial queries resolve, so that
// "web-1" alone is never ambiguous between the instance and its console.
func TestResolveOnlySerial(t *testing.T) {
	inst := &fakeInstances{targets: []upstream.Target{{Provider: upstream.ProviderEC2, Name: "web-1", ID: web1.ID, Region: "us-east-1"}}}
	p, err := New(inst, map[string]API{"us-east-1": &fakeAPI{}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []upstream.Query{{Name: "web-1"}, {Name: "web-1", Provider: upstream.ProviderEC2}} {
		if ts, _ := p.Resolve(t.Context(), q); len(ts) != 0 {
			t.Errorf("Resolve(%+v) = %v, want nothing", q, ts)
		}
	}
	ts, err := p.Resolve(t.Context(), upstream.Query{Name: "web-1", Provider: upstream.ProviderSerial})
	if err != nil || len(ts) != 1 || ts[0].Provider != upstream.ProviderSerial {
		t.Errorf("Resolve(web-1.serial) = %v, %v; want the instance as a serial target", ts, err)
	}
	if len(inst.asked) != 1 || inst.asked[0].Provider != upstream.ProviderEC2 {
		t.Errorf("asked the EC2 finder %v, want one EC2 query", inst.asked)
	}
}
