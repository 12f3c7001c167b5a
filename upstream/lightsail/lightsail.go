// Package lightsail is the upstream.Provider for Amazon Lightsail instances.
//
// Instances are found by name with GetInstance in each configured region.
// Credentials come from GetInstanceAccessDetails: a temporary key pair and
// an SSH certificate signed by the Lightsail CA for the instance's one user,
// the instance's address and the host keys Lightsail witnessed, which are the
// only host keys accepted.
package lightsail

import (
	"context"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/aws-sdk-go-v2/service/lightsail/types"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/provider"
)

// Address choices for Config.Address.
const (
	AddressPublic  = provider.AddressPublic
	AddressPrivate = provider.AddressPrivate
)

// Defaults for zero Config fields, from provider.Lightsail.
const (
	DefaultPort         = provider.DefaultPort
	DefaultResolveCache = provider.DefaultResolveCache
)

// refreshBefore is how long before their expiry cached access details are
// replaced, so that a connection never starts with a certificate about to
// lapse.
const refreshBefore = time.Minute

// API is the subset of the Lightsail client the provider uses. The SDK's
// *lightsail.Client implements it.
type API interface {
	GetInstance(ctx context.Context, in *lightsail.GetInstanceInput, optFns ...func(*lightsail.Options)) (*lightsail.GetInstanceOutput, error)
	GetInstanceAccessDetails(ctx context.Context, in *lightsail.GetInstanceAccessDetailsInput, optFns ...func(*lightsail.Options)) (*lightsail.GetInstanceAccessDetailsOutput, error)
	GetInstances(ctx context.Context, in *lightsail.GetInstancesInput, optFns ...func(*lightsail.Options)) (*lightsail.GetInstancesOutput, error)
}

// Config configures a Provider.
type Config struct {
	// Regions are the AWS regions searched, in order. At least one.
	Regions []string
	// Address is the address dialled: AddressPublic (the default, the
	// address GetInstanceAccessDetails returns) or AddressPrivate.
	Address string
	// Port is the instance's SSH port; if zero, DefaultPort.
	Port int
	// ResolveCache is how long GetInstance results, not-found included,
	// are reused; if zero, DefaultResolveCache; negative disables caching.
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
	// RDPPort is the Windows instances' Remote Desktop port; if zero,
	// DefaultRDPPort.
	RDPPort int
	// RDPKeyPairs maps a key pair name to the file of its RSA private
	// key, which decrypts the passwords of instances created with it.
	RDPKeyPairs map[string]string
}

// settings returns the fields cfg shares with every AWS provider.
func (cfg Config) settings() awsutil.Settings {
	return awsutil.Settings{Regions: cfg.Regions, Address: cfg.Address, Port: cfg.Port, ResolveCache: cfg.ResolveCache,
		CallTimeout: cfg.CallTimeout, Now: cfg.Now, Logger: cfg.Logger}
}

// Provider finds Lightsail instances and issues credentials for them. It is
// safe for concurrent use.
type Provider struct {
	cfg     Config
	clients map[string]API
	log     *zap.Logger

	// flight merges concurrent identical AWS calls (keyed by operation,
	// region and instance name).
	flight singleflight.Group

	// mu protects instances and access.
	mu        sync.Mutex
	instances map[cacheKey]instanceEntry
	access    map[cacheKey]*accessDetails
	// prefetched holds access details fetched by Prefetch that were too
	// close to expiry to cache, for the one Credentials call that follows.
	prefetched map[cacheKey]prefetch
	// rdp caches Remote Desktop access details (rdp.go).
	rdp rdpCache
}

// cacheKey identifies an instance: names are unique per region.
type cacheKey struct{ region, name string }

// instanceEntry is a cached GetInstance result; inst is nil for not found.
type instanceEntry struct {
	inst    *instance
	expires time.Time
}

