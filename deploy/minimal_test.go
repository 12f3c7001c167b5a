package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"bastion/config"
)

// TestMinimalConfig keeps deploy/README's minimal production config valid
// without warnings, and the logrotate file pointed at its audit log.
func TestMinimalConfig(t *testing.T) {
	cfg, err := config.Load("systemd/config.yaml")
	if err != nil {
		t.Fatalf("systemd/config.yaml:\n%v", err)
	}
	for _, w := range cfg.Warnings {
		t.Errorf("systemd/config.yaml: warning %s", w)
	}
	data, err := os.ReadFile("systemd/bastion.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^(/\S+) \{`).FindSubmatch(data)
	if m == nil || string(m[1]) != cfg.Audit.Log {
		t.Errorf("bastion.logrotate rotates %q, want the config's audit.log %q", m, cfg.Audit.Log)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if body := regexp.MustCompile(`(?s)\n/var/log/bastion/audit.jsonl \{.*?\n\}\n`).Find(readme); body == nil || !strings.HasSuffix(string(data), string(body)) {
		t.Errorf("systemd/bastion.logrotate differs from the snippet under README.md's Audit log rotation")
	}
	if !regexp.MustCompile(`(?m)^\s+systemctl kill --signal=USR1 --kill-whom=main bastion\.service `).Match(data) {
		t.Errorf("bastion.logrotate does not tell the bastion to reopen the log (SIGUSR1)")
	}
}
