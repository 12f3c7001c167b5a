package lightsail

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/aws-sdk-go-v2/service/lightsail/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/ssh"

	"bastion/upstream"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeAPI is an in-memory API for one region.
type fakeAPI struct {
	mu        sync.Mutex
	instances map[string]*types.Instance
	details   map[string]*types.InstanceAccessDetails
	getErr    error
	accessErr error
	// release, if non-nil, holds GetInstanceAccessDetails until closed or
	// the call's context ends.
	release     chan struct{}
	getCalls    int
	accessCalls int
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{instances: map[string]*types.Instance{}, details: map[string]*types.InstanceAccessDetails{}}
}

func (f *fakeAPI) GetInstance(_ context.Context, in *lightsail.GetInstanceInput, _ ...func(*lightsail.Options)) (*lightsail.GetInstanceOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.getCalls++
	if f.getErr != nil {
		return nil, f.getErr
	}
	inst, ok := f.instances[aws.ToString(in.InstanceName)]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "NotFoundException", Message: "no such instance"}
	}
	return &lightsail.GetInstanceOutput{Instance: inst}, nil
}

func (f *fakeAPI) GetInstances(context.Context, *lightsail.GetInstancesInput, ...func(*lightsail.Options)) (*lightsail.GetInstancesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &lightsail.GetInstancesOutput{}
	for _, in := range f.instances {
		out.Instances = append(out.Instances, *in)
	}
	return out, nil
}

func (f *fakeAPI) GetInstanceAccessDetails(ctx context.Context, in *lightsail.GetInstanceAccessDetailsInput, _ ...func(*lightsail.Options)) (*lightsail.GetInstanceAccessDetailsOutput, error) {
	f.mu.Lock()
	f.accessCalls++
	release := f.release
	f.mu.Unlock()
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.Protocol != types.InstanceAccessProtocolSsh {
		return nil, &smithy.GenericAPIError{Code: "InvalidInputException"}
	}
	if f.accessErr != nil {
		return nil, f.accessErr
	}
	d, ok := f.details[aws.ToString(in.InstanceName)]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "NotFoundException"}
	}
	return &lightsail.GetInstanceAccessDetailsOutput{AccessDetails: d}, nil
}

func (f *fakeAPI) counts() (get, access int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getCalls, f.accessCalls
}

// rsaKeys returns two RSA keys, made once: a user key and a host key.
var rsaKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// testInstance is what a test needs to know about a fake instance.
type testInstance struct {
	ca       ssh.PublicKey
	hostKeys []ssh.PublicKey
	details  *types.InstanceAccessDetails
}

// addInstance adds an instance to f, with access details expiring at
// expires, a user key of the given kind ("ed25519" or "rsa") and an
// ed25519 and an RSA host key.
func addInstance(t *testing.T, f *fakeAPI, name, user string, expires time.Time, keyKind string) *testInstance {
	t.Helper()
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		t.Fatal(err)
	}

	var userPEM []byte
	var userPub ssh.PublicKey
	switch keyKind {
	case "rsa":
		k := rsaKeys()[0]
		userPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
		userPub, _ = ssh.NewPublicKey(&k.PublicKey)
	default:
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		blk, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		userPEM = pem.EncodeToMemory(blk)
		userPub, _ = ssh.NewPublicKey(pub)
	}
	cert := &ssh.Certificate{
		Key:             userPub,
		CertType:        ssh.UserCert,
		KeyId:           name,
		ValidPrincipals: []string{user},
		ValidAfter:      uint64(expires.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(expires.Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}

	hostEd, _, _ := ed25519.GenerateKey(rand.Reader)
	hk1, _ := ssh.NewPublicKey(hostEd)
	hk2, _ := ssh.NewPublicKey(&rsaKeys()[1].PublicKey)

	d := &types.InstanceAccessDetails{
		CertKey:      aws.String(string(ssh.MarshalAuthorizedKey(cert))),
		PrivateKey:   aws.String(string(userPEM)),
		ExpiresAt:    aws.Time(expires),
		InstanceName: aws.String(name),
		IpAddress:    aws.String("203.0.113.10"),
		Protocol:     types.InstanceAccessProtocolSsh,
		Username:     aws.String(user),
		HostKeys: []types.HostKeyAttributes{
			// Lightsail's form: the base64 wire key beside its algorithm.
			{Algorithm: aws.String(hk1.Type()), PublicKey: aws.String(base64.StdEncoding.EncodeToString(hk1.Marshal()))},
			// The authorized_keys form is accepted too.
			{Algorithm: aws.String(hk2.Type()), PublicKey: aws.String(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hk2))))},
			// RDP certificates are not SSH keys and are skipped.
			{Algorithm: aws.String("x509-cert"), PublicKey: aws.String("MIIB")},
		},
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances[name] = &types.Instance{
		Name:             aws.String(name),
		PrivateIpAddress: aws.String("172.26.0.10"),
		PublicIpAddress:  aws.String("203.0.113.10"),
		Username:         aws.String(user),
		State:            &types.InstanceState{Name: aws.String("running")},
		Location:         &types.ResourceLocation{AvailabilityZone: aws.String("us-east-1a")},
		Tags:             []types.Tag{{Key: aws.String("env"), Value: aws.String("staging")}},
	}
	f.details[name] = d
	return &testInstance{ca: ca.PublicKey(), hostKeys: []ssh.PublicKey{hk1, hk2}, details: d}
}