// instance is what the provider keeps of a GetInstance answer.
type instance struct {
	name, region, zone string
	state              string
	publicIP           string
	privateIP          string
	username           string
	tags               map[string]string
}

// New returns a Provider that uses one SDK client per configured region,
// built from awsCfg.
func New(awsCfg aws.Config, cfg Config) (*Provider, error) {
	clients := make(map[string]API, len(cfg.Regions))
	for _, r := range cfg.Regions {
		clients[r] = lightsail.NewFromConfig(awsCfg, func(o *lightsail.Options) { o.Region = r })
	}
	return NewWithClients(clients, cfg)
}

// NewWithClients returns a Provider that uses clients[region] for each of
// cfg.Regions; if cfg.Regions is empty, every region in clients is used.
func NewWithClients(clients map[string]API, cfg Config) (*Provider, error) {
	s := cfg.settings()
	log, err := awsutil.Settle(&s, "lightsail", provider.Lightsail, [2]string{AddressPublic, AddressPrivate},
		clients, func(c API) bool { return c != nil }, "no client for region")
	if err != nil {
		return nil, err
	}
	cfg.Regions, cfg.Address, cfg.Port, cfg.ResolveCache, cfg.CallTimeout, cfg.Now = s.Regions, s.Address, s.Port, s.ResolveCache, s.CallTimeout, s.Now
	return &Provider{
		cfg:        cfg,
		clients:    clients,
		log:        log,
		instances:  make(map[cacheKey]instanceEntry),
		access:     make(map[cacheKey]*accessDetails),
		prefetched: make(map[cacheKey]prefetch),
	}, nil
}

// Name returns upstream.ProviderLightsail.
func (p *Provider) Name() string { return upstream.ProviderLightsail }

// validName matches the names Lightsail accepts; others cannot exist, so
// they are not looked up.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// Resolve looks q.Name up in each configured region (or only q.Region) in
// parallel. An error in any region fails the whole lookup: without it, the
// provider cannot tell one match from two.
func (p *Provider) Resolve(ctx context.Context, q upstream.Query) ([]upstream.Target, error) {
	if q.Provider != "" && q.Provider != upstream.ProviderLightsail {
		return nil, nil
	}
	if !validName.MatchString(q.Name) {
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
		in, err := p.instance(ctx, r, q.Name)
		if err != nil || in == nil {
			return nil, err
		}
		return []upstream.Target{in.target()}, nil
	})
	if err != nil {
		return nil, err
	}
	return targets, nil
}

// List returns the running instances of every configured region, with
// GetInstances (all pages). It is not cached: listing is rare and people
// expect it to be current.
func (p *Provider) List(ctx context.Context) ([]upstream.Target, error) {
	return awsutil.EachRegion(p.cfg.Regions, func(r string) ([]upstream.Target, error) { return p.listRegion(ctx, r) })
}

func (p *Provider) listRegion(ctx context.Context, region string) ([]upstream.Target, error) {
	pages, _, err := awsutil.Do(ctx, p.call("GetInstances", region, ""), func(ctx context.Context) ([]*lightsail.GetInstancesOutput, middleware.Metadata, error) {
		var pages []*lightsail.GetInstancesOutput
		in := &lightsail.GetInstancesInput{}
		for {
			out, err := p.clients[region].GetInstances(ctx, in)
			if err != nil {
				return nil, middleware.Metadata{}, err
			}
			pages = append(pages, out)
			if aws.ToString(out.NextPageToken) == "" {
				return pages, out.ResultMetadata, nil
			}
			in.PageToken = out.NextPageToken
		}
	})
	if err != nil {
		return nil, err
	}
	var out []upstream.Target
	for _, page := range pages {
		for i := range page.Instances {
			in := fromSDK(&page.Instances[i], region)
			if in.state == "" || in.state == "running" {
				out = append(out, in.target())
			}
		}
	}
	return out, nil
}

