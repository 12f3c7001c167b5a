package config

import (
	"strings"
	"testing"
	"time"
)

// TestCloudWatchKeys checks audit.cloudwatch: defaults, and errors that
// name the key and its line.
func TestCloudWatchKeys(t *testing.T) {
	const base = "host_key: /k/host\nhost_ca_key: /k/ca\nusers: [{name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByJ4Ir0VYQnZNuz9Y8IxP0+DXNPTFOpt0ZFepP1JDen a\"], groups: [g]}]\npolicies: []\n"
	cfg, err := ParseWith([]byte(base+"audit:\n  cloudwatch: {log_group: /bastion/audit}\n"), "/etc/bastion/config.yaml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	cw := cfg.Audit.CloudWatch
	if cw.FlushInterval.D() != 5*time.Second || cw.MaxBufferEvents != 10000 || cw.MaxBuffer != 16<<20 || cw.LogStream != "" {
		t.Errorf("defaults: got %+v", *cw)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"no group", "audit:\n  cloudwatch:\n    log_stream: s\n", "config.yaml:6: audit.cloudwatch.log_group: required"},
		{"bad group", "audit:\n  cloudwatch:\n    log_group: \"a b\"\n", `config.yaml:7: audit.cloudwatch.log_group: "a b" is not a log group name`},
		{"bad stream", "audit:\n  cloudwatch:\n    log_group: g\n    log_stream: \"a:b\"\n", `config.yaml:8: audit.cloudwatch.log_stream: "a:b" is not a log stream name`},
		{"bad region", "audit:\n  cloudwatch:\n    log_group: g\n    region: mars\n", `config.yaml:8: audit.cloudwatch.region: "mars" is not an AWS region name`},
		{"short flush", "audit:\n  cloudwatch:\n    log_group: g\n    flush_interval: 1ms\n", "config.yaml:8: audit.cloudwatch.flush_interval: 1ms is out of range"},
		{"no buffer", "audit:\n  cloudwatch:\n    log_group: g\n    max_buffer_events: 0\n", "config.yaml:8: audit.cloudwatch.max_buffer_events: 0 is too small"},
		{"small buffer", "audit:\n  cloudwatch:\n    log_group: g\n    max_buffer: 1KiB\n", "config.yaml:8: audit.cloudwatch.max_buffer: 1KiB is too small"},
		{"unknown region", "audit:\n  cloudwatch:\n    log_group: g\n    region: us-east-9\n", `config.yaml:8: audit.cloudwatch.region: unknown AWS region "us-east-9"`},
		{"unknown key", "audit:\n  cloudwatch:\n    log_group: g\n    stream: s\n", "config.yaml:8: audit.cloudwatch.stream: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseWith([]byte(base+tc.yaml), "/etc/bastion/config.yaml", Options{SkipFiles: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