func newProvider(t *testing.T, clients map[string]API, cfg Config) *Provider {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	p, err := NewWithClients(clients, cfg)
	if err != nil {
		t.Fatalf("NewWithClients: %v", err)
	}
	return p
}

func TestNewWithClientsValidates(t *testing.T) {
	t.Parallel()
	api := newFakeAPI()
	tests := []struct {
		name    string
		clients map[string]API
		cfg     Config
		wantErr string
	}{
		{name: "no regions", clients: map[string]API{}, wantErr: "no regions"},
		{name: "missing client", clients: map[string]API{"us-east-1": api}, cfg: Config{Regions: []string{"eu-west-1"}}, wantErr: "no client"},
		{name: "bad address", clients: map[string]API{"us-east-1": api}, cfg: Config{Address: "ipv6"}, wantErr: "address"},
		{name: "bad port", clients: map[string]API{"us-east-1": api}, cfg: Config{Port: 70000}, wantErr: "port"},
		{name: "ok", clients: map[string]API{"us-east-1": api}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewWithClients(tc.clients, tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	exp := newClock().Now().Add(time.Hour)
	tests := []struct {
		name       string
		brokenWest bool
		q          upstream.Query
		want       []string // Target.String()
		wantCalls  int      // GetInstance calls in both regions
		wantPublic string
	}{
		{name: "one match", q: upstream.Query{Name: "web-1"}, want: []string{"web-1.us-east-1.lightsail"}, wantCalls: 2},
		{name: "two regions", q: upstream.Query{Name: "dup"}, want: []string{"dup.us-east-1.lightsail", "dup.us-west-2.lightsail"}, wantCalls: 2},
		{name: "no match", q: upstream.Query{Name: "nope"}, wantCalls: 2},
		{name: "region", q: upstream.Query{Name: "dup", Region: "us-west-2"}, want: []string{"dup.us-west-2.lightsail"}, wantCalls: 1},
		{name: "unconfigured region", q: upstream.Query{Name: "dup", Region: "ap-south-1"}},
		{name: "other provider", q: upstream.Query{Name: "web-1", Provider: upstream.ProviderEC2}},
		{name: "own provider", q: upstream.Query{Name: "web-1", Provider: upstream.ProviderLightsail}, want: []string{"web-1.us-east-1.lightsail"}, wantCalls: 2},
		{name: "impossible name", q: upstream.Query{Name: "web 1/x"}},
		{
			name:       "error in one region",
			brokenWest: true,
			q:          upstream.Query{Name: "web-1"},
			wantCalls:  2,
			wantPublic: "Lightsail GetInstance failed: AccessDeniedException",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			east, west := newFakeAPI(), newFakeAPI()
			addInstance(t, east, "web-1", "ubuntu", exp, "ed25519")
			addInstance(t, east, "dup", "ubuntu", exp, "ed25519")
			addInstance(t, west, "dup", "ubuntu", exp, "ed25519")
			if tc.brokenWest {
				west.getErr = &smithy.GenericAPIError{Code: "AccessDeniedException"}
			}
			p := newProvider(t, map[string]API{"us-east-1": east, "us-west-2": west}, Config{})

			got, err := p.Resolve(context.Background(), tc.q)
			ge, _ := east.counts()
			gw, _ := west.counts()
			if n := ge + gw; n != tc.wantCalls {
				t.Errorf("GetInstance calls = %d, want %d", n, tc.wantCalls)
			}
			if tc.wantPublic != "" {
				if got := upstream.PublicMessage(err); got != tc.wantPublic {
					t.Errorf("PublicMessage(%v) = %q, want %q", err, got, tc.wantPublic)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			var names []string
			for _, tg := range got {
				names = append(names, tg.String())
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("Resolve(%v) = %v, want %v", tc.q, names, tc.want)
			}
		})
	}
}

func TestResolveTarget(t *testing.T) {
	t.Parallel()
	api := newFakeAPI()
	addInstance(t, api, "web-1", "ubuntu", time.Now().Add(time.Hour), "ed25519")
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{})
	got, err := p.Resolve(context.Background(), upstream.Query{Name: "web-1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("Resolve = %v, %v; want one target", got, err)
	}
	want := upstream.Target{Provider: "lightsail", Name: "web-1", ID: "web-1", Region: "us-east-1", Zone: "us-east-1a", Tags: map[string]string{"env": "staging"}}
	g := got[0]
	if g.Provider != want.Provider || g.Name != want.Name || g.ID != want.ID || g.Region != want.Region || g.Zone != want.Zone || g.Tags["env"] != "staging" || len(g.Tags) != 1 {
		t.Errorf("Resolve = %+v, want %+v", g, want)
	}
}

func TestResolveCache(t *testing.T) {
	t.Parallel()
	clk := newClock()
	api := newFakeAPI()
	addInstance(t, api, "web-1", "ubuntu", clk.Now().Add(time.Hour), "ed25519")
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{ResolveCache: time.Minute, Now: clk.Now})
	ctx := context.Background()

	steps := []struct {
		advance   time.Duration
		name      string
		wantCalls int // cumulative GetInstance calls
	}{
		{name: "web-1", wantCalls: 1},
		{name: "web-1", advance: 59 * time.Second, wantCalls: 1},
		{name: "nope", wantCalls: 2},
		{name: "nope", advance: 30 * time.Second, wantCalls: 2}, // not-found is cached too
		{name: "web-1", advance: 2 * time.Second, wantCalls: 3}, // web-1 expired
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if _, err := p.Resolve(ctx, upstream.Query{Name: s.name}); err != nil {
			t.Fatalf("step %d: Resolve: %v", i, err)
		}
		if g, _ := api.counts(); g != s.wantCalls {
			t.Errorf("step %d (%s): GetInstance calls = %d, want %d", i, s.name, g, s.wantCalls)
		}
	}

	off := newProvider(t, map[string]API{"us-east-1": api}, Config{ResolveCache: -1, Now: clk.Now})
	before, _ := api.counts()
	for range 2 {
		if _, err := off.Resolve(ctx, upstream.Query{Name: "web-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if g, _ := api.counts(); g-before != 2 {
		t.Errorf("with caching off, GetInstance calls = %d, want 2", g-before)
	}
}

func target(name string) upstream.Target {
	return upstream.Target{Provider: upstream.ProviderLightsail, Name: name, ID: name, Region: "us-east-1"}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	clk := newClock()
	for _, kind := range []string{"ed25519", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI()
			ti := addInstance(t, api, "web-1", "ubuntu", clk.Now().Add(time.Hour), kind)
			core, logs := observer.New(zapcore.DebugLevel)
			p := newProvider(t, map[string]API{"us-east-1": api}, Config{Now: clk.Now, Logger: zap.New(core)})

			c, err := p.Credentials(context.Background(), target("web-1"), "ubuntu")
			if err != nil {
				t.Fatalf("Credentials: %v", err)
			}
			if got, want := c.Addr, "203.0.113.10:22"; got != want {
				t.Errorf("Addr = %q, want %q", got, want)
			}
			if got, want := c.User, "ubuntu"; got != want {
				t.Errorf("User = %q, want %q", got, want)
			}
			if !c.Expires.Equal(clk.Now().Add(time.Hour)) {
				t.Errorf("Expires = %v, want %v", c.Expires, clk.Now().Add(time.Hour))
			}
			cert, ok := c.Signer.PublicKey().(*ssh.Certificate)
			if !ok {
				t.Fatalf("signer's public key is %T, want a certificate", c.Signer.PublicKey())
			}
			if !bytes.Equal(cert.SignatureKey.Marshal(), ti.ca.Marshal()) || !slices.Equal(cert.ValidPrincipals, []string{"ubuntu"}) {
				t.Errorf("certificate signed by %s for %v, want the CA for [ubuntu]", ssh.FingerprintSHA256(cert.SignatureKey), cert.ValidPrincipals)
			}
			// The signer signs with the key the certificate certifies.
			sig, err := c.Signer.Sign(rand.Reader, []byte("data"))
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := cert.Key.Verify([]byte("data"), sig); err != nil {
				t.Errorf("signature does not verify with the certified key: %v", err)
			}

			for _, hk := range ti.hostKeys {
				if err := c.HostKeyCallback("web-1:22", &net.TCPAddr{}, hk); err != nil {
					t.Errorf("HostKeyCallback(%s) = %v, want nil", hk.Type(), err)
				}
			}
			other, _, _ := ed25519.GenerateKey(rand.Reader)
			otherKey, _ := ssh.NewPublicKey(other)
			err = c.HostKeyCallback("web-1:22", &net.TCPAddr{}, otherKey)
			var mm *upstream.HostKeyMismatchError
			if !errors.As(err, &mm) {
				t.Fatalf("HostKeyCallback(other) = %v, want a HostKeyMismatchError", err)
			}
			if mm.Target != "web-1.us-east-1.lightsail" {
				t.Errorf("mismatch Target = %q, want %q", mm.Target, "web-1.us-east-1.lightsail")
			}
			if got := upstream.PublicMessage(err); !strings.Contains(got, "AWS reported") {
				t.Errorf("PublicMessage = %q, want it to say AWS reported other keys", got)
			}
			wantAlgos := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
			if !slices.Equal(c.HostKeyAlgorithms, wantAlgos) {
				t.Errorf("HostKeyAlgorithms = %v, want %v", c.HostKeyAlgorithms, wantAlgos)
			}

			// Logs name the call and never hold key material.
			var saw bool
			for _, e := range logs.All() {
				fields := e.ContextMap()
				text := fmt.Sprint(e.Message, fields)
				for _, secret := range []string{"PRIVATE KEY", aws.ToString(ti.details.CertKey)[:60]} {
					if strings.Contains(text, secret) {
						t.Errorf("log entry %q holds key material", e.Message)
					}
				}
				if fields["operation"] == "GetInstanceAccessDetails" {
					saw = true
					for _, k := range []string{"instance", "region", "request_id", "duration"} {
						if _, ok := fields[k]; !ok {
							t.Errorf("GetInstanceAccessDetails log entry lacks %s", k)
						}
					}
				}
			}
			if !saw {
				t.Error("no log entry for GetInstanceAccessDetails")
			}
		})
	}
}

func TestCredentialsAddress(t *testing.T) {
	t.Parallel()
	api := newFakeAPI()
	addInstance(t, api, "web-1", "ubuntu", time.Now().Add(time.Hour), "ed25519")
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{Address: AddressPrivate, Port: 2222})
	c, err := p.Credentials(context.Background(), target("web-1"), "ubuntu")
	if err != nil {
		t.Fatalf("Credentials: %v", err)
	}
	if got, want := c.Addr, "172.26.0.10:2222"; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}

	api.mu.Lock()
	api.details["web-1"].IpAddress = nil
	api.details["web-1"].Ipv6Addresses = []string{"2001:db8::10"}
	api.mu.Unlock()
	p6 := newProvider(t, map[string]API{"us-east-1": api}, Config{})
	c, err = p6.Credentials(context.Background(), target("web-1"), "ubuntu")
	if err != nil {
		t.Fatalf("Credentials: %v", err)
	}
	if got, want := c.Addr, "[2001:db8::10]:22"; got != want {
		t.Errorf("IPv6-only Addr = %q, want %q", got, want)
	}
}

func TestCredentialsUserMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		resolveFirst    bool
		wantAccessCalls int
	}{
		{name: "from access details", wantAccessCalls: 1},
		{name: "from resolved instance", resolveFirst: true, wantAccessCalls: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI()
			addInstance(t, api, "web-1", "ubuntu", time.Now().Add(time.Hour), "ed25519")
			p := newProvider(t, map[string]API{"us-east-1": api}, Config{})
			ctx := context.Background()
			if tc.resolveFirst {
				if _, err := p.Resolve(ctx, upstream.Query{Name: "web-1"}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := p.Credentials(ctx, target("web-1"), "root")
			if !errors.Is(err, upstream.ErrUserMismatch) {
				t.Errorf("got %v, want ErrUserMismatch", err)
			}
			if got, want := upstream.PublicMessage(err), "this Lightsail instance admits only ubuntu"; got != want {
				t.Errorf("PublicMessage = %q, want %q", got, want)
			}
			if _, a := api.counts(); a != tc.wantAccessCalls {
				t.Errorf("GetInstanceAccessDetails calls = %d, want %d", a, tc.wantAccessCalls)
			}
		})
	}
}

