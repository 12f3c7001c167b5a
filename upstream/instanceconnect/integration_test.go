package instanceconnect_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
	"bastion/internal/testkit"
	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/instanceconnect"
)

const (
	idWeb  = "i-0123456789abcdef0"
	idDup1 = "i-0aaaaaaaaaaaaaaa1"
	idDup2 = "i-0aaaaaaaaaaaaaaa2"
	idBare = "i-0bbbbbbb"
)

// env is a fake AWS with EC2 instances in us-east-1 and eu-west-1.
type env struct {
	fake   *awsfake.Server
	awsCfg aws.Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s, err := awsfake.Start(awsfake.Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("starting fake: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	s.AddEC2Instance(awsfake.EC2Instance{ID: idWeb, Region: "us-east-1", PrivateIP: "10.0.0.10", PublicIP: "198.51.100.10",
		Tags: map[string]string{"Name": "web-1", "env": "staging"}})
	s.AddEC2Instance(awsfake.EC2Instance{ID: idDup1, Region: "us-east-1", PrivateIP: "10.0.0.11", Tags: map[string]string{"Name": "dup"}})
	s.AddEC2Instance(awsfake.EC2Instance{ID: idDup2, Region: "eu-west-1", PrivateIP: "10.1.0.11", Tags: map[string]string{"Name": "dup"}})
	s.AddEC2Instance(awsfake.EC2Instance{ID: idBare, Region: "us-east-1", PrivateIP: "10.0.0.12"})
	s.AddEC2Instance(awsfake.EC2Instance{ID: "i-0ccccccccccccccc1", Region: "us-east-1", PrivateIP: "10.0.0.13", State: "stopped",
		Tags: map[string]string{"Name": "old"}})

	none := filepath.Join(t.TempDir(), "none")
	cfg, err := awsutil.LoadConfig(context.Background(),
		config.WithHTTPClient(noKeepAlive()),
		config.WithRegion("us-east-1"),
		config.WithBaseEndpoint(s.URL()),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.AccessKeyID(), s.SecretAccessKey(), "")),
		config.WithSharedConfigFiles([]string{none}),
		config.WithSharedCredentialsFiles([]string{none}),
	)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return &env{fake: s, awsCfg: cfg}
}

func (e *env) provider(t *testing.T, cfg instanceconnect.Config) *instanceconnect.Provider {
	t.Helper()
	cfg.Regions = []string{"us-east-1", "eu-west-1"}
	if cfg.KnownHosts == "" {
		cfg.KnownHosts = filepath.Join(t.TempDir(), "ec2_known_hosts")
	}
	cfg.Logger = zaptest.NewLogger(t)
	p, err := instanceconnect.New(e.awsCfg, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func resolveOne(t *testing.T, p *instanceconnect.Provider, name string) upstream.Target {
	t.Helper()
	got, err := p.Resolve(context.Background(), upstream.Query{Name: name})
	if err != nil {
		t.Fatalf("Resolve(%s): %v", name, err)
	}
	if len(got) != 1 {
		t.Fatalf("Resolve(%s) = %v, want one target", name, got)
	}
	return got[0]
}

func newHostKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noKeepAlive returns the SDK's HTTP client without connection reuse, so
// that no idle connection delays the fake's Close (http.Server.Shutdown
// waits up to 5s for connections that never sent a request). It stays a
// *awshttp.BuildableClient, which AWS_CA_BUNDLE requires.
func noKeepAlive() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.DisableKeepAlives = true })
}

// handshake runs an SSH handshake over TCP loopback between a client using
// c and a server with hostKey that admits, like an instance with EC2
// Instance Connect, the keys the fake holds for instanceID and the user.
func handshake(t *testing.T, fake *awsfake.Server, instanceID string, c *upstream.Credentials, hostKey ssh.Signer) error {
	t.Helper()
	srvCfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range fake.PushedKeys(instanceID, meta.User()) {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, fmt.Errorf("key not pushed for %s", meta.User())
		},
	}
	srvCfg.AddHostKey(hostKey)

	return testkit.HandshakeOnce(t, srvCfg, c.Addr, &ssh.ClientConfig{
		User:              c.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(c.Signer)},
		HostKeyCallback:   c.HostKeyCallback,
		HostKeyAlgorithms: c.HostKeyAlgorithms,
		Timeout:           5 * time.Second,
	})
}