// target returns the upstream.Target for in.
func (in *instance) target() upstream.Target {
	return upstream.Target{
		Provider: upstream.ProviderLightsail,
		Name:     in.name,
		ID:       in.name,
		Region:   in.region,
		Zone:     in.zone,
		Tags:     in.tags,
	}
}

// instance returns the instance called name in region, or nil if there is
// none, from the cache or GetInstance.
func (p *Provider) instance(ctx context.Context, region, name string) (*instance, error) {
	k := cacheKey{region, name}
	if in, ok := p.cachedInstance(k); ok {
		return in, nil
	}
	v, err := awsutil.Shared(ctx, &p.flight, "GetInstance\x00"+region+"\x00"+name, func(ctx context.Context) (any, error) {
		// A flight that finished between our cache check and this
		// one's start has filled the cache.
		if in, ok := p.cachedInstance(k); ok {
			return in, nil
		}
		in, err := p.getInstance(ctx, region, name)
		if err != nil {
			return nil, err
		}
		if p.cfg.ResolveCache > 0 {
			p.mu.Lock()
			p.instances[k] = instanceEntry{inst: in, expires: p.cfg.Now().Add(p.cfg.ResolveCache)}
			p.mu.Unlock()
		}
		return in, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*instance), nil
}

// cachedInstance returns the unexpired cache entry for k, if any.
func (p *Provider) cachedInstance(k cacheKey) (*instance, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.instances[k]
	if !ok {
		return nil, false
	}
	if !p.cfg.Now().Before(e.expires) {
		delete(p.instances, k)
		return nil, false
	}
	return e.inst, true
}

// notFoundCodes are the Lightsail error codes that mean "no such instance".
var notFoundCodes = []string{"NotFoundException", "DoesNotExist"}

// getInstance calls GetInstance; not found is a nil instance.
func (p *Provider) getInstance(ctx context.Context, region, name string) (*instance, error) {
	call := p.call("GetInstance", region, name)
	call.ExpectedCodes = notFoundCodes
	out, _, err := awsutil.Do(ctx, call, func(ctx context.Context) (*lightsail.GetInstanceOutput, middleware.Metadata, error) {
		out, err := p.clients[region].GetInstance(ctx, &lightsail.GetInstanceInput{InstanceName: aws.String(name)})
		if err != nil {
			return nil, middleware.Metadata{}, err
		}
		return out, out.ResultMetadata, nil
	})
	switch {
	case awsutil.IsErrorCode(err, notFoundCodes...):
		return nil, nil
	case err != nil:
		return nil, err
	case out.Instance == nil:
		return nil, nil
	}
	return fromSDK(out.Instance, region), nil
}

// fromSDK converts the SDK's instance description.
func fromSDK(v *types.Instance, region string) *instance {
	in := &instance{
		name:      aws.ToString(v.Name),
		region:    region,
		publicIP:  aws.ToString(v.PublicIpAddress),
		privateIP: aws.ToString(v.PrivateIpAddress),
		username:  aws.ToString(v.Username),
	}
	if v.Location != nil {
		in.zone = aws.ToString(v.Location.AvailabilityZone)
	}
	if v.State != nil {
		in.state = aws.ToString(v.State.Name)
	}
	if len(v.Tags) > 0 {
		in.tags = make(map[string]string, len(v.Tags))
		for _, t := range v.Tags {
			in.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	return in
}

// call describes an AWS call about one instance.
func (p *Provider) call(op, region, name string) awsutil.Call {
	return awsutil.Call{
		Service:   awsutil.ServiceLightsail,
		Operation: op,
		Timeout:   p.cfg.CallTimeout,
		Logger:    p.log,
		Fields:    []zap.Field{zap.String("instance", name), zap.String("region", region)},
		Observe:   p.cfg.Observe,
	}
}

// Interface guards.
var (
	_ upstream.Provider   = (*Provider)(nil)
	_ upstream.Lister     = (*Provider)(nil)
	_ upstream.Prefetcher = (*Provider)(nil)
)