func TestCredentialsCache(t *testing.T) {
	t.Parallel()
	clk := newClock()
	api := newFakeAPI()
	addInstance(t, api, "web-1", "ubuntu", clk.Now().Add(10*time.Minute), "ed25519")
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{Now: clk.Now})
	ctx := context.Background()

	steps := []struct {
		advance time.Duration
		want    int // cumulative GetInstanceAccessDetails calls
	}{
		{want: 1},
		{advance: 8*time.Minute + 59*time.Second, want: 1}, // 1m01s before expiry: cached
		{advance: 2 * time.Second, want: 2},                // 59s before expiry: refreshed
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if _, err := p.Credentials(ctx, target("web-1"), "ubuntu"); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if _, a := api.counts(); a != s.want {
			t.Errorf("step %d: GetInstanceAccessDetails calls = %d, want %d", i, a, s.want)
		}
	}
}

func TestCredentialsConcurrent(t *testing.T) {
	t.Parallel()
	api := newFakeAPI()
	addInstance(t, api, "web-1", "ubuntu", time.Now().Add(time.Hour), "ed25519")
	api.release = make(chan struct{})
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{})

	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = p.Credentials(context.Background(), target("web-1"), "ubuntu") })
	}
	close(api.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if _, a := api.counts(); a != 1 {
		t.Errorf("GetInstanceAccessDetails calls = %d, want 1", a)
	}
}