func TestIntegrationResolve(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.provider(t, instanceconnect.Config{})
	tests := []struct {
		name string
		want []string
	}{
		{name: idWeb, want: []string{"web-1.us-east-1.ec2"}},
		{name: idBare, want: []string{idBare + ".us-east-1.ec2"}},
		{name: "i-0ddddddddddddddd1"},
		{name: "web-1", want: []string{"web-1.us-east-1.ec2"}},
		{name: "dup", want: []string{"dup.us-east-1.ec2", "dup.eu-west-1.ec2"}},
		{name: "nope"},
		{name: "old"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Resolve(context.Background(), upstream.Query{Name: tc.name})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			var names []string
			for _, tg := range got {
				names = append(names, tg.String())
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("Resolve(%s) = %v, want %v", tc.name, names, tc.want)
			}
		})
	}
	tg := resolveOne(t, p, "web-1")
	if tg.ID != idWeb || tg.Zone != "us-east-1a" || tg.Tags["env"] != "staging" {
		t.Errorf("target = %+v, want %s in us-east-1a with env=staging", tg, idWeb)
	}
}

func TestIntegrationCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.provider(t, instanceconnect.Config{})
	tg := resolveOne(t, p, "web-1")

	var pushed [][]byte
	for i := range 2 {
		c, err := p.Credentials(context.Background(), tg, "ec2-user")
		if err != nil {
			t.Fatalf("Credentials #%d: %v", i, err)
		}
		if got, want := c.Addr, "10.0.0.10:22"; got != want {
			t.Errorf("Addr = %q, want %q", got, want)
		}
		if c.RequestID == "" {
			t.Error("RequestID is empty")
		}
		if time.Until(c.Expires) > instanceconnect.KeyLifetime {
			t.Errorf("Expires in %v, want at most %v", time.Until(c.Expires), instanceconnect.KeyLifetime)
		}
		pushed = append(pushed, c.Signer.PublicKey().Marshal())
	}
	keys := e.fake.PushedKeys(idWeb, "ec2-user")
	if len(keys) != 2 {
		t.Fatalf("fake holds %d pushed keys, want 2", len(keys))
	}
	for i, k := range keys {
		if !bytes.Equal(k.Marshal(), pushed[i]) {
			t.Errorf("pushed key %d is not the signer's key", i)
		}
	}
	if bytes.Equal(pushed[0], pushed[1]) {
		t.Error("both calls pushed the same key, want a fresh key per call")
	}
	// Resolve's description was reused: one DescribeInstances per region.
	if got := e.fake.CallCount("DescribeInstances"); got != 2 {
		t.Errorf("DescribeInstances calls = %d, want 2", got)
	}
	for _, c := range e.fake.Calls() {
		if c.Operation == "SendSSHPublicKey" && c.Params["AvailabilityZone"] != "us-east-1a" {
			t.Errorf("SendSSHPublicKey AvailabilityZone = %q, want us-east-1a", c.Params["AvailabilityZone"])
		}
	}
}

func TestIntegrationNoPublicAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.provider(t, instanceconnect.Config{Address: instanceconnect.AddressPublic})
	_, err := p.Credentials(context.Background(), resolveOne(t, p, idBare), "ec2-user")
	if got, want := upstream.PublicMessage(err), "this EC2 instance has no public IP address"; got != want {
		t.Errorf("PublicMessage(%v) = %q, want %q", err, got, want)
	}
	if got := e.fake.CallCount("SendSSHPublicKey"); got != 0 {
		t.Errorf("SendSSHPublicKey calls = %d, want 0", got)
	}
}

