package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// cloudWatch holds the series of the CloudWatch Logs audit sink
// (audit.cloudwatch), registered on first use.
type cloudWatch struct {
	once     sync.Once
	sent     prometheus.Counter
	dropped  prometheus.Counter
	failures prometheus.Counter
	buffered prometheus.Gauge
}

// cw registers the CloudWatch series once and returns them.
func (m *Metrics) cw() *cloudWatch {
	m.cloudWatch.once.Do(func() {
		f := factory{m.reg}
		m.cloudWatch.sent = f.counter("bastion_audit_cloudwatch_sent_total",
			"Audit events CloudWatch Logs accepted (audit.cloudwatch).")
		m.cloudWatch.dropped = f.counter("bastion_audit_cloudwatch_dropped_total",
			"Audit events that never reached CloudWatch Logs: the oldest ones dropped from a full buffer, or rejected by CloudWatch (too old or too new). They are still in the audit log file.")
		m.cloudWatch.failures = f.counter("bastion_audit_cloudwatch_failures_total",
			"Failed CloudWatch Logs calls (PutLogEvents, CreateLogStream), each retried with backoff.")
		m.cloudWatch.buffered = f.gauge("bastion_audit_cloudwatch_buffered_events",
			"Audit events waiting to be sent to CloudWatch Logs.")
	})
	return &m.cloudWatch
}

// CloudWatchSent counts n audit events CloudWatch Logs accepted.
func (m *Metrics) CloudWatchSent(n int) {
	if m != nil {
		m.cw().sent.Add(float64(n))
	}
}

// CloudWatchDropped counts n audit events that will not reach CloudWatch
// Logs.
func (m *Metrics) CloudWatchDropped(n int) {
	if m != nil {
		m.cw().dropped.Add(float64(n))
	}
}

// CloudWatchFailure counts a failed CloudWatch Logs call.
func (m *Metrics) CloudWatchFailure() {
	if m != nil {
		m.cw().failures.Inc()
	}
}

// CloudWatchBuffered sets how many audit events wait to be sent.
func (m *Metrics) CloudWatchBuffered(n int) {
	if m != nil {
		m.cw().buffered.Set(float64(n))
	}
}
