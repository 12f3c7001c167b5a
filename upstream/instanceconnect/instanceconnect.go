// Package instanceconnect is the upstream.Provider for EC2 instances reached
// through EC2 Instance Connect.
//
// Instances are found with DescribeInstances, by instance id or by Name tag.
// For each connection the provider makes a fresh ed25519 key in memory and
// pushes its public half with SendSSHPublicKey; the instance accepts it for
// 60 seconds, so the caller dials at once. EC2 does not report host keys, so
// they are checked against a known_hosts store (package tofu).
package instanceconnect

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/singleflight"

	"bastion/fleet"
	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/provider"
	"bastion/upstream/tofu"
)

// Address choices for Config.Address.
const (
	AddressPrivate = provider.AddressPrivate
	AddressPublic  = provider.AddressPublic
)

// Defaults for zero Config fields, from provider.EC2.
const (
	DefaultPort         = provider.DefaultPort
	DefaultResolveCache = provider.DefaultResolveCache
)

// KeyLifetime is how long EC2 Instance Connect keeps a pushed key.
const KeyLifetime = 60 * time.Second

// EC2API is the subset of the EC2 client the provider uses.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// ConnectAPI is the subset of the EC2 Instance Connect client the provider
// uses.
type ConnectAPI interface {
	SendSSHPublicKey(ctx context.Context, in *ec2instanceconnect.SendSSHPublicKeyInput, optFns ...func(*ec2instanceconnect.Options)) (*ec2instanceconnect.SendSSHPublicKeyOutput, error)
}

// Clients are the clients for one region.
type Clients struct {
	EC2     EC2API
	Connect ConnectAPI
	// Console reads instances' console output, for host_keys: console;
	// nil without it.
	Console ConsoleAPI
}

// HostKeys verifies instances' host keys by instance id. *tofu.Store
// implements it.
type HostKeys interface {
	// Callback returns the host key callback for the instance id.
	Callback(id string) ssh.HostKeyCallback
	// HostKeyAlgorithms returns the algorithms to offer for id, or nil.
	HostKeyAlgorithms(id string) []string
}

// Config configures a Provider.
type Config struct {
	// Regions are the AWS regions searched, in order. At least one.
	Regions []string
	// Address is the address dialled: AddressPrivate (the default) or
	// AddressPublic.
	Address string
	// Port is the instances' SSH port; if zero, DefaultPort.
	Port int
	// HostKeys is the host key mode: tofu.ModeNameTOFU (the default),
	// tofu.ModeNamePinned (New opens KnownHosts with either), or
	// HostKeysConsole (keys read from each instance's console).
	HostKeys string
	// HostKeysFallback is what console mode does for an instance whose
	// console shows no host keys: FallbackRefuse (the default) or
	// FallbackTOFU (the KnownHosts store, learning on first use).
	HostKeysFallback string
	// KnownHosts is the path of the known_hosts store keyed by instance id;
	// New requires it.
	KnownHosts string
	// OnHostKeyLearned, if non-nil, is called when New's store learns an
	// instance's host key on first use (for the audit log).
	OnHostKeyLearned func(id string, key ssh.PublicKey)
	// Fleet, if non-nil, makes trust on first use fleet-wide (tofu.Fleet):
	// the first key any replica learns wins, and KnownHosts is this
	// replica's cache of it. Used with HostKeys tofu only.
	Fleet fleet.HostKeys
	// ResolveCache is how long DescribeInstances results (addresses
	// included) are reused; if zero, DefaultResolveCache; negative
	// disables caching.
	ResolveCache time.Duration
	// CallTimeout bounds each AWS call including its retries; if zero,
	// awsutil.DefaultCallTimeout.
	CallTimeout time.Duration
	// Logger receives one line per AWS call; if nil, nothing is logged.
	Logger *zap.Logger
	// Observe, if non-nil, is told of every AWS call (for metrics).
	Observe awsutil.Observer
	// Now returns the current time; if nil, time.Now. Tests set it.
	Now func() time.Time
}

// settings returns the fields cfg shares with every AWS provider.
func (cfg Config) settings() awsutil.Settings {
	return awsutil.Settings{Regions: cfg.Regions, Address: cfg.Address, Port: cfg.Port, ResolveCache: cfg.ResolveCache,
		CallTimeout: cfg.CallTimeout, Now: cfg.Now, Logger: cfg.Logger}
}

