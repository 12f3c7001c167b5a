// Package metrics holds the bastion's Prometheus metrics and serves them,
// with health and readiness, on the admin listener.
//
// Every method is safe on a nil *Metrics, which records nothing: the proxy
// and the providers call them unconditionally.
package metrics

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is the bastion's set of Prometheus series, on a registry of its
// own (with the Go runtime and process collectors).
type Metrics struct {
	reg *prometheus.Registry

	connections       prometheus.Counter
	connectionsActive prometheus.Gauge
	links             prometheus.Counter
	linksActive       prometheus.Gauge
	// sessions and sessionsActive are the deprecated names of links and
	// linksActive, kept for dashboards.
	sessions          prometheus.Counter
	sessionsActive    prometheus.Gauge
	unauthShed        prometheus.Counter
	channels          *prometheus.CounterVec
	authFailures      *prometheus.CounterVec
	ssoLogins         *prometheus.CounterVec
	policyDenials     *prometheus.CounterVec
	limitHits         *prometheus.CounterVec
	awsCalls          *prometheus.HistogramVec
	awsErrors         *prometheus.CounterVec
	upstreamDial      *prometheus.HistogramVec
	bytesUp           prometheus.Counter
	bytesDown         prometheus.Counter
	reloads           *prometheus.CounterVec
	uploads           *prometheus.CounterVec
	handshakeFailures *prometheus.CounterVec
	auditFailures     *prometheus.CounterVec
	// fleetFailures is registered only with a fleet store (fleet.go).
	fleetFailures *prometheus.CounterVec
	// cloudWatch is registered with audit.cloudwatch (cloudwatch.go).
	cloudWatch cloudWatch
}

// Reasons a handshake failed, the label values of
// bastion_handshake_failures_total. The set is fixed: HandshakeFailure
// counts any other value as HandshakeOther, so that no peer can add series.
const (
	HandshakeNoCommonKex     = "no_common_kex"
	HandshakeNoCommonCipher  = "no_common_cipher"
	HandshakeNoCommonMAC     = "no_common_mac"
	HandshakeNoCommonHostKey = "no_common_host_key"
	HandshakeTimeout         = "timeout"
	HandshakeClosed          = "closed"
	HandshakeAuthFailed      = "auth_failed"
	HandshakeProtocolError   = "protocol_error"
	HandshakeOther           = "other"
)

var handshakeReasons = []string{
	HandshakeNoCommonKex, HandshakeNoCommonCipher, HandshakeNoCommonMAC, HandshakeNoCommonHostKey,
	HandshakeTimeout, HandshakeClosed, HandshakeAuthFailed, HandshakeProtocolError, HandshakeOther,
}

// New returns a Metrics with every series registered.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{m.reg}
	m.connections = f.counter("bastion_connections_total", "TCP connections accepted.")
	m.connectionsActive = f.gauge("bastion_connections_active", "Connections open now, authenticated or not.")
	m.links = f.counter("bastion_links_total", "Links spliced: upstream connections spliced to a person (one per ProxyJump channel, direct-mode connection or menu pick).")
	m.linksActive = f.gauge("bastion_links_active", "Links spliced now.")
	m.sessions = f.counter("bastion_sessions_total", "Deprecated: the same as bastion_links_total, which replaces it (it counts links, not SSH sessions).")
	m.sessionsActive = f.gauge("bastion_sessions_active", "Deprecated: the same as bastion_links_active, which replaces it.")
	m.unauthShed = f.counter("bastion_unauthenticated_shed_total",
		"Connections in their handshake and ProxyJump channels in their inner login closed to make room for a newcomer from another address (limits.max_unauthenticated).")
	m.channels = f.counterVec("bastion_channels_total", "Channels spliced, by type (session, direct-tcpip, …).", "type")
	m.authFailures = f.counterVec("bastion_auth_failures_total", "Failed authentications, by reason.", "reason")
	m.ssoLogins = f.counterVec("bastion_sso_logins_total", "SSO logins, by result: ok or the refusal's label (denied, expired, invalid_token, unreachable, domain, no_username, merge_refused, limit).", "result")
	m.policyDenials = f.counterVec("bastion_policy_denials_total", "Policy refusals, by capability (login for a target or OS user).", "capability")
	m.limitHits = f.counterVec("bastion_limit_hits_total", "Connections, links or channels refused or stopped by a limit, by limit.", "limit")
	m.awsCalls = f.histogramVec("bastion_aws_call_duration_seconds", "AWS API call latency, retries included, by service, operation and result (ok or error).",
		[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}, "service", "operation", "result")
	m.awsErrors = f.counterVec("bastion_aws_call_errors_total", "Failed AWS API calls, by service, operation and error code.", "service", "operation", "code")
	m.upstreamDial = f.histogramVec("bastion_upstream_connect_duration_seconds", "Upstream TCP connect plus SSH handshake, by provider and result.",
		[]float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, "provider", "result")
	bytes := f.counterVec("bastion_bytes_spliced_total", "Channel payload bytes relayed, by direction (up: person to instance).", "direction")
	m.bytesUp = bytes.WithLabelValues("up")
	m.bytesDown = bytes.WithLabelValues("down")
	m.reloads = f.counterVec("bastion_config_reloads_total", "Configuration reloads, by result (ok or rejected).", "result")
	m.uploads = f.counterVec("bastion_recording_uploads_total", "Recording uploads to S3, by result (ok or error).", "result")
	m.handshakeFailures = f.counterVec("bastion_handshake_failures_total", "Failed SSH handshakes of people's connections (and inner ProxyJump handshakes with nothing in common), by reason.", "reason")
	for _, r := range handshakeReasons {
		m.handshakeFailures.WithLabelValues(r)
	}
	m.auditFailures = f.counterVec("bastion_audit_write_failures_total", "Audit events or recordings that could not be written, by what (audit_log or recording).", "what")
	return m
}

