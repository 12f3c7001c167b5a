package assemble

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/config"
	"bastion/metrics"
	"bastion/proxy"
	"bastion/upstream"
	"bastion/upstream/secretref"
)

// LoadHostKey returns the key value names for config key ("host_key" or
// "host_ca_key"), as New loads it, within cfg's aws_timeout and with the
// SDK's default chain: ssh-config reads the public half of a key kept in
// AWS with it.
func LoadHostKey(ctx context.Context, cfg *config.Config, key, value string) (ssh.Signer, error) {
	return loadHostKey(ctx, key, value, &awsLoader{}, cfg.Limits.AWSTimeout.D(), zap.NewNop(), nil)
}

// loadHostKey returns the key that value (of config key) names: a file,
// created on first start if missing, or an SSM parameter or Secrets
// Manager secret, fetched now and kept in memory only (replicas share it;
// nothing is created or written).
func loadHostKey(ctx context.Context, key, value string, aws *awsLoader, timeout time.Duration, log *zap.Logger, m *metrics.Metrics) (ssh.Signer, error) {
	ref, err := secretref.Parse(value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if !ref.IsAWS() {
		signer, created, err := proxy.LoadOrCreateKey(value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if created {
			log.Info("key_created", zap.String("key", key), zap.String("path", value), zap.String("fingerprint", ssh.FingerprintSHA256(signer.PublicKey())))
		}
		return signer, nil
	}
	awsCfg, err := aws.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	f := secretref.NewFetcher(awsCfg)
	f.Timeout, f.Logger, f.Observe = timeout, log.Named("keys"), m.AWSCall
	pem, err := f.Fetch(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", key, upstream.PublicMessage(err))
	}
	signer, err := ssh.ParsePrivateKey(pem)
	clear(pem)
	if err != nil {
		return nil, fmt.Errorf("%s: %s holds no unencrypted private key: %w", key, ref, err)
	}
	log.Info("key_loaded", zap.String("key", key), zap.Stringer("from", ref), zap.String("fingerprint", ssh.FingerprintSHA256(signer.PublicKey())))
	return signer, nil
}