func TestCredentialsCallerGivesUp(t *testing.T) {
	t.Parallel()
	api := newFakeAPI()
	addInstance(t, api, "web-1", "ubuntu", time.Now().Add(time.Hour), "ed25519")
	api.release = make(chan struct{})
	t.Cleanup(func() { close(api.release) })
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Credentials(ctx, target("web-1"), "ubuntu")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestCredentialsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		target     upstream.Target
		mutate     func(*types.InstanceAccessDetails)
		accessErr  error
		wantPublic string
	}{
		{
			name:       "access denied",
			accessErr:  &smithy.GenericAPIError{Code: "AccessDeniedException"},
			wantPublic: "Lightsail GetInstanceAccessDetails failed: AccessDeniedException",
		},
		{
			name:       "no host keys",
			mutate:     func(d *types.InstanceAccessDetails) { d.HostKeys = d.HostKeys[2:] },
			wantPublic: "Lightsail GetInstanceAccessDetails returned unusable credentials",
		},
		{
			name: "bad private key",
			mutate: func(d *types.InstanceAccessDetails) {
				d.PrivateKey = aws.String("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
			},
			wantPublic: "Lightsail GetInstanceAccessDetails returned unusable credentials",
		},
		{
			name: "cert is a plain key",
			mutate: func(d *types.InstanceAccessDetails) {
				d.CertKey = aws.String("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
			},
			wantPublic: "Lightsail GetInstanceAccessDetails returned unusable credentials",
		},
		{
			name:       "no public address",
			mutate:     func(d *types.InstanceAccessDetails) { d.IpAddress = nil },
			wantPublic: "this Lightsail instance has no public IP address",
		},
		{
			name:       "unconfigured region",
			target:     upstream.Target{Provider: upstream.ProviderLightsail, Name: "web-1", ID: "web-1", Region: "eu-west-3"},
			wantPublic: "Lightsail region eu-west-3 is not configured",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI()
			ti := addInstance(t, api, "web-1", "ubuntu", time.Now().Add(time.Hour), "ed25519")
			if tc.mutate != nil {
				tc.mutate(ti.details)
			}
			api.accessErr = tc.accessErr
			p := newProvider(t, map[string]API{"us-east-1": api}, Config{})
			tg := tc.target
			if tg.Provider == "" {
				tg = target("web-1")
			}
			_, err := p.Credentials(context.Background(), tg, "ubuntu")
			if got := upstream.PublicMessage(err); got != tc.wantPublic {
				t.Errorf("PublicMessage(%v) = %q, want %q", err, got, tc.wantPublic)
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error %q holds key material", err)
			}
		})
	}
}

