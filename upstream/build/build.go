// Package build is where each provider kind registers the constructor that
// makes its upstream.Provider from the bastion's config, as a
// database/sql driver registers itself: one init line in the provider's
// own package. The assembly (package assemble) calls Providers, which asks
// every registered kind in the registry's order (upstream/provider), so
// adding a kind touches its own folder, its descriptor, and one import in
// package upstream/builtin.
package build

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"

	"bastion/audit"
	"bastion/config"
	"bastion/fleet"
	"bastion/metrics"
	"bastion/upstream"
	"bastion/upstream/provider"
)

// Env is what a constructor gets from the assembly.
type Env struct {
	// Config is the whole bastion config; a kind reads its own section
	// (providers.NAME) and the limits it honours (aws_timeout).
	Config *config.Config
	// AWS returns the AWS SDK config, loading it on first use; only AWS
	// kinds call it, so a bastion without one never looks for AWS
	// credentials.
	AWS func(context.Context) (aws.Config, error)
	// Logger is the bastion's logger; a kind names its own.
	Logger *zap.Logger
	// Audit receives the events a kind writes itself (a host key learned);
	// nil writes none.
	Audit *audit.Logger
	// Metrics counts AWS calls; nil counts none.
	Metrics *metrics.Metrics
	// Fleet is the state the replicas share (fleet.dynamodb_table); nil
	// without one.
	Fleet fleet.HostKeys
	// Files is false when the providers are built only to list or check
	// targets without reading their key files (ssh-config, check-config
	// --no-file-checks): a kind that needs files to exist builds nothing.
	Files bool
}

// Func builds the provider of its kind from env, or returns nil and no
// error when the config does not configure the kind.
type Func func(ctx context.Context, env Env) (upstream.Provider, error)

var (
	mu    sync.RWMutex
	funcs = map[string]Func{}
)

// Register makes f the constructor of the provider kind named name. It
// panics if the kind has no descriptor in the registry or already has a
// constructor; it is meant to be called from init.
func Register(name string, f Func) {
	if _, ok := provider.Lookup(name); !ok {
		panic(fmt.Sprintf("build: provider kind %q has no descriptor (upstream/provider)", name))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := funcs[name]; dup {
		panic(fmt.Sprintf("build: provider kind %q registered twice", name))
	}
	funcs[name] = f
}

// Registered reports whether the kind named name has a constructor.
func Registered(name string) bool {
	mu.RLock()
	defer mu.RUnlock()
	_, ok := funcs[name]
	return ok
}

// Providers builds the provider of every registered kind that the config
// configures, in the registry's order (the order the resolver asks them).
// An error names the kind's config section.
func Providers(ctx context.Context, env Env) ([]upstream.Provider, error) {
	if env.Logger == nil {
		env.Logger = zap.NewNop()
	}
	var out []upstream.Provider
	for _, d := range provider.All() {
		mu.RLock()
		f := funcs[d.Name]
		mu.RUnlock()
		if f == nil {
			continue
		}
		p, err := f(ctx, env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Section(), err)
		}
		if p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// ResolveCache maps the config's resolve_cache, where zero is no caching,
// to the AWS providers' Config.ResolveCache, where zero is the default and
// negative is no caching. It is the one place the two conventions meet.
func ResolveCache(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d.D()
}
