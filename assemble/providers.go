package assemble

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"bastion/audit"
	"bastion/audit/recording"
	"bastion/config"
	"bastion/fleet"
	"bastion/metrics"
	"bastion/upstream"
	"bastion/upstream/awsutil"
	"bastion/upstream/build"
	_ "bastion/upstream/builtin"
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

// newS3Client returns the client of the recordings bucket.
func newS3Client(awsCfg aws.Config, sc *config.S3) *s3.Client {
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if sc.Region != "" {
			o.Region = sc.Region
		}
		if os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" {
			o.UsePathStyle = true
		}
	})
}

// RecordingsClient returns the S3 client of cfg's audit.s3 bucket, from
// the SDK's default chain unless opt.AWS is set, as serve builds it;
// `bastion audit fetch` uses it.
func RecordingsClient(ctx context.Context, cfg *config.Config, opt Options) (*s3.Client, error) {
	if cfg.Audit.S3 == nil {
		return nil, errors.New("the config sets no audit.s3")
	}
	awsCfg, err := (&awsLoader{given: opt.AWS}).load(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS config: %w", err)
	}
	return newS3Client(awsCfg, cfg.Audit.S3), nil
}

// Providers builds the providers cfg configures, as New does, with the
// SDK's default chain unless opt.AWS is set; nothing is audited or
// counted. check-config uses it to prove that serve could build them.
func Providers(ctx context.Context, cfg *config.Config, opt Options) ([]upstream.Provider, error) {
	return newProviders(ctx, cfg, cmp.Or(opt.Logger, zap.NewNop()), opt.Audit, &awsLoader{given: opt.AWS}, nil, true, nil, nil)
}

// AWSProviders is Providers without the static one, which reads key
// files: the providers ssh-config lists and check-config
// --no-file-checks builds.
func AWSProviders(ctx context.Context, cfg *config.Config, opt Options) ([]upstream.Provider, error) {
	return newProviders(ctx, cfg, cmp.Or(opt.Logger, zap.NewNop()), opt.Audit, &awsLoader{given: opt.AWS}, nil, false, nil, nil)
}

// newProviders builds the providers cfg configures, through the
// constructors the provider kinds register (package upstream/build), in
// the registry's order: the order the resolver asks them. The SDK config
// is loaded only if an AWS kind asks for it. al and m may be nil; without
// withFiles, kinds that read key files (static) are left out. st is the
// fleet store, made here from cfg if nil; fh, if set, is told of its
// host-key calls that fail.
func newProviders(ctx context.Context, cfg *config.Config, log *zap.Logger, al *audit.Logger, loader *awsLoader, m *metrics.Metrics, withFiles bool, st *fleet.Store, fh *fleetHealth) ([]upstream.Provider, error) {
	env := build.Env{Config: cfg, AWS: loader.load, Logger: log, Audit: al, Metrics: m, Files: withFiles}
	if cfg.Fleet != nil {
		if st == nil {
			var err error
			if st, err = newFleetStore(ctx, cfg, loader); err != nil {
				return nil, err
			}
		}
		env.Fleet = st
		if fh != nil {
			env.Fleet = reportingHostKeys{HostKeys: st, failed: fh.failed}
		}
	}
	return build.Providers(ctx, env)
}

// newFleetStore returns the fleet store of fleet.dynamodb_table, with a
// DynamoDB client from the SDK config (AWS_ENDPOINT_URL_DYNAMODB points it
// elsewhere, as for dynalite in tests).
func newFleetStore(ctx context.Context, cfg *config.Config, loader *awsLoader) (*fleet.Store, error) {
	awsCfg, err := loader.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	replica := cfg.Fleet.Replica
	if replica == "" {
		if replica, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("fleet.replica: no host name to default to: %w", err)
		}
	}
	return &fleet.Store{Client: dynamodb.NewFromConfig(awsCfg), Table: cfg.Fleet.DynamoDBTable, Replica: replica}, nil
}

// FleetStore returns the fleet store cfg configures, for `bastion fleet
// init`.
func FleetStore(ctx context.Context, cfg *config.Config, opt Options) (*fleet.Store, error) {
	if cfg.Fleet == nil {
		return nil, errors.New("the config has no fleet section (fleet.dynamodb_table)")
	}
	return newFleetStore(ctx, cfg, &awsLoader{given: opt.AWS})
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
	client := newS3Client(awsCfg, sc)
	u := &recording.Uploader{
		Client:        client,
		FlushInterval: sc.FlushInterval.D(),
		Bucket:        sc.Bucket,
		Prefix:        sc.Prefix,
		Dir:           cfg.Audit.Recordings,
		KeepLocal:     sc.KeepLocal,
		Logger:        log.Named("s3"),
		AfterUpload: func(path string, err error) {
			m.Upload(err)
			if err == nil {
				al.Emit(audit.Event{Type: audit.TypeRecordingUploaded, Recording: sc.Prefix + filepath.Base(path)})
			}
		},
	}
	return u, nil
}
