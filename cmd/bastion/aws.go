package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/audit/recording"
	"bastion/config"
	"bastion/metrics"
	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/instanceconnect"
	"bastion/upstream/lightsail"
	"bastion/upstream/tofu"
)

// awsLoader loads the AWS SDK config once, when first needed: from the
// SDK's default chain (env, shared config, IMDS, IRSA; AWS_ENDPOINT_URL_*
// overrides), unless given one (the demo's, pointing at the fake).
type awsLoader struct {
	given *aws.Config
	cfg   *aws.Config
}

func (a *awsLoader) load(ctx context.Context) (aws.Config, error) {
	if a.given != nil {
		return *a.given, nil
	}
	if a.cfg == nil {
		// A person is waiting on every call: retry throttling and 5xx
		// the standard way, but with at most a second between attempts
		// so that retries fit in the per-call deadline
		// (limits.aws_timeout).
		c, err := awsutil.LoadConfig(ctx, awsutil.WithRetry(3, time.Second))
		if err != nil {
			return aws.Config{}, err
		}
		a.cfg = &c
	}
	return *a.cfg, nil
}

// newAWSProviders builds the Lightsail and EC2 providers cfg configures.
func newAWSProviders(ctx context.Context, cfg *config.Config, log *zap.Logger, al *audit.Logger, loader *awsLoader, m *metrics.Metrics) ([]upstream.Provider, error) {
	if cfg.Providers.Lightsail == nil && cfg.Providers.EC2 == nil {
		return nil, nil
	}
	awsCfg, err := loader.load(ctx)
	if err != nil {
		return nil, err
	}
	return awsProviders(awsCfg, cfg, log, al, m)
}

// newUploader returns the S3 uploader of audit.s3. With a custom S3
// endpoint (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, as for MinIO or a
// test fake) it uses path-style addressing.
func newUploader(ctx context.Context, cfg *config.Config, log *zap.Logger, al *audit.Logger, loader *awsLoader, m *metrics.Metrics) (*recording.Uploader, error) {
	awsCfg, err := loader.load(ctx)
	if err != nil {
		return nil, err
	}
	sc := cfg.Audit.S3
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if sc.Region != "" {
			o.Region = sc.Region
		}
		if os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" {
			o.UsePathStyle = true
		}
	})
	u := &recording.Uploader{
		Client:    client,
		Bucket:    sc.Bucket,
		Prefix:    sc.Prefix,
		Dir:       cfg.Audit.Recordings,
		KeepLocal: sc.KeepLocal,
		Logger:    log.Named("s3"),
		AfterUpload: func(path string, err error) {
			m.Upload(err)
			if err == nil {
				al.Emit(audit.Event{Type: audit.TypeRecordingUploaded, Recording: sc.Prefix + filepath.Base(path)})
			}
		},
	}
	return u, nil
}

// awsProviders builds the AWS providers from an already loaded SDK config
// (the demo hands in one that points at the fake).
func awsProviders(awsCfg aws.Config, cfg *config.Config, log *zap.Logger, al *audit.Logger, m *metrics.Metrics) ([]upstream.Provider, error) {
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
			Observe:      m.AWSCall,
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
			Observe:      m.AWSCall,
			OnHostKeyLearned: func(id string, key ssh.PublicKey) {
				fp := ssh.FingerprintSHA256(key)
				log.Info("host_key_learned", zap.String("instance_id", id), zap.String("fingerprint", fp))
				// host_key_fingerprint, as host_key_verified has it:
				// key_fingerprint names the person's key everywhere else.
				// It is kept, with the same value, for existing readers.
				al.Emit(audit.Event{Type: audit.TypeHostKeyLearned, Provider: upstream.ProviderEC2, InstanceID: id,
					HostKeyFingerprint: fp, HostKeySource: tofu.ModeNameTOFU, KeyFingerprint: fp})
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
