package assemble

import (
	"cmp"
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
	"bastion/upstream/static"
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

// Providers builds the providers cfg configures, as New does, with the
// SDK's default chain unless opt.AWS is set; nothing is audited or
// counted. check-config uses it to prove that serve could build them.
func Providers(ctx context.Context, cfg *config.Config, opt Options) ([]upstream.Provider, error) {
	return newProviders(ctx, cfg, cmp.Or(opt.Logger, zap.NewNop()), opt.Audit, &awsLoader{given: opt.AWS}, nil, true)
}

// AWSProviders is Providers without the static one, which reads key
// files: the providers ssh-config lists and check-config
// --no-file-checks builds.
func AWSProviders(ctx context.Context, cfg *config.Config, opt Options) ([]upstream.Provider, error) {
	return newProviders(ctx, cfg, cmp.Or(opt.Logger, zap.NewNop()), opt.Audit, &awsLoader{given: opt.AWS}, nil, false)
}

// newProviders builds the providers cfg configures, in the order the
// resolver asks them: Lightsail, EC2 and, if withStatic, static. The SDK
// config is loaded only if an AWS provider is configured. al and m may be
// nil.
func newProviders(ctx context.Context, cfg *config.Config, log *zap.Logger, al *audit.Logger, loader *awsLoader, m *metrics.Metrics, withStatic bool) ([]upstream.Provider, error) {
	var out []upstream.Provider
	timeout := cfg.Limits.AWSTimeout.D()
	var awsCfg aws.Config
	if cfg.Providers.Lightsail != nil || cfg.Providers.EC2 != nil {
		var err error
		if awsCfg, err = loader.load(ctx); err != nil {
			return nil, err
		}
	}
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
	if withStatic && len(cfg.Providers.Static) > 0 {
		hosts := make([]static.Host, 0, len(cfg.Providers.Static))
		for _, st := range cfg.Providers.Static {
			signer, err := static.LoadSigner(st.PrivateKey)
			if err != nil {
				return nil, fmt.Errorf("providers.static %s: %w", st.Name, err)
			}
			h := static.Host{Name: st.Name, Address: st.Address, User: st.User, Signer: signer, KnownHosts: st.KnownHosts, Tags: st.Tags}
			if st.HostKey != "" {
				h.HostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(st.HostKey))
				if err != nil {
					return nil, fmt.Errorf("providers.static %s: host_key: %w", st.Name, err)
				}
			}
			hosts = append(hosts, h)
		}
		p, err := static.New(hosts)
		if err != nil {
			return nil, err
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
