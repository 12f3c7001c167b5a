package instanceconnect

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"
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

// fakeEC2 is an in-memory DescribeInstances that answers one instance per
// page, to exercise pagination.
type fakeEC2 struct {
	mu        sync.Mutex
	instances []types.Instance
	err       error
	calls     int
}

func (f *fakeEC2) add(id, name, state, privateIP, publicIP string) {
	in := types.Instance{
		InstanceId:       aws.String(id),
		State:            &types.InstanceState{Name: types.InstanceStateName(state)},
		Placement:        &types.Placement{AvailabilityZone: aws.String("us-east-1b")},
		PrivateIpAddress: aws.String(privateIP),
		Tags:             []types.Tag{{Key: aws.String("env"), Value: aws.String("staging")}},
	}
	if publicIP != "" {
		in.PublicIpAddress = aws.String(publicIP)
	}
	if name != "" {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String("Name"), Value: aws.String(name)})
	}
	f.mu.Lock()
	f.instances = append(f.instances, in)
	f.mu.Unlock()
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	var matched []types.Instance
	for _, inst := range f.instances {
		if len(in.InstanceIds) > 0 && !slices.Contains(in.InstanceIds, aws.ToString(inst.InstanceId)) {
			continue
		}
		ok := true
		for _, flt := range in.Filters {
			var v string
			switch name := aws.ToString(flt.Name); {
			case name == "instance-state-name":
				v = string(inst.State.Name)
			case strings.HasPrefix(name, "tag:"):
				for _, tg := range inst.Tags {
					if aws.ToString(tg.Key) == strings.TrimPrefix(name, "tag:") {
						v = aws.ToString(tg.Value)
					}
				}
			}
			ok = ok && slices.Contains(flt.Values, v)
		}
		if ok {
			matched = append(matched, inst)
		}
	}
	if len(in.InstanceIds) > 0 && len(matched) == 0 {
		return nil, &smithy.GenericAPIError{Code: "InvalidInstanceID.NotFound"}
	}
	start := 0
	if in.NextToken != nil {
		start, _ = strconv.Atoi(*in.NextToken)
	}
	out := &ec2.DescribeInstancesOutput{}
	if start < len(matched) {
		out.Reservations = []types.Reservation{{Instances: matched[start : start+1]}}
		if start+1 < len(matched) {
			out.NextToken = aws.String(strconv.Itoa(start + 1))
		}
	}
	return out, nil
}

func (f *fakeEC2) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fakeConnect records pushed keys.
type fakeConnect struct {
	mu      sync.Mutex
	pushes  []*ec2instanceconnect.SendSSHPublicKeyInput
	err     error
	failure bool
}

func (f *fakeConnect) SendSSHPublicKey(_ context.Context, in *ec2instanceconnect.SendSSHPublicKeyInput, _ ...func(*ec2instanceconnect.Options)) (*ec2instanceconnect.SendSSHPublicKeyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.pushes = append(f.pushes, in)
	return &ec2instanceconnect.SendSSHPublicKeyOutput{Success: !f.failure, RequestId: aws.String("req-" + strconv.Itoa(len(f.pushes)))}, nil
}

// fakeHostKeys accepts everything and records which ids it was asked for.
type fakeHostKeys struct {
	mu  sync.Mutex
	ids []string
}

func (f *fakeHostKeys) Callback(id string) ssh.HostKeyCallback {
	return func(string, net.Addr, ssh.PublicKey) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ids = append(f.ids, id)
		return nil
	}
}

func (f *fakeHostKeys) HostKeyAlgorithms(id string) []string {
	return []string{ssh.KeyAlgoED25519}
}

const (
	id1 = "i-0123456789abcdef0"
	id2 = "i-0fedcba9876543210"
	id3 = "i-01234567"
	id4 = "i-0aaaaaaaaaaaaaaaa"
)

// fixture is two regions of fake instances.
type fixture struct {
	east, west *fakeEC2
	connect    *fakeConnect
	hostKeys   *fakeHostKeys
	clk        *clock
}