func TestIntegrationTOFU(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	knownHosts := filepath.Join(t.TempDir(), "state", "ec2_known_hosts")
	var mu sync.Mutex
	var learned []string
	p := e.provider(t, instanceconnect.Config{
		KnownHosts: knownHosts,
		HostKeys:   "tofu",
		OnHostKeyLearned: func(id string, key ssh.PublicKey) {
			mu.Lock()
			defer mu.Unlock()
			learned = append(learned, id+" "+ssh.FingerprintSHA256(key))
		},
	})
	tg := resolveOne(t, p, "web-1")
	hostKey, impostor := newHostKey(t), newHostKey(t)

	connect := func(key ssh.Signer) error {
		t.Helper()
		c, err := p.Credentials(context.Background(), tg, "ec2-user")
		if err != nil {
			t.Fatalf("Credentials: %v", err)
		}
		return handshake(t, e.fake, idWeb, c, key)
	}

	if err := connect(hostKey); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	want := []string{idWeb + " " + ssh.FingerprintSHA256(hostKey.PublicKey())}
	if !slices.Equal(learned, want) {
		t.Errorf("learned %v, want %v", learned, want)
	}
	b, err := os.ReadFile(knownHosts)
	if err != nil {
		t.Fatalf("reading known_hosts: %v", err)
	}
	if got, want := string(b), idWeb+" "+string(ssh.MarshalAuthorizedKey(hostKey.PublicKey())); got != want {
		t.Errorf("known_hosts = %q, want %q", got, want)
	}

	if err := connect(hostKey); err != nil {
		t.Errorf("second connection: %v", err)
	}
	if len(learned) != 1 {
		t.Errorf("learned %d keys, want 1", len(learned))
	}

	err = connect(impostor)
	var mm *upstream.HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("connection with a changed host key: got %v, want a HostKeyMismatchError", err)
	}
	if !strings.Contains(upstream.PublicMessage(err), idWeb) {
		t.Errorf("PublicMessage = %q, want it to name %s", upstream.PublicMessage(err), idWeb)
	}

	// A new provider (a restart) remembers the key.
	p2 := e.provider(t, instanceconnect.Config{KnownHosts: knownHosts})
	c, err := p2.Credentials(context.Background(), tg, "ec2-user")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, e.fake, idWeb, c, impostor); !errors.As(err, &mm) {
		t.Errorf("after restart, changed host key: got %v, want a HostKeyMismatchError", err)
	}
}

func TestIntegrationPinned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hostKey := newHostKey(t)
	knownHosts := filepath.Join(t.TempDir(), "pinned")
	if err := os.WriteFile(knownHosts, []byte(idWeb+" "+string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))), 0o600); err != nil {
		t.Fatal(err)
	}
	p := e.provider(t, instanceconnect.Config{KnownHosts: knownHosts, HostKeys: "pinned"})

	c, err := p.Credentials(context.Background(), resolveOne(t, p, "web-1"), "ec2-user")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, e.fake, idWeb, c, hostKey); err != nil {
		t.Errorf("pinned host: %v", err)
	}

	c, err = p.Credentials(context.Background(), resolveOne(t, p, idBare), "ec2-user")
	if err != nil {
		t.Fatal(err)
	}
	err = handshake(t, e.fake, idBare, c, newHostKey(t))
	if !errors.Is(err, upstream.ErrHostKeyUnknown) {
		t.Errorf("unpinned host: got %v, want ErrHostKeyUnknown", err)
	}
	if got, want := upstream.PublicMessage(err), "no pinned host key for "+idBare; got != want {
		t.Errorf("PublicMessage = %q, want %q", got, want)
	}
}

func TestIntegrationFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		op          string
		fault       awsfake.Fault
		callTimeout time.Duration
		wantErr     string
	}{
		{name: "describe denied", op: "DescribeInstances", fault: awsfake.Fault{ErrorCode: "UnauthorizedOperation"},
			wantErr: "EC2 DescribeInstances failed: UnauthorizedOperation"},
		{name: "describe hangs", op: "DescribeInstances", fault: awsfake.Fault{Hang: true}, callTimeout: 300 * time.Millisecond,
			wantErr: "EC2 DescribeInstances timed out after 300ms"},
		{name: "push denied", op: "SendSSHPublicKey", fault: awsfake.Fault{ErrorCode: "AuthException"},
			wantErr: "EC2 Instance Connect SendSSHPublicKey failed: AuthException"},
		{name: "push throttled once", op: "SendSSHPublicKey", fault: awsfake.Fault{ThrottleFirst: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := e.provider(t, instanceconnect.Config{CallTimeout: tc.callTimeout})
			e.fake.SetFault(tc.op, tc.fault)
			start := time.Now()
			var err error
			if tgs, rerr := p.Resolve(context.Background(), upstream.Query{Name: idWeb}); rerr != nil {
				err = rerr
			} else {
				_, err = p.Credentials(context.Background(), tgs[0], "ec2-user")
			}
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Errorf("took %v", elapsed)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("got %v, want success", err)
				}
				return
			}
			if got := upstream.PublicMessage(err); got != tc.wantErr {
				t.Errorf("PublicMessage(%v) = %q, want %q", err, got, tc.wantErr)
			}
		})
	}
}
