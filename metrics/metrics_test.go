package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.ConnectionOpened()()
	m.LinkOpened()()
	m.UnauthenticatedShed()
	m.Channel("session")
	m.AuthFailure("unknown_key")
	m.PolicyDenial("shell")
	m.LimitHit("idle_timeout")
	m.AWSCall("Lightsail", "GetInstance", time.Millisecond, nil, "")
	m.UpstreamConnect("static", time.Millisecond, nil)
	m.BytesUp(1)
	m.BytesDown(1)
	m.Reload(nil)
	m.Upload(nil)
	if m.Registry() != nil {
		t.Error("nil Metrics: got a registry, want nil")
	}
}

func TestSeries(t *testing.T) {
	m := New()
	closed := m.ConnectionOpened()
	linkClosed := m.LinkOpened()
	m.UnauthenticatedShed()
	m.AuthFailure("revoked")
	m.AWSCall("Lightsail", "GetInstanceAccessDetails", 20*time.Millisecond, errors.New("x"), "AccessDeniedException")
	m.AWSCall("Lightsail", "GetInstanceAccessDetails", 20*time.Millisecond, errors.New("x"), "")
	m.BytesUp(10)
	m.BytesUp(5)
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"connections_total", testutil.ToFloat64(m.connections), 1},
		{"connections_active open", testutil.ToFloat64(m.connectionsActive), 1},
		{"links_total", testutil.ToFloat64(m.links), 1},
		{"links_active", testutil.ToFloat64(m.linksActive), 1},
		{"sessions_total, the deprecated links_total", testutil.ToFloat64(m.sessions), 1},
		{"sessions_active, the deprecated links_active", testutil.ToFloat64(m.sessionsActive), 1},
		{"unauthenticated shed", testutil.ToFloat64(m.unauthShed), 1},
		{"auth failures revoked", testutil.ToFloat64(m.authFailures.WithLabelValues("revoked")), 1},
		{"aws errors by code", testutil.ToFloat64(m.awsErrors.WithLabelValues("Lightsail", "GetInstanceAccessDetails", "AccessDeniedException")), 1},
		{"aws errors without code", testutil.ToFloat64(m.awsErrors.WithLabelValues("Lightsail", "GetInstanceAccessDetails", "unknown")), 1},
		{"bytes up", testutil.ToFloat64(m.bytesUp), 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	closed()
	if got := testutil.ToFloat64(m.connectionsActive); got != 0 {
		t.Errorf("connections_active after close: got %v, want 0", got)
	}
	linkClosed()
	if got, old := testutil.ToFloat64(m.linksActive), testutil.ToFloat64(m.sessionsActive); got != 0 || old != 0 {
		t.Errorf("links_active and sessions_active after the link ended: got %v and %v, want 0 and 0", got, old)
	}
}

func TestHandler(t *testing.T) {
	m := New()
	var notReady error
	srv := httptest.NewServer(m.Handler(func() ([]string, error) { return []string{"ec2: ok"}, notReady }))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	m.ConnectionOpened()
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "bastion_connections_total 1") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: got %d with %d bytes, want 200 with bastion and Go series", code, len(body))
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: got %d, want 200", code)
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\nec2: ok\n" {
		t.Errorf("/readyz ready: got %d %q, want 200 and the component lines", code, body)
	}
	notReady = errors.New("draining")
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz draining: got %d %q, want 503 with the reason", code, body)
	}
}