func newFixture() *fixture {
	f := &fixture{east: &fakeEC2{}, west: &fakeEC2{}, connect: &fakeConnect{}, hostKeys: &fakeHostKeys{}, clk: newClock()}
	f.east.add(id1, "web-1", "running", "10.0.0.1", "198.51.100.1")
	f.east.add(id2, "dup", "running", "10.0.0.2", "")
	f.east.add(id3, "", "running", "10.0.0.3", "")
	f.east.add(id4, "old", "stopped", "10.0.0.4", "")
	f.west.add("i-0bbbbbbbbbbbbbbbb", "dup", "running", "10.1.0.2", "")
	return f
}

func (f *fixture) provider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	cfg.Now = f.clk.Now
	cfg.Logger = zap.NewNop()
	p, err := NewWithClients(map[string]Clients{
		"us-east-1": {EC2: f.east, Connect: f.connect},
		"us-west-2": {EC2: f.west, Connect: f.connect},
	}, f.hostKeys, cfg)
	if err != nil {
		t.Fatalf("NewWithClients: %v", err)
	}
	return p
}

func TestIsInstanceID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{id1, true},
		{id3, true},
		{"i-0123456789abcdef", false},
		{"i-0123456789ABCDEF0", false},
		{"i-0123456", false},
		{"web-1", false},
		{"x-0123456789abcdef0", false},
	}
	for _, tc := range tests {
		if got := IsInstanceID(tc.in); got != tc.want {
			t.Errorf("IsInstanceID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		q          upstream.Query
		want       []string // Target.String()
		wantCalls  int
		brokenWest bool
		wantPublic string
	}{
		{name: "by id", q: upstream.Query{Name: id1}, want: []string{"web-1.us-east-1.ec2"}, wantCalls: 2},
		{name: "by short id without Name tag", q: upstream.Query{Name: id3}, want: []string{id3 + ".us-east-1.ec2"}, wantCalls: 2},
		{name: "by id, stopped", q: upstream.Query{Name: id4}, want: []string{"old.us-east-1.ec2"}, wantCalls: 2},
		{name: "unknown id", q: upstream.Query{Name: "i-0cccccccccccccccc"}, wantCalls: 2},
		{name: "by name", q: upstream.Query{Name: "web-1"}, want: []string{"web-1.us-east-1.ec2"}, wantCalls: 2},
		{name: "by name, two matches", q: upstream.Query{Name: "dup"}, want: []string{"dup.us-east-1.ec2", "dup.us-west-2.ec2"}, wantCalls: 2},
		{name: "by name, zero matches", q: upstream.Query{Name: "nope"}, wantCalls: 2},
		{name: "by name, stopped is not a match", q: upstream.Query{Name: "old"}, wantCalls: 2},
		{name: "region", q: upstream.Query{Name: "dup", Region: "us-west-2"}, want: []string{"dup.us-west-2.ec2"}, wantCalls: 1},
		{name: "unconfigured region", q: upstream.Query{Name: "dup", Region: "eu-west-1"}},
		{name: "other provider", q: upstream.Query{Name: "dup", Provider: upstream.ProviderLightsail}},
		{name: "wildcard", q: upstream.Query{Name: "web-*"}},
		{
			name: "error in one region", q: upstream.Query{Name: "web-1"}, brokenWest: true, wantCalls: 2,
			wantPublic: "EC2 DescribeInstances failed: UnauthorizedOperation",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			if tc.brokenWest {
				f.west.err = &smithy.GenericAPIError{Code: "UnauthorizedOperation"}
			}
			p := f.provider(t, Config{})
			got, err := p.Resolve(context.Background(), tc.q)
			if n := f.east.count() + f.west.count(); n != tc.wantCalls {
				t.Errorf("DescribeInstances calls = %d, want %d", n, tc.wantCalls)
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
	f := newFixture()
	p := f.provider(t, Config{Regions: []string{"us-east-1"}})
	got, err := p.Resolve(context.Background(), upstream.Query{Name: "web-1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("Resolve = %v, %v; want one target", got, err)
	}
	g := got[0]
	if g.Provider != "ec2" || g.Name != "web-1" || g.ID != id1 || g.Region != "us-east-1" || g.Zone != "us-east-1b" ||
		g.Tags["env"] != "staging" || g.Tags["Name"] != "web-1" {
		t.Errorf("Resolve = %+v, want web-1 %s in us-east-1b with its tags", g, id1)
	}
}

func TestResolvePages(t *testing.T) {
	t.Parallel()
	f := newFixture()
	f.east.add("i-0ddddddddddddddd1", "many", "running", "10.0.9.1", "")
	f.east.add("i-0ddddddddddddddd3", "many", "running", "10.0.9.3", "")
	f.east.add("i-0ddddddddddddddd2", "many", "running", "10.0.9.2", "")
	p := f.provider(t, Config{Regions: []string{"us-east-1"}})
	got, err := p.Resolve(context.Background(), upstream.Query{Name: "many"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tg := range got {
		ids = append(ids, tg.ID)
	}
	want := []string{"i-0ddddddddddddddd1", "i-0ddddddddddddddd2", "i-0ddddddddddddddd3"}
	if !slices.Equal(ids, want) {
		t.Errorf("ids = %v, want %v", ids, want)
	}
	if got := f.east.count(); got != 3 {
		t.Errorf("DescribeInstances calls = %d, want 3 (one per page)", got)
	}
}

func TestResolveCache(t *testing.T) {
	t.Parallel()
	f := newFixture()
	p := f.provider(t, Config{Regions: []string{"us-east-1"}, ResolveCache: 10 * time.Second})
	ctx := context.Background()
	steps := []struct {
		name    string
		advance time.Duration
		want    int
	}{
		{name: "web-1", want: 1},
		{name: "web-1", advance: 9 * time.Second, want: 1},
		{name: "nope", want: 2},
		{name: "nope", want: 2},
		{name: "web-1", advance: time.Second, want: 3},
	}
	for i, s := range steps {
		f.clk.Advance(s.advance)
		if _, err := p.Resolve(ctx, upstream.Query{Name: s.name}); err != nil {
			t.Fatal(err)
		}
		if got := f.east.count(); got != s.want {
			t.Errorf("step %d (%s): DescribeInstances calls = %d, want %d", i, s.name, got, s.want)
		}
	}
	// Credentials reuse the resolved description.
	if _, err := p.Credentials(ctx, upstream.Target{Provider: "ec2", ID: id1, Name: "web-1", Region: "us-east-1"}, "ec2-user"); err != nil {
		t.Fatal(err)
	}
	if got := f.east.count(); got != 3 {
		t.Errorf("after Credentials: DescribeInstances calls = %d, want 3", got)
	}
}

func ec2Target(id string) upstream.Target {
	return upstream.Target{Provider: upstream.ProviderEC2, ID: id, Name: id, Region: "us-east-1"}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	f := newFixture()
	p := f.provider(t, Config{})
	ctx := context.Background()

	var keys [][]byte
	for i := range 2 {
		c, err := p.Credentials(ctx, ec2Target(id1), "ec2-user")
		if err != nil {
			t.Fatalf("Credentials #%d: %v", i, err)
		}
		if got, want := c.Addr, "10.0.0.1:22"; got != want {
			t.Errorf("Addr = %q, want %q", got, want)
		}
		if got, want := c.User, "ec2-user"; got != want {
			t.Errorf("User = %q, want %q", got, want)
		}
		if want := f.clk.Now().Add(KeyLifetime); !c.Expires.Equal(want) {
			t.Errorf("Expires = %v, want %v", c.Expires, want)
		}
		if got, want := c.RequestID, "req-"+strconv.Itoa(i+1); got != want {
			t.Errorf("RequestID = %q, want %q", got, want)
		}
		if got := c.Signer.PublicKey().Type(); got != ssh.KeyAlgoED25519 {
			t.Errorf("key type = %s, want ssh-ed25519", got)
		}
		if !slices.Equal(c.HostKeyAlgorithms, []string{ssh.KeyAlgoED25519}) {
			t.Errorf("HostKeyAlgorithms = %v, want the store's", c.HostKeyAlgorithms)
		}
		if err := c.HostKeyCallback("x:22", nil, c.Signer.PublicKey()); err != nil {
			t.Errorf("HostKeyCallback: %v", err)
		}

		push := f.connect.pushes[i]
		pushed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(aws.ToString(push.SSHPublicKey)))
		if err != nil {
			t.Fatalf("parsing pushed key: %v", err)
		}
		if !bytes.Equal(pushed.Marshal(), c.Signer.PublicKey().Marshal()) {
			t.Error("pushed key is not the signer's public key")
		}
		if aws.ToString(push.InstanceId) != id1 || aws.ToString(push.InstanceOSUser) != "ec2-user" || aws.ToString(push.AvailabilityZone) != "us-east-1b" {
			t.Errorf("push = {%s, %s, %s}, want {%s, ec2-user, us-east-1b}",
				aws.ToString(push.InstanceId), aws.ToString(push.InstanceOSUser), aws.ToString(push.AvailabilityZone), id1)
		}
		sig, err := c.Signer.Sign(rand.Reader, []byte("x"))
		if err != nil || pushed.Verify([]byte("x"), sig) != nil {
			t.Errorf("signer does not sign for the pushed key: %v", err)
		}
		keys = append(keys, pushed.Marshal())
	}
	if bytes.Equal(keys[0], keys[1]) {
		t.Error("two Credentials calls pushed the same key, want a fresh key each time")
	}
	if !slices.Equal(f.hostKeys.ids, []string{id1, id1}) {
		t.Errorf("host key callbacks for %v, want [%s %s]", f.hostKeys.ids, id1, id1)
	}
}

func TestCredentialsPublicAddress(t *testing.T) {
	t.Parallel()
	f := newFixture()
	p := f.provider(t, Config{Address: AddressPublic, Port: 2022})
	c, err := p.Credentials(context.Background(), ec2Target(id1), "ec2-user")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Addr, "198.51.100.1:2022"; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
}

func TestCredentialsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        Config
		target     upstream.Target
		connectErr error
		failure    bool
		wantPublic string
		wantIs     error
	}{
		{name: "no public address", cfg: Config{Address: AddressPublic}, target: ec2Target(id2), wantPublic: "this EC2 instance has no public IP address"},
		{name: "stopped", target: ec2Target(id4), wantPublic: "this EC2 instance is stopped, not running"},
		{name: "gone", target: ec2Target("i-0eeeeeeeeeeeeeeee"), wantPublic: "this EC2 instance no longer exists", wantIs: upstream.ErrNotFound},
		{
			name:       "push refused",
			target:     ec2Target(id1),
			connectErr: &smithy.GenericAPIError{Code: "EC2InstanceNotFoundException"},
			wantPublic: "EC2 Instance Connect SendSSHPublicKey failed: EC2InstanceNotFoundException",
		},
		{name: "push not successful", target: ec2Target(id1), failure: true, wantPublic: "EC2 Instance Connect SendSSHPublicKey did not succeed"},
		{
			name:       "unconfigured region",
			target:     upstream.Target{Provider: "ec2", ID: id1, Region: "eu-west-1"},
			wantPublic: "EC2 region eu-west-1 is not configured",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			f.connect.err = tc.connectErr
			f.connect.failure = tc.failure
			p := f.provider(t, tc.cfg)
			_, err := p.Credentials(context.Background(), tc.target, "ec2-user")
			if got := upstream.PublicMessage(err); got != tc.wantPublic {
				t.Errorf("PublicMessage(%v) = %q, want %q", err, got, tc.wantPublic)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("got %v, want it to wrap %v", err, tc.wantIs)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no known_hosts", cfg: Config{Regions: []string{"us-east-1"}}, wantErr: "known_hosts"},
		{name: "bad mode", cfg: Config{Regions: []string{"us-east-1"}, KnownHosts: filepath.Join(dir, "kh"), HostKeys: "yolo"}, wantErr: "host key mode"},
		{name: "pinned, missing file", cfg: Config{Regions: []string{"us-east-1"}, KnownHosts: filepath.Join(dir, "missing"), HostKeys: "pinned"}, wantErr: "host key store"},
		{name: "no regions", cfg: Config{KnownHosts: filepath.Join(dir, "kh")}, wantErr: "no regions"},
		{name: "bad address", cfg: Config{Regions: []string{"us-east-1"}, KnownHosts: filepath.Join(dir, "kh"), Address: "elastic"}, wantErr: "address"},
		{name: "ok", cfg: Config{Regions: []string{"us-east-1"}, KnownHosts: filepath.Join(dir, "kh")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(aws.Config{Region: "us-east-1"}, tc.cfg)
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