// Provider finds EC2 instances and pushes keys to them. It is safe for
// concurrent use.
type Provider struct {
	cfg      Config
	clients  map[string]Clients
	hostKeys HostKeys
	// hostKeySource is cfg.HostKeys or its default, for Credentials.
	hostKeySource string
	log           *zap.Logger
	// console holds the host keys read from consoles (HostKeysConsole).
	console consoleCache

	// flight merges concurrent identical DescribeInstances calls.
	flight singleflight.Group

	// mu protects byName and byID.
	mu     sync.Mutex
	byName map[cacheKey]lookupEntry
	byID   map[cacheKey]lookupEntry
}

// cacheKey is a region and a name or instance id.
type cacheKey struct{ region, key string }

// lookupEntry is a cached DescribeInstances answer.
type lookupEntry struct {
	insts   []*instance
	expires time.Time
}

// instance is what the provider keeps of an EC2 instance description.
type instance struct {
	id, name, region, zone string
	state                  string
	privateIP, publicIP    string
	tags                   map[string]string
}

// New returns a Provider with one EC2 and one EC2 Instance Connect client
// per configured region, built from awsCfg, checking host keys against the
// store at cfg.KnownHosts.
func New(awsCfg aws.Config, cfg Config) (*Provider, error) {
	if cfg.KnownHosts == "" {
		return nil, errors.New("instanceconnect: no known_hosts path configured")
	}
	modeName := cfg.HostKeys
	switch {
	case modeName == "":
		modeName = tofu.ModeNameTOFU
	case modeName == HostKeysConsole:
		// The store serves the tofu fallback alone; with the refuse
		// fallback it is never asked.
		modeName = tofu.ModeNameTOFU
		switch cfg.HostKeysFallback {
		case "", FallbackRefuse, FallbackTOFU:
		default:
			return nil, fmt.Errorf("instanceconnect: host_keys_fallback %q is neither %q nor %q", cfg.HostKeysFallback, FallbackRefuse, FallbackTOFU)
		}
	}
	mode, err := tofu.ParseMode(modeName)
	if err != nil {
		return nil, fmt.Errorf("instanceconnect: %w", err)
	}
	store, err := tofu.Open(cfg.KnownHosts, mode)
	if err != nil {
		return nil, fmt.Errorf("instanceconnect: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if ids := store.Conflicts(); len(ids) > 0 {
		log.Warn("conflicting host keys", zap.String("known_hosts", cfg.KnownHosts), zap.Strings("instances", ids),
			zap.String("action", "connections to these instances are refused until the wrong lines are removed"))
	}
	store.OnLearn = func(id string, key ssh.PublicKey) {
		log.Info("learned host key",
			zap.String("provider", upstream.ProviderEC2), zap.String("instance", id),
			zap.String("key_type", key.Type()), zap.String("fingerprint", ssh.FingerprintSHA256(key)))
		if cfg.OnHostKeyLearned != nil {
			cfg.OnHostKeyLearned(id, key)
		}
	}
	var hostKeys HostKeys = store
	if cfg.Fleet != nil && (cfg.HostKeys == "" || cfg.HostKeys == tofu.ModeNameTOFU) {
		hostKeys = &tofu.Fleet{Local: store, Remote: cfg.Fleet, OnLearn: store.OnLearn,
			OnDegraded: func(err error) { log.Warn("fleet store unreachable", zap.Error(err)) }}
	}
	clients := make(map[string]Clients, len(cfg.Regions))
	for _, r := range cfg.Regions {
		ec2c := ec2.NewFromConfig(awsCfg, func(o *ec2.Options) { o.Region = r })
		c := Clients{
			EC2:     ec2c,
			Connect: ec2instanceconnect.NewFromConfig(awsCfg, func(o *ec2instanceconnect.Options) { o.Region = r }),
		}
		if cfg.HostKeys == HostKeysConsole {
			c.Console = ec2c
		}
		clients[r] = c
	}
	return NewWithClients(clients, hostKeys, cfg)
}

// NewWithClients returns a Provider that uses clients[region] for each of
// cfg.Regions (every region in clients if cfg.Regions is empty) and checks
// host keys with hostKeys. cfg.HostKeys, KnownHosts and OnHostKeyLearned
// are not used.
func NewWithClients(clients map[string]Clients, hostKeys HostKeys, cfg Config) (*Provider, error) {
	if hostKeys == nil {
		return nil, errors.New("instanceconnect: no host key store")
	}
	s := cfg.settings()
	log, err := awsutil.Settle(&s, "instanceconnect", provider.EC2, [2]string{AddressPrivate, AddressPublic},
		clients, func(c Clients) bool { return c.EC2 != nil && c.Connect != nil }, "no clients for region")
	if err != nil {
		return nil, err
	}
	cfg.Regions, cfg.Address, cfg.Port, cfg.ResolveCache, cfg.CallTimeout, cfg.Now = s.Regions, s.Address, s.Port, s.ResolveCache, s.CallTimeout, s.Now
	source := cfg.HostKeys
	if source == "" {
		source = tofu.ModeNameTOFU
	}
	return &Provider{
		cfg:           cfg,
		clients:       clients,
		hostKeys:      hostKeys,
		hostKeySource: source,
		log:           log,
		byName:        make(map[cacheKey]lookupEntry),
		byID:          make(map[cacheKey]lookupEntry),
	}, nil
}

// Name returns upstream.ProviderEC2.
func (p *Provider) Name() string { return upstream.ProviderEC2 }

// instanceID matches EC2 instance ids: "i-" and 8 or 17 hex digits.
var instanceID = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)

