package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/config"
	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/instanceconnect"
	"bastion/upstream/lightsail"
)

// newAWSProviders builds the Lightsail and EC2 providers cfg configures,
// with AWS credentials and endpoints from the SDK's default chain (env,
// shared config, IMDS, IRSA; AWS_ENDPOINT_URL_* overrides).
func newAWSProviders(ctx context.Context, cfg *config.Config, log *zap.Logger, al *audit.Logger, given *aws.Config) ([]upstream.Provider, error) {
	ls, ec := cfg.Providers.Lightsail, cfg.Providers.EC2
	if ls == nil && ec == nil {
		return nil, nil
	}
	if given != nil {
		return awsProviders(*given, cfg, log, al)
	}
	// A person is waiting on every call: retry throttling and 5xx the
	// standard way, but with at most a second between attempts so that
	// retries fit in the per-call deadline (limits.aws_timeout).
	awsCfg, err := awsutil.LoadConfig(ctx, awsutil.WithRetry(3, time.Second))
	if err != nil {
		return nil, err
	}
	return awsProviders(awsCfg, cfg, log, al)
}

// awsProviders builds the AWS providers from an already loaded SDK config
// (the demo hands in one that points at the fake).
func awsProviders(awsCfg aws.Config, cfg *config.Config, log *zap.Logger, al *audit.Logger) ([]upstream.Provider, error) {
	var out []upstream.Provider
	timeout := cfg.Limits.AWSTimeout.D()
	if ls := cfg.Providers.Lightsail; ls != nil {
		p, err := lightsail.New(awsCfg, lightsail.Config{
			Regions:      ls.Regions,
			Address:      ls.Address,
			Port:         ls.Port,
			ResolveCache: cacheTTL(ls.ResolveCache),
			CallTimeout:  timeout,
			Logger:       log.Named("lightsail"),
		})
		if err != nil {
			return nil, fmt.Errorf("providers.lightsail: %w", err)
		}
		out = append(out, p)
	}
	if ec := cfg.Providers.EC2; ec != nil {
		p, err := instanceconnect.New(awsCfg, instanceconnect.Config{
			Regions:      ec.Regions,
			Address:      ec.Address,
			Port:         ec.Port,
			HostKeys:     ec.HostKeys,
			KnownHosts:   ec.KnownHosts,
			ResolveCache: cacheTTL(ec.ResolveCache),
			CallTimeout:  timeout,
			Logger:       log.Named("ec2"),
			OnHostKeyLearned: func(id string, key ssh.PublicKey) {
				fp := ssh.FingerprintSHA256(key)
				log.Info("host_key_learned", zap.String("instance_id", id), zap.String("fingerprint", fp))
				al.Emit(audit.Event{Type: audit.TypeHostKeyLearned, Provider: upstream.ProviderEC2, InstanceID: id, KeyFingerprint: fp})
			},
		})
		if err != nil {
			return nil, fmt.Errorf("providers.ec2: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// cacheTTL maps the config's resolve_cache (0 = no caching) to the
// providers' convention (0 = default, negative = none).
func cacheTTL(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d.D()
}