// Registry returns the registry the series live in.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// ConnectionOpened counts an accepted connection; call the returned func
// when it closes.
func (m *Metrics) ConnectionOpened() (closed func()) {
	if m == nil {
		return func() {}
	}
	m.connections.Inc()
	m.connectionsActive.Inc()
	return m.connectionsActive.Dec
}

// LinkOpened counts a spliced link (in the deprecated session series
// too); call the returned func when it ends.
func (m *Metrics) LinkOpened() (closed func()) {
	if m == nil {
		return func() {}
	}
	m.links.Inc()
	m.linksActive.Inc()
	m.sessions.Inc()
	m.sessionsActive.Inc()
	return func() {
		m.linksActive.Dec()
		m.sessionsActive.Dec()
	}
}

// UnauthenticatedShed counts a connection or jump channel shed from the
// unauthenticated slots for a newcomer.
func (m *Metrics) UnauthenticatedShed() {
	if m != nil {
		m.unauthShed.Inc()
	}
}

// Channel counts a spliced channel of type typ.
func (m *Metrics) Channel(typ string) {
	if m != nil {
		m.channels.WithLabelValues(typ).Inc()
	}
}

// AuthFailure counts a failed authentication.
func (m *Metrics) AuthFailure(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

// SSOLogin counts an SSO login by result ("ok" or a refusal's label).
func (m *Metrics) SSOLogin(result string) {
	if m != nil {
		m.ssoLogins.WithLabelValues(result).Inc()
	}
}

// PolicyDenial counts a policy refusal.
func (m *Metrics) PolicyDenial(capability string) {
	if m != nil {
		m.policyDenials.WithLabelValues(capability).Inc()
	}
}

// AuditWriteFailure counts an audit event (what "audit_log") or a
// recording ("recording") that could not be written.
func (m *Metrics) AuditWriteFailure(what string) {
	if m != nil {
		m.auditFailures.WithLabelValues(what).Inc()
	}
}

// LimitHit counts a connection, link or channel refused or stopped by limit.
func (m *Metrics) LimitHit(limit string) {
	if m != nil {
		m.limitHits.WithLabelValues(limit).Inc()
	}
}

// HandshakeFailure counts a failed SSH handshake; reason is one of the
// Handshake* constants (anything else counts as HandshakeOther).
func (m *Metrics) HandshakeFailure(reason string) {
	if m == nil {
		return
	}
	if !slices.Contains(handshakeReasons, reason) {
		reason = HandshakeOther
	}
	m.handshakeFailures.WithLabelValues(reason).Inc()
}

// AWSCall records one AWS API call; code is the AWS error code ("" on
// success, or a short reason such as "timeout").
func (m *Metrics) AWSCall(service, operation string, d time.Duration, err error, code string) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
		if code == "" {
			code = "unknown"
		}
		m.awsErrors.WithLabelValues(service, operation, code).Inc()
	}
	m.awsCalls.WithLabelValues(service, operation, result).Observe(d.Seconds())
}

// UpstreamConnect records the time to connect to an instance.
func (m *Metrics) UpstreamConnect(provider string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.upstreamDial.WithLabelValues(provider, result).Observe(d.Seconds())
}

// BytesUp counts n bytes relayed from the person to the instance.
func (m *Metrics) BytesUp(n int) {
	if m != nil {
		m.bytesUp.Add(float64(n))
	}
}

// BytesDown counts n bytes relayed from the instance to the person.
func (m *Metrics) BytesDown(n int) {
	if m != nil {
		m.bytesDown.Add(float64(n))
	}
}

// Reload counts a configuration reload.
func (m *Metrics) Reload(err error) {
	if m != nil {
		m.reloads.WithLabelValues(result(err)).Inc()
	}
}

// Upload counts a recording upload attempt.
func (m *Metrics) Upload(err error) {
	if m != nil {
		m.uploads.WithLabelValues(result(err)).Inc()
	}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// factory creates and registers series.
type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
