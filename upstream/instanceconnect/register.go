package instanceconnect

import (
	"context"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/upstream"
	"bastion/upstream/build"
	"bastion/upstream/provider"
	"bastion/upstream/tofu"
)

func init() { build.Register(provider.NameEC2, fromConfig) }

// fromConfig builds the provider of providers.ec2, if configured. A host
// key learned on first use is logged and audited.
func fromConfig(ctx context.Context, env build.Env) (upstream.Provider, error) {
	ec := env.Config.Providers.EC2
	if ec == nil {
		return nil, nil
	}
	awsCfg, err := env.AWS(ctx)
	if err != nil {
		return nil, err
	}
	log := env.Logger
	return New(awsCfg, Config{
		Regions:          ec.Regions,
		Address:          ec.Address,
		Port:             ec.Port,
		HostKeys:         ec.HostKeys,
		HostKeysFallback: ec.HostKeysFallback,
		Fleet:            env.Fleet,
		KnownHosts:       ec.KnownHosts,
		ResolveCache:     build.ResolveCache(ec.ResolveCache),
		CallTimeout:      env.Config.Limits.AWSTimeout.D(),
		Logger:           log.Named(provider.NameEC2),
		Observe:          env.Metrics.AWSCall,
		OnHostKeyLearned: func(id string, key ssh.PublicKey) {
			fp := ssh.FingerprintSHA256(key)
			log.Info("host_key_learned", zap.String("instance_id", id), zap.String("fingerprint", fp))
			// host_key_fingerprint, as host_key_verified has it:
			// key_fingerprint names the person's key everywhere else. It
			// is kept, with the same value, for existing readers.
			env.Audit.Emit(audit.Event{Type: audit.TypeHostKeyLearned, Provider: upstream.ProviderEC2, InstanceID: id,
				HostKeyFingerprint: fp, HostKeySource: tofu.ModeNameTOFU, KeyFingerprint: fp})
		},
	})
}