func TestCredentialsFailureNotCached(t *testing.T) {
	t.Parallel()
	api := newFakeAPI()
	addInstance(t, api, "web-1", "ubuntu", time.Now().Add(time.Hour), "ed25519")
	api.accessErr = &smithy.GenericAPIError{Code: "ServiceException"}
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{})
	if _, err := p.Credentials(context.Background(), target("web-1"), "ubuntu"); err == nil {
		t.Fatal("got nil error, want ServiceException")
	}
	api.mu.Lock()
	api.accessErr = nil
	api.mu.Unlock()
	if _, err := p.Credentials(context.Background(), target("web-1"), "ubuntu"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if _, a := api.counts(); a != 2 {
		t.Errorf("GetInstanceAccessDetails calls = %d, want 2", a)
	}
}

// TestPrefetch: details fetched ahead serve the Credentials call that
// follows, once, even when they are too close to expiry to cache; a
// Credentials call that joined the prefetch's call leaves nothing behind.
func TestPrefetch(t *testing.T) {
	t.Parallel()
	clk := newClock()
	api := newFakeAPI()
	// 50s of validity: under refreshBefore, so never cached.
	addInstance(t, api, "web-1", "ubuntu", clk.Now().Add(50*time.Second), "ed25519")
	p := newProvider(t, map[string]API{"us-east-1": api}, Config{Now: clk.Now})
	ctx := context.Background()

	p.Prefetch(ctx, target("web-1"))
	if _, err := p.Credentials(ctx, target("web-1"), "ubuntu"); err != nil {
		t.Fatal(err)
	}
	if _, a := api.counts(); a != 1 {
		t.Errorf("prefetch then credentials: GetInstanceAccessDetails calls = %d, want 1", a)
	}
	if _, err := p.Credentials(ctx, target("web-1"), "ubuntu"); err != nil {
		t.Fatal(err)
	}
	if _, a := api.counts(); a != 2 {
		t.Errorf("a second credentials call: calls = %d, want 2 (a prefetch serves one call)", a)
	}

	// A Credentials call that shares the prefetch's call in flight.
	api.mu.Lock()
	api.release = make(chan struct{})
	api.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.Prefetch(ctx, target("web-1")) })
	wg.Go(func() {
		if _, err := p.Credentials(ctx, target("web-1"), "ubuntu"); err != nil {
			t.Error(err)
		}
	})
	waitCalls(t, api, 3)
	close(api.release)
	wg.Wait()
	if _, err := p.Credentials(ctx, target("web-1"), "ubuntu"); err != nil {
		t.Fatal(err)
	}
	if _, a := api.counts(); a != 4 {
		t.Errorf("after a shared prefetch: calls = %d, want 4 (nothing kept for later)", a)
	}

	// Prefetched details too close to expiry are not used.
	p.Prefetch(ctx, target("web-1"))
	clk.Advance(45 * time.Second)
	api.mu.Lock()
	api.release = nil
	api.mu.Unlock()
	if _, err := p.Credentials(ctx, target("web-1"), "ubuntu"); err == nil {
		if _, a := api.counts(); a != 6 {
			t.Errorf("stale prefetch: calls = %d, want 6 (a fresh call)", a)
		}
	}
}

// waitCalls waits until the fake has had n GetInstanceAccessDetails calls.
func waitCalls(t *testing.T, api *fakeAPI, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, a := api.counts(); a >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d GetInstanceAccessDetails calls", n)
		}
		runtime.Gosched()
	}
}
