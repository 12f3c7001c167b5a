package config

import (
	"regexp"
	"time"
)

// CloudWatch sends every audit event, as the exact line written to
// audit.log (chain fields included), to a CloudWatch Logs stream, in
// batches, from a bounded buffer. Delivery failure follows
// audit.on_failure.
type CloudWatch struct {
	// LogGroup is the log group, which must exist (its retention and KMS
	// key are the operator's choice).
	LogGroup string `yaml:"log_group"`
	// LogStream is the stream, created if missing; environment variables
	// are expanded (${HOSTNAME}). Default: the host name, so that each
	// replica writes a chain of its own.
	LogStream string `yaml:"log_stream"`
	// Region is the log group's region; empty means the SDK's default.
	Region string `yaml:"region"`
	// FlushInterval is the longest an event waits before it is sent.
	// Default 5s.
	FlushInterval Duration `yaml:"flush_interval"`
	// MaxBufferEvents and MaxBuffer bound the events waiting to be sent;
	// when either is reached the oldest are dropped (and counted). Defaults
	// 10000 events and 16MiB.
	MaxBufferEvents int  `yaml:"max_buffer_events"`
	MaxBuffer       Size `yaml:"max_buffer"`
}

// CloudWatch defaults.
const (
	DefaultCloudWatchFlushInterval   = 5 * time.Second
	DefaultCloudWatchMaxBufferEvents = 10000
	DefaultCloudWatchMaxBuffer       = 16 << 20
)

var (
	logGroupRe  = regexp.MustCompile(`^[.\-_/#A-Za-z0-9]{1,512}$`)
	logStreamRe = regexp.MustCompile(`^[^:*]{1,512}$`)
)

// cloudWatchDefaults fills in the defaults of audit.cloudwatch; set holds
// the keys the file sets.
func cloudWatchDefaults(cw *CloudWatch, set map[string]bool) {
	if cw == nil {
		return
	}
	if !set["audit.cloudwatch.flush_interval"] {
		cw.FlushInterval = Duration(DefaultCloudWatchFlushInterval)
	}
	if !set["audit.cloudwatch.max_buffer_events"] {
		cw.MaxBufferEvents = DefaultCloudWatchMaxBufferEvents
	}
	if !set["audit.cloudwatch.max_buffer"] {
		cw.MaxBuffer = DefaultCloudWatchMaxBuffer
	}
}

// checkCloudWatch checks audit.cloudwatch.
func (c *checker) checkCloudWatch(cw *CloudWatch) {
	if cw == nil {
		return
	}
	switch {
	case cw.LogGroup == "":
		c.errorf("audit.cloudwatch.log_group", "required (the log group must exist)")
	case !logGroupRe.MatchString(cw.LogGroup):
		c.errorf("audit.cloudwatch.log_group", "%q is not a log group name: 1 to 512 of letters, digits and . - _ / #", cw.LogGroup)
	}
	if cw.LogStream != "" && !logStreamRe.MatchString(cw.LogStream) {
		c.errorf("audit.cloudwatch.log_stream", "%q is not a log stream name: 1 to 512 characters, without : or *", cw.LogStream)
	}
	if cw.Region != "" && !regionRe.MatchString(cw.Region) {
		c.errorf("audit.cloudwatch.region", "%q is not an AWS region name, such as us-east-1", cw.Region)
	}
	if d := cw.FlushInterval.D(); d < 100*time.Millisecond || d > time.Hour {
		c.errorf("audit.cloudwatch.flush_interval", "%s is out of range; use 100ms to 1h", cw.FlushInterval)
	}
	if n := cw.MaxBufferEvents; n < 1 {
		c.errorf("audit.cloudwatch.max_buffer_events", "%d is too small; use at least 1", n)
	}
	if m := cw.MaxBuffer; m < 256<<10 {
		c.errorf("audit.cloudwatch.max_buffer", "%s is too small for one event; use at least 256KiB", m)
	}
}
