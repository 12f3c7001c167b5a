package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCmd runs the bastion command line in-process.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	code, out, _ := runCmd(t, "--help")
	if code != 0 || !strings.Contains(out, "commands:") || !strings.Contains(out, "examples:") {
		t.Errorf("bastion --help: got %d %q, want 0, the commands and examples", code, out)
	}
	for name := range helps {
		t.Run(name, func(t *testing.T) {
			for _, args := range [][]string{{name, "--help"}, {"help", name}} {
				code, out, errOut := runCmd(t, args...)
				if code != 0 || errOut != "" {
					t.Errorf("%v: got exit %d stderr %q, want 0 and nothing", args, code, errOut)
				}
				for _, want := range []string{"usage: bastion " + name, "example:\n  "} {
					if !strings.Contains(out, want) {
						t.Errorf("%v: help lacks %q:\n%s", args, want, out)
					}
				}
				if name != "version" && !strings.Contains(out, "flags:\n  -") {
					t.Errorf("%v: help lists no flags:\n%s", args, out)
				}
			}
		})
	}
	_, out, _ = runCmd(t, "serve", "--help")
	for _, sig := range []string{"SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1"} {
		if !strings.Contains(out, sig) {
			t.Errorf("serve --help does not name %s", sig)
		}
	}
	code, out, errOut := runCmd(t, "check-config", "--bogus")
	if code != 2 || out != "" || !strings.Contains(errOut, "see bastion check-config --help") {
		t.Errorf("a bad flag: got %d stdout %q stderr %q, want 2, one line on stderr", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	buildVersion, buildRevision = "v1.2.3", "0123abc"
	t.Cleanup(func() { buildVersion, buildRevision = "", "" })
	code, out, _ := runCmd(t, "version")
	if code != 0 || !strings.HasPrefix(out, "bastion v1.2.3 revision 0123abc go") {
		t.Errorf("version: got %d %q, want the -X values", code, out)
	}
}

// writeConfig writes a config file in a temporary folder.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	head := "listen: 127.0.0.1:0\nhost_ca_key: host_ca\naudit: {log: audit.jsonl}\nusers:\n  - {name: a, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILfj/DEnIlmhKCh3rQhfbVOc542yzKRurjYk4vzv2DpH\"], groups: [dev]}\n"
	if err := os.WriteFile(p, []byte(head+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckConfigAsServe: what stops serve at start stops check-config,
// with the same line.
func TestCheckConfigAsServe(t *testing.T) {
	p := writeConfig(t, "host_key: \"ssm:/bastion/host key\"\npolicies: [{groups: [dev], targets: [\"*\"], os_users: [\"*\"]}]\n")
	const want = "white space in the parameter name"
	code, _, errOut := runCmd(t, "check-config", "--config", p)
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("check-config: got %d %q, want 1 and %q", code, errOut, want)
	}
	code, _, errOut = runCmd(t, "serve", "--config", p)
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("serve: got %d %q, want 1 and %q", code, errOut, want)
	}

	// A host key file that exists but is no key.
	p = writeConfig(t, "host_key: host_key\npolicies: [{groups: [dev], targets: [\"*\"], os_users: [\"*\"]}]\n")
	os.WriteFile(filepath.Join(filepath.Dir(p), "host_key"), []byte("not a key"), 0o600)
	if code, _, errOut := runCmd(t, "check-config", "--config", p); code != 1 || !strings.Contains(errOut, "host_key:") {
		t.Errorf("check-config with a broken host key file: got %d %q, want 1", code, errOut)
	}
}

func TestCheckConfigWarnings(t *testing.T) {
	p := writeConfig(t, "host_key: host_key\npolicies: [{groups: [devs], targets: [\"*\"], os_users: [\"*\"]}]\n")
	code, out, _ := runCmd(t, "check-config", "--config", p)
	if code != 0 || !strings.Contains(out, `warning: `) || !strings.Contains(out, `no user has group "devs"`) || !strings.Contains(out, `did you mean "dev"?`) {
		t.Errorf("check-config: got %d %q, want 0 and the warning", code, out)
	}
}

// TestCheckConfigExample: the shipped example passes with the documented
// flag; without it, the files it names (not shipped: one is a private key)
// are what fails.
func TestCheckConfigExample(t *testing.T) {
	const example = "../../config.yaml.example"
	if code, out, errOut := runCmd(t, "check-config", "--no-file-checks", "--config", example); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check-config --no-file-checks: got %d %q %q, want 0 and ok", code, out, errOut)
	}
	code, _, errOut := runCmd(t, "check-config", "--config", example)
	if code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("check-config: got %d %q, want 1 for the missing files", code, errOut)
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n")[1:] {
		if !strings.Contains(line, "does not exist") {
			t.Errorf("check-config on the example: %q is not about a missing file", line)
		}
	}
}
