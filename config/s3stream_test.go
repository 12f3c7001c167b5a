package config

import (
	"strings"
	"testing"
)

// TestS3FlushIntervalUnit checks audit.s3.flush_interval: 30s by default,
// and at least 1s, with an error naming the file and line.
func TestS3FlushIntervalUnit(t *testing.T) {
	const base = "host_key: /k/host\nhost_ca_key: /k/ca\nusers: [{name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByJ4Ir0VYQnZNuz9Y8IxP0+DXNPTFOpt0ZFepP1JDen a\"], groups: [g]}]\npolicies: []\naudit:\n  recordings: rec\n  s3:\n    bucket: b\n"
	cfg, err := ParseWith([]byte(base), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Audit.S3.FlushInterval.D(); got != DefaultS3FlushInterval {
		t.Errorf("got flush_interval %s, want the default %s", got, DefaultS3FlushInterval)
	}
	cfg, err = ParseWith([]byte(base+"    flush_interval: 2s\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil || cfg.Audit.S3.FlushInterval.D().String() != "2s" {
		t.Errorf("got %v, %v; want 2s", cfg, err)
	}
	_, err = ParseWith([]byte(base+"    flush_interval: 100ms\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if want := "config.yaml:9: audit.s3.flush_interval: 100ms is too short"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}
