package lightsail

import (
	"context"

	"bastion/upstream"
	"bastion/upstream/build"
	"bastion/upstream/provider"
)

func init() { build.Register(provider.NameLightsail, fromConfig) }

// fromConfig builds the provider of providers.lightsail, if configured.
func fromConfig(ctx context.Context, env build.Env) (upstream.Provider, error) {
	ls := env.Config.Providers.Lightsail
	if ls == nil {
		return nil, nil
	}
	awsCfg, err := env.AWS(ctx)
	if err != nil {
		return nil, err
	}
	return New(awsCfg, Config{
		Regions:      ls.Regions,
		Address:      ls.Address,
		Port:         ls.Port,
		ResolveCache: build.ResolveCache(ls.ResolveCache),
		CallTimeout:  env.Config.Limits.AWSTimeout.D(),
		Logger:       env.Logger.Named(provider.NameLightsail),
		Observe:      env.Metrics.AWSCall,
		RDPPort:      ls.RDPPort,
		RDPKeyPairs:  ls.RDPKeyPairs,
	})
}
