package assemble

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"go.uber.org/zap"

	"bastion/audit"
	"bastion/config"
	"bastion/metrics"
)

// newCloudWatch returns the CloudWatch Logs sink of audit.cloudwatch, not
// started, or nil without one. The client makes one attempt per call: the
// sink retries with its own backoff, each call under limits.aws_timeout.
// AWS_ENDPOINT_URL_CLOUDWATCH_LOGS points it elsewhere (the fake in tests).
func newCloudWatch(ctx context.Context, cfg *config.Config, log *zap.Logger, loader *awsLoader, m *metrics.Metrics) (*audit.CloudWatch, error) {
	cc := cfg.Audit.CloudWatch
	if cc == nil {
		return nil, nil
	}
	awsCfg, err := loader.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit.cloudwatch: %w", err)
	}
	client := cloudwatchlogs.NewFromConfig(awsCfg, func(o *cloudwatchlogs.Options) {
		if cc.Region != "" {
			o.Region = cc.Region
		}
		o.RetryMaxAttempts = 1
	})
	stream := os.ExpandEnv(cc.LogStream)
	if stream == "" {
		if stream, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("audit.cloudwatch.log_stream: no host name to default to: %w", err)
		}
	}
	return &audit.CloudWatch{
		Client:        client,
		LogGroup:      cc.LogGroup,
		LogStream:     stream,
		FailOpen:      cfg.Audit.OnFailure == config.OnFailureContinue,
		FlushInterval: cc.FlushInterval.D(),
		BufferEvents:  cc.MaxBufferEvents,
		BufferBytes:   int(cc.MaxBuffer),
		CallTimeout:   cfg.Limits.AWSTimeout.D(),
		Logger:        log.Named("cloudwatch"),
		Metrics:       m,
	}, nil
}

// closeCloudWatch flushes the sink for up to limits.drain_timeout.
func (b *Bastion) closeCloudWatch() {
	if b.CloudWatch == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Limits.DrainTimeout.D())
	defer cancel()
	if err := b.CloudWatch.Close(ctx); err != nil {
		b.log.Error("audit_cloudwatch_flush_failed", zap.Error(err))
		fmt.Fprintf(b.stderr, "bastion: %v\n", err)
		return
	}
	b.log.Info("audit_cloudwatch_flushed")
}

// cloudWatchLine is the readiness line of the CloudWatch sink ("" without
// one), with an error while it cannot deliver and the bastion fails closed
// (logins are refused then).
func (b *Bastion) cloudWatchLine() (string, error) {
	cw := b.CloudWatch
	if cw == nil {
		return "", nil
	}
	if err := cw.Err(); err != nil {
		return "audit.cloudwatch: " + err.Error(), audit.ErrCloudWatchDown
	}
	dropped, _ := cw.Dropped()
	return fmt.Sprintf("audit.cloudwatch: ok (%d buffered, %d dropped)", cw.Buffered(), dropped), nil
}
