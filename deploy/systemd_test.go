package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const unitFile = "systemd/bastion.service"

// unitEntry is one key=value line of a unit file.
type unitEntry struct {
	key, value string
	line       int
}

// unit is a parsed systemd unit file: entries by section, in file order
// (a key may repeat).
type unit map[string][]unitEntry

// parseUnit parses the INI syntax of systemd.syntax(7): [Section] headers,
// Key=Value lines, comments starting with # or ;, and lines continued with
// a trailing backslash.
func parseUnit(data []byte) (unit, error) {
	u := make(unit)
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cont *unitEntry
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont != nil {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
				continue
			}
			more, again := strings.CutSuffix(line, `\`)
			cont.value += " " + strings.TrimSpace(more)
			if !again {
				u[section] = append(u[section], *cont)
				cont = nil
			}
			continue
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("line %d: %q is not Key=Value in a section", n, line)
			}
			e := unitEntry{key: strings.TrimSpace(k), value: strings.TrimSpace(v), line: n}
			if v, again := strings.CutSuffix(e.value, `\`); again {
				e.value = strings.TrimSpace(v)
				cont = &e
				continue
			}
			u[section] = append(u[section], e)
		}
	}
	if cont != nil {
		return nil, fmt.Errorf("line %d: continued past the end", cont.line)
	}
	return u, sc.Err()
}

// values returns every value of key in section, in order.
func (u unit) values(section, key string) []string {
	var vs []string
	for _, e := range u[section] {
		if e.key == key {
			vs = append(vs, e.value)
		}
	}
	return vs
}

// get returns the last value of key in section (the one systemd uses for a
// single-valued key).
func (u unit) get(section, key string) (string, bool) {
	vs := u.values(section, key)
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// list returns a list-valued key's items, as systemd merges its lines: an
// empty assignment resets the list.
func (u unit) list(section, key string) []string {
	var items []string
	for _, v := range u.values(section, key) {
		if v == "" {
			items = nil
			continue
		}
		items = append(items, strings.Fields(v)...)
	}
	return items
}

// parseTimespan parses a systemd time span (systemd.time(7)) such as "45",
// "45s", "1min 30s".
func parseTimespan(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	r := strings.NewReplacer("minutes", "m", "minute", "m", "min", "m", "seconds", "s", "second", "s", "sec", "s", "msec", "ms", "hours", "h", "hour", "h", "hr", "h", " ", "")
	return time.ParseDuration(r.Replace(s))
}

// exampleConfig reads the repository's config.yaml.example, the file a
// systemd install starts from.
func exampleConfig(t *testing.T) *bastionConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "config.yaml.example"))
	if err != nil {
		t.Fatal(err)
	}
	var c bastionConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("config.yaml.example: %v", err)
	}
	return &c
}

func TestUnitParse(t *testing.T) {
	u, err := parseUnit([]byte("# c\n[Service]\nA=1\n; c\nA=\nB = x \\\n  y\nC=\n[Install]\nW=m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.values("Service", "A"); !slices.Equal(got, []string{"1", ""}) {
		t.Errorf("A = %q, want [1 \"\"]", got)
	}
	if got, _ := u.get("Service", "B"); got != "x y" {
		t.Errorf("B = %q, want %q", got, "x y")
	}
	if got := u.list("Service", "A"); got != nil {
		t.Errorf("list A = %q, want empty after the reset", got)
	}
	if _, err := parseUnit([]byte("A=1\n")); err == nil {
		t.Errorf("a key outside a section parsed")
	}
	for in, want := range map[string]time.Duration{"45": 45 * time.Second, "45s": 45 * time.Second, "1min 30s": 90 * time.Second, "2min": 2 * time.Minute} {
		if got, err := parseTimespan(in); err != nil || got != want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(data)
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	const svc = "Service"
	want := func(key, value string) {
		t.Helper()
		if got, ok := u.get(svc, key); got != value {
			t.Errorf("%s=%q (set: %v), want %q", key, got, ok, value)
		}
	}

	t.Run("process", func(t *testing.T) {
		// bastion does not call sd_notify.
		want("Type", "simple")
		want("KillSignal", "SIGTERM")
		want("Restart", "on-failure")
		user, _ := u.get(svc, "User")
		dyn, _ := u.get(svc, "DynamicUser")
		if (user == "" || user == "root" || user == "0") && dyn != "yes" {
			t.Errorf("User=%q DynamicUser=%q: want a dedicated user or DynamicUser=yes", user, dyn)
		}
		if n, err := strconv.Atoi(func() string { v, _ := u.get(svc, "LimitNOFILE"); return v }()); err != nil || n < 16384 {
			t.Errorf("LimitNOFILE: want at least 16384 (two descriptors per session)")
		}
	})

	t.Run("exec lines", func(t *testing.T) {
		start, _ := u.get(svc, "ExecStart")
		args := strings.Fields(start)
		if len(args) != 4 || path.Base(args[0]) != "bastion" || args[1] != "serve" || args[2] != "--config" {
			t.Fatalf("ExecStart=%q, want BINARY serve --config FILE", start)
		}
		bin, cfgPath := args[0], args[3]
		check := bin + " check-config --config " + cfgPath
		if pre := u.values(svc, "ExecStartPre"); !slices.Contains(pre, check) {
			t.Errorf("ExecStartPre=%q, want %q", pre, check)
		}
		reload := u.values(svc, "ExecReload")
		if len(reload) == 0 || reload[len(reload)-1] != "/bin/kill -HUP $MAINPID" {
			t.Errorf("ExecReload=%q, want it to end with /bin/kill -HUP $MAINPID", reload)
		}
		for _, e := range u[svc] {
			// "+" and "!" run a command with full privileges, outside the
			// sandbox below.
			cmd := strings.TrimLeft(e.value, "@-:+!|")
			if strings.HasPrefix(e.key, "Exec") && strings.ContainsAny(e.value[:len(e.value)-len(cmd)], "+!") {
				t.Errorf("line %d: %s=%s escapes the sandbox", e.line, e.key, e.value)
			}
		}
	})

	t.Run("stop timeout covers the drain", func(t *testing.T) {
		drain := exampleConfig(t).drain(t)
		v, _ := u.get(svc, "TimeoutStopSec")
		got, err := parseTimespan(v)
		if err != nil || got < drain+exitMargin {
			t.Errorf("TimeoutStopSec=%q, want at least limits.drain_timeout %v + %v", v, drain, exitMargin)
		}
	})

	t.Run("hardening", func(t *testing.T) {
		for k, v := range map[string]string{
			"NoNewPrivileges":         "yes",
			"ProtectSystem":           "strict",
			"ProtectHome":             "yes",
			"PrivateTmp":              "yes",
			"PrivateDevices":          "yes",
			"ProtectKernelTunables":   "yes",
			"ProtectKernelModules":    "yes",
			"ProtectKernelLogs":       "yes",
			"ProtectControlGroups":    "yes",
			"RestrictNamespaces":      "yes",
			"RestrictSUIDSGID":        "yes",
			"LockPersonality":         "yes",
			"SystemCallArchitectures": "native",
		} {
			want(k, v)
		}
		if got := u.list(svc, "CapabilityBoundingSet"); len(u.values(svc, "CapabilityBoundingSet")) == 0 || len(got) > 0 {
			t.Errorf("CapabilityBoundingSet=%q, want it set empty", got)
		}
		if got := u.list(svc, "AmbientCapabilities"); len(got) > 0 {
			t.Errorf("AmbientCapabilities=%q, want none (listen on :2222)", got)
		}
		fams := u.list(svc, "RestrictAddressFamilies")
		slices.Sort(fams)
		if !slices.Equal(fams, []string{"AF_INET", "AF_INET6", "AF_UNIX"}) {
			t.Errorf("RestrictAddressFamilies=%q, want AF_INET AF_INET6 AF_UNIX", fams)
		}
		filters := u.list(svc, "SystemCallFilter")
		if len(filters) == 0 || filters[0] != "@system-service" {
			t.Errorf("SystemCallFilter=%q, want an allow-list starting with @system-service", filters)
		}
	})

	t.Run("writable paths", func(t *testing.T) {
		// ProtectSystem=strict makes everything read-only but these.
		var rw []string
		for _, p := range u.list(svc, "ReadWritePaths") {
			rw = append(rw, strings.TrimPrefix(p, "-"))
		}
		for _, dir := range u.list(svc, "StateDirectory") {
			rw = append(rw, "/var/lib/"+dir)
		}
		for _, dir := range u.list(svc, "LogsDirectory") {
			rw = append(rw, "/var/log/"+dir)
		}
		c := exampleConfig(t)
		paths := map[string]string{"host_key": c.HostKey, "host_ca_key": c.HostCAKey, "audit.recordings": c.Audit.Recordings}
		if c.Audit.Log != "stdout" {
			paths["audit.log"] = c.Audit.Log
		}
		if c.Providers.EC2 != nil {
			paths["providers.ec2.known_hosts"] = c.Providers.EC2.KnownHosts
		}
		if c.SSO != nil {
			paths["sso.bindings_file"] = c.SSO.BindingsFile
		}
		for key, p := range paths {
			if p == "" || !path.IsAbs(p) {
				continue
			}
			if !slices.ContainsFunc(rw, func(dir string) bool { return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") }) {
				t.Errorf("config.yaml.example %s %s is not under ReadWritePaths %q", key, p, rw)
			}
		}
	})

	t.Run("install", func(t *testing.T) {
		if got := u.values("Install", "WantedBy"); !slices.Contains(got, "multi-user.target") {
			t.Errorf("WantedBy=%q, want multi-user.target", got)
		}
		if got := u.values("Unit", "After"); !slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, "network-online.target") }) {
			t.Errorf("After=%q, want network-online.target", got)
		}
	})
}
