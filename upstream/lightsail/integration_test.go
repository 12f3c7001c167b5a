package lightsail_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
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
	"bastion/upstream/lightsail"
)

// env is a fake AWS with one Lightsail instance, web-1 in us-east-1, whose
// host key is hostKey.
type env struct {
	fake    *awsfake.Server
	awsCfg  aws.Config
	hostKey ssh.Signer
}

func newEnv(t *testing.T, opts ...func(*config.LoadOptions) error) *env {
	t.Helper()
	s, err := awsfake.Start(awsfake.Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("starting fake: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s.AddLightsailInstance(awsfake.LightsailInstance{
		Name: "web-1", Region: "us-east-1", Username: "ubuntu",
		PublicIP: "203.0.113.7", PrivateIP: "172.26.1.7",
		HostKeys: []ssh.PublicKey{hostKey.PublicKey()},
		Tags:     map[string]string{"env": "staging"},
	})

	none := filepath.Join(t.TempDir(), "none")
	base := []func(*config.LoadOptions) error{
		config.WithHTTPClient(noKeepAlive()),
		config.WithRegion("us-east-1"),
		config.WithBaseEndpoint(s.URL()),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.AccessKeyID(), s.SecretAccessKey(), "")),
		config.WithSharedConfigFiles([]string{none}),
		config.WithSharedCredentialsFiles([]string{none}),
	}
	cfg, err := awsutil.LoadConfig(context.Background(), append(base, opts...)...)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return &env{fake: s, awsCfg: cfg, hostKey: hostKey}
}

func (e *env) provider(t *testing.T, cfg lightsail.Config) *lightsail.Provider {
	t.Helper()
	if cfg.Regions == nil {
		cfg.Regions = []string{"us-east-1", "eu-west-1"}
	}
	cfg.Logger = zaptest.NewLogger(t)
	p, err := lightsail.New(e.awsCfg, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func (e *env) target(t *testing.T, p *lightsail.Provider) upstream.Target {
	t.Helper()
	got, err := p.Resolve(context.Background(), upstream.Query{Name: "web-1"})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("Resolve(web-1) = %v, want one target", got)
	}
	return got[0]
}

// noKeepAlive returns the SDK's HTTP client without connection reuse, so
// that no idle connection delays the fake's Close (http.Server.Shutdown
// waits up to 5s for connections that never sent a request). It stays a
// *awshttp.BuildableClient, which AWS_CA_BUNDLE requires.
func noKeepAlive() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.DisableKeepAlives = true })
}

// handshake runs an SSH handshake over an in-memory pipe between a client
// using c and a server with hostKey that trusts user certificates signed by
// ca. It returns the client's error.
func handshake(t *testing.T, c *upstream.Credentials, hostKey ssh.Signer, ca ssh.PublicKey) error {
	t.Helper()
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool { return bytes.Equal(auth.Marshal(), ca.Marshal()) },
	}
	srvCfg := &ssh.ServerConfig{PublicKeyCallback: checker.Authenticate}
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
	e.fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "dup", Region: "us-east-1"})
	e.fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "dup", Region: "eu-west-1"})
	p := e.provider(t, lightsail.Config{})
	tests := []struct {
		name string
		want []string
	}{
		{name: "web-1", want: []string{"web-1.us-east-1.lightsail"}},
		{name: "dup", want: []string{"dup.us-east-1.lightsail", "dup.eu-west-1.lightsail"}},
		{name: "nope"},
	}
	for _, tc := range tests {
		got, err := p.Resolve(context.Background(), upstream.Query{Name: tc.name})
		if err != nil {
			t.Fatalf("Resolve(%s): %v", tc.name, err)
		}
		var names []string
		for _, tg := range got {
			names = append(names, tg.String())
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("Resolve(%s) = %v, want %v", tc.name, names, tc.want)
		}
	}
	tg := e.target(t, p)
	if tg.Zone != "us-east-1a" || tg.Tags["env"] != "staging" {
		t.Errorf("target zone %q tags %v, want us-east-1a and env=staging", tg.Zone, tg.Tags)
	}
	// Every name was looked up in both regions once, the second web-1
	// lookup came from the cache.
	if got, want := e.fake.CallCount("GetInstance"), 6; got != want {
		t.Errorf("GetInstance calls = %d, want %d", got, want)
	}
}

func TestIntegrationCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.provider(t, lightsail.Config{})
	tg := e.target(t, p)
	ctx := context.Background()

	c, err := p.Credentials(ctx, tg, "ubuntu")
	if err != nil {
		t.Fatalf("Credentials: %v", err)
	}
	if got, want := c.Addr, "203.0.113.7:22"; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
	if c.RequestID == "" {
		t.Error("RequestID is empty")
	}
	cert, ok := c.Signer.PublicKey().(*ssh.Certificate)
	if !ok {
		t.Fatalf("signer's key is %T, want a certificate", c.Signer.PublicKey())
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), e.fake.LightsailCA().Marshal()) {
		t.Error("certificate is not signed by the Lightsail CA")
	}
	if !slices.Equal(cert.ValidPrincipals, []string{"ubuntu"}) {
		t.Errorf("principals = %v, want [ubuntu]", cert.ValidPrincipals)
	}

	// The credentials log in to a server that trusts the Lightsail CA and
	// has the host key AWS reported.
	if err := handshake(t, c, e.hostKey, e.fake.LightsailCA()); err != nil {
		t.Errorf("handshake with the reported host key: %v", err)
	}
	// A server with another host key is refused.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	impostor, _ := ssh.NewSignerFromKey(priv)
	err = handshake(t, c, impostor, e.fake.LightsailCA())
	var mm *upstream.HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Errorf("handshake with another host key: got %v, want a HostKeyMismatchError", err)
	}

	// Cached: no second GetInstanceAccessDetails.
	if _, err := p.Credentials(ctx, tg, "ubuntu"); err != nil {
		t.Fatalf("second Credentials: %v", err)
	}
	if got := e.fake.CallCount("GetInstanceAccessDetails"); got != 1 {
		t.Errorf("GetInstanceAccessDetails calls = %d, want 1", got)
	}

	// Another user is refused.
	_, err = p.Credentials(ctx, tg, "root")
	if !errors.Is(err, upstream.ErrUserMismatch) {
		t.Errorf("Credentials as root: got %v, want ErrUserMismatch", err)
	}
	if got, want := upstream.PublicMessage(err), "this Lightsail instance admits only ubuntu"; got != want {
		t.Errorf("PublicMessage = %q, want %q", got, want)
	}
}

func TestIntegrationPrivateAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.provider(t, lightsail.Config{Address: lightsail.AddressPrivate, Port: 2222})
	c, err := p.Credentials(context.Background(), e.target(t, p), "ubuntu")
	if err != nil {
		t.Fatalf("Credentials: %v", err)
	}
	if got, want := c.Addr, "172.26.1.7:2222"; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
}

func TestIntegrationConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.provider(t, lightsail.Config{})
	tg := e.target(t, p)
	// Latency keeps the first call in flight while the others arrive.
	e.fake.SetFault("GetInstanceAccessDetails", awsfake.Fault{Latency: 200 * time.Millisecond})

	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = p.Credentials(context.Background(), tg, "ubuntu") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got := e.fake.CallCount("GetInstanceAccessDetails"); got != 1 {
		t.Errorf("GetInstanceAccessDetails calls = %d, want 1", got)
	}
}

func TestIntegrationFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		fault       awsfake.Fault
		callTimeout time.Duration
		wantErr     string // PublicMessage; empty for success
		wantCalls   int
		maxDuration time.Duration
	}{
		{name: "throttled twice", fault: awsfake.Fault{ThrottleFirst: 2}, wantCalls: 3, maxDuration: 15 * time.Second},
		{
			name:      "server errors beyond the retry budget",
			fault:     awsfake.Fault{ServerErrorFirst: 5},
			wantErr:   "Lightsail GetInstanceAccessDetails failed: ServiceException",
			wantCalls: 3, maxDuration: 15 * time.Second,
		},
		{
			name:      "access denied",
			fault:     awsfake.Fault{ErrorCode: "AccessDeniedException"},
			wantErr:   "Lightsail GetInstanceAccessDetails failed: AccessDeniedException",
			wantCalls: 1, maxDuration: 5 * time.Second,
		},
		{
			name:        "hang",
			fault:       awsfake.Fault{Hang: true},
			callTimeout: 300 * time.Millisecond,
			wantErr:     "Lightsail GetInstanceAccessDetails timed out after 300ms",
			wantCalls:   1, maxDuration: 2 * time.Second,
		},
		{
			name:      "malformed",
			fault:     awsfake.Fault{Malformed: true},
			wantErr:   "Lightsail GetInstanceAccessDetails failed: malformed response",
			wantCalls: 1, maxDuration: 5 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := e.provider(t, lightsail.Config{CallTimeout: tc.callTimeout})
			tg := e.target(t, p)
			e.fake.SetFault("GetInstanceAccessDetails", tc.fault)

			start := time.Now()
			_, err := p.Credentials(context.Background(), tg, "ubuntu")
			elapsed := time.Since(start)
			if elapsed > tc.maxDuration {
				t.Errorf("Credentials took %v, want at most %v", elapsed, tc.maxDuration)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Credentials: %v", err)
				}
			} else if got := upstream.PublicMessage(err); got != tc.wantErr {
				t.Errorf("PublicMessage(%v) = %q, want %q", err, got, tc.wantErr)
			}
			if got := e.fake.CallCount("GetInstanceAccessDetails"); got != tc.wantCalls {
				t.Errorf("GetInstanceAccessDetails calls = %d, want %d", got, tc.wantCalls)
			}
			var ue *upstream.Error
			if err != nil && errors.As(err, &ue) && !tc.fault.Hang {
				calls := e.fake.Calls()
				last := calls[len(calls)-1]
				if ue.RequestID != last.RequestID {
					t.Errorf("RequestID = %q, want %q (the last call's)", ue.RequestID, last.RequestID)
				}
			}
		})
	}
}

func TestIntegrationUnreachable(t *testing.T) {
	t.Parallel()
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e := newEnv(t, config.WithBaseEndpoint(fmt.Sprintf("http://%s", addr)), awsutil.WithRetry(2, 10*time.Millisecond))
	p := e.provider(t, lightsail.Config{})
	_, err = p.Resolve(context.Background(), upstream.Query{Name: "web-1"})
	if got, want := upstream.PublicMessage(err), "Lightsail GetInstance failed: endpoint unreachable"; got != want {
		t.Errorf("PublicMessage(%v) = %q, want %q", err, got, want)
	}
}