// IsInstanceID reports whether s has the form of an EC2 instance id.
func IsInstanceID(s string) bool { return instanceID.MatchString(s) }

// Resolve finds instances by id (q.Name like i-0123456789abcdef0, in any
// state but terminated) or else by Name tag (running instances only), in
// each configured region (or only q.Region) in parallel. An error in any
// region fails the whole lookup: without it, the provider cannot tell one
// match from two.
func (p *Provider) Resolve(ctx context.Context, q upstream.Query) ([]upstream.Target, error) {
	if q.Provider != "" && q.Provider != upstream.ProviderEC2 {
		return nil, nil
	}
	byID := IsInstanceID(q.Name)
	// EC2 filter values treat * and ? as wildcards; a name with them (or
	// the escape character) would match other instances.
	if q.Name == "" || (!byID && strings.ContainsAny(q.Name, `*?\`)) {
		return nil, nil
	}
	regions := p.cfg.Regions
	if q.Region != "" {
		if !slices.Contains(regions, q.Region) {
			return nil, nil
		}
		regions = []string{q.Region}
	}

	targets, err := awsutil.EachRegion(regions, func(r string) ([]upstream.Target, error) {
		insts, err := p.lookup(ctx, r, q.Name, byID)
		return targetsOf(insts), err
	})
	if err != nil {
		return nil, err
	}
	return targets, nil
}

// targetsOf returns the upstream.Targets of insts.
func targetsOf(insts []*instance) []upstream.Target {
	var out []upstream.Target
	for _, in := range insts {
		out = append(out, in.target())
	}
	return out
}

// target returns the upstream.Target for in.
func (in *instance) target() upstream.Target {
	return upstream.Target{
		Provider: upstream.ProviderEC2,
		Name:     in.name,
		ID:       in.id,
		Region:   in.region,
		Zone:     in.zone,
		Tags:     in.tags,
	}
}

// lookup returns the instances in region with id key (byID) or Name tag
// key, from the cache or DescribeInstances.
func (p *Provider) lookup(ctx context.Context, region, key string, byID bool) ([]*instance, error) {
	cache, kind := p.byName, "name"
	if byID {
		cache, kind = p.byID, "id"
	}
	k := cacheKey{region, key}
	if insts, ok := p.cached(cache, k); ok {
		return insts, nil
	}
	v, err := awsutil.Shared(ctx, &p.flight, kind+"\x00"+region+"\x00"+key, func(ctx context.Context) (any, error) {
		if insts, ok := p.cached(cache, k); ok {
			return insts, nil
		}
		insts, err := p.describe(ctx, region, key, byID)
		if err != nil {
			return nil, err
		}
		p.store(cache, k, insts)
		return insts, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]*instance), nil
}

// cached returns the unexpired entry for k in cache, if any.
func (p *Provider) cached(cache map[cacheKey]lookupEntry, k cacheKey) ([]*instance, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := cache[k]
	if !ok {
		return nil, false
	}
	if !p.cfg.Now().Before(e.expires) {
		delete(cache, k)
		return nil, false
	}
	return e.insts, true
}

// store caches insts under k in cache, and each instance under its id.
func (p *Provider) store(cache map[cacheKey]lookupEntry, k cacheKey, insts []*instance) {
	if p.cfg.ResolveCache <= 0 {
		return
	}
	expires := p.cfg.Now().Add(p.cfg.ResolveCache)
	p.mu.Lock()
	defer p.mu.Unlock()
	cache[k] = lookupEntry{insts: insts, expires: expires}
	for _, in := range insts {
		p.byID[cacheKey{in.region, in.id}] = lookupEntry{insts: []*instance{in}, expires: expires}
	}
}

// notFoundCodes are the EC2 error codes that mean "no such instance id".
var notFoundCodes = []string{"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}

// describe calls DescribeInstances, following pages. An id that does not
// exist (or is malformed) gives no instances.
func (p *Provider) describe(ctx context.Context, region, key string, byID bool) ([]*instance, error) {
	in := &ec2.DescribeInstancesInput{}
	// key "" (not by id) lists every running instance.
	listAll := !byID && key == ""
	switch {
	case byID:
		in.InstanceIds = []string{key}
	case listAll:
		in.Filters = []types.Filter{
			{Name: aws.String("instance-state-name"), Values: []string{string(types.InstanceStateNameRunning)}},
		}
	default:
		in.Filters = []types.Filter{
			{Name: aws.String("tag:Name"), Values: []string{key}},
			{Name: aws.String("instance-state-name"), Values: []string{string(types.InstanceStateNameRunning)}},
		}
	}
	call := awsutil.Call{
		Service:   awsutil.ServiceEC2,
		Operation: "DescribeInstances",
		Timeout:   p.cfg.CallTimeout,
		Logger:    p.log,
		Fields:    []zap.Field{zap.String("instance", key), zap.String("region", region)},
		// A missing id is a normal "no match".
		ExpectedCodes: notFoundCodes,
		Observe:       p.cfg.Observe,
	}
	// One deadline covers every page.
	pages, _, err := awsutil.Do(ctx, call, func(ctx context.Context) ([]*ec2.DescribeInstancesOutput, middleware.Metadata, error) {
		var pages []*ec2.DescribeInstancesOutput
		for {
			out, err := p.clients[region].EC2.DescribeInstances(ctx, in)
			if err != nil {
				return nil, middleware.Metadata{}, err
			}
			pages = append(pages, out)
			if aws.ToString(out.NextToken) == "" {
				return pages, out.ResultMetadata, nil
			}
			in.NextToken = out.NextToken
		}
	})
	if awsutil.IsErrorCode(err, notFoundCodes...) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var insts []*instance
	for _, out := range pages {
		for _, res := range out.Reservations {
			for i := range res.Instances {
				inst := fromSDK(&res.Instances[i], region)
				switch {
				case byID && inst.id != key,
					byID && inst.state == string(types.InstanceStateNameTerminated),
					!byID && !listAll && inst.tags["Name"] != key:
					// Guard against a filter broader than asked.
					continue
				}
				insts = append(insts, inst)
			}
		}
	}
	slices.SortFunc(insts, func(a, b *instance) int { return strings.Compare(a.id, b.id) })
	return insts, nil
}

// List returns the running instances of every configured region.
func (p *Provider) List(ctx context.Context) ([]upstream.Target, error) {
	return awsutil.EachRegion(p.cfg.Regions, func(r string) ([]upstream.Target, error) {
		insts, err := p.describe(ctx, r, "", false)
		return targetsOf(insts), err
	})
}

// fromSDK converts the SDK's instance description.
func fromSDK(v *types.Instance, region string) *instance {
	in := &instance{
		id:        aws.ToString(v.InstanceId),
		region:    region,
		privateIP: aws.ToString(v.PrivateIpAddress),
		publicIP:  aws.ToString(v.PublicIpAddress),
	}
	if v.Placement != nil {
		in.zone = aws.ToString(v.Placement.AvailabilityZone)
	}
	if v.State != nil {
		in.state = string(v.State.Name)
	}
	if len(v.Tags) > 0 {
		in.tags = make(map[string]string, len(v.Tags))
		for _, t := range v.Tags {
			in.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	in.name = in.tags["Name"]
	if in.name == "" {
		in.name = in.id
	}
	return in
}

// Interface guard.
var (
	_ upstream.Provider = (*Provider)(nil)
	_ upstream.Lister   = (*Provider)(nil)
)
