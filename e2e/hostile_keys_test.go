package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keysRunTimeout bounds every bastion run of the hostile key tests: a
// refusal comes within a second or two; a run still going after this is a
// hang (or a bastion that started when it should not have).
const keysRunTimeout = 30 * time.Second

// keysRun is a finished (or killed) run of the bastion binary.
type keysRun struct {
	out      string
	code     int
	timedOut bool
}

// runBastionBounded runs the bastion binary with args for at most
// keysRunTimeout, killing it (by pid, through the context) when the time is
// up.
func runBastionBounded(t *testing.T, args ...string) keysRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), keysRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bastionBin, args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := keysRun{out: out.String(), timedOut: ctx.Err() != nil}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil && !r.timedOut {
		t.Fatalf("running bastion %v: %v", args, err)
	}
	return r
}

// keysWorld is a state folder with a config that names host_ed25519 and
// host_ca_ed25519 in it, and one user.
type keysWorld struct {
	dir, config string
}

func newKeysWorld(t *testing.T, extra string) keysWorld {
	t.Helper()
	dir := t.TempDir()
	person := newKey(t, t.TempDir(), "person")
	w := keysWorld{dir: dir, config: filepath.Join(dir, "config.yaml")}
	writeFile(t, w.config, fmt.Sprintf(`listen: 127.0.0.1:0
host_key: host_ed25519
host_ca_key: host_ca_ed25519
audit: {log: audit.jsonl}
users:
  - {name: alice, keys: [%q]}
%s`, person.AuthorizedKey(), extra), 0o600)
	return w
}

func (w keysWorld) path(name string) string { return filepath.Join(w.dir, name) }

// wantRefused runs serve and check-config and asserts that both exit
// non-zero, in time, with every one of wants in their output.
func (w keysWorld) wantRefused(t *testing.T, wants ...string) {
	t.Helper()
	for _, sub := range []string{"serve", "check-config"} {
		r := runBastionBounded(t, sub, "--config", w.config)
		switch {
		case r.timedOut:
			t.Errorf("bastion %s: still running after %s (want a refusal at once); output:\n%s", sub, keysRunTimeout, clipOutput(r.out))
			continue
		case r.code == 0:
			t.Errorf("bastion %s: exit 0, want a refusal; output:\n%s", sub, clipOutput(r.out))
			continue
		}
		for _, want := range wants {
			if !strings.Contains(r.out, want) {
				t.Errorf("bastion %s: output lacks %q:\n%s", sub, want, clipOutput(r.out))
			}
		}
	}
}

func clipOutput(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "…"
	}
	return s
}

// TestHostileKeysDanglingSymlink: a host_key (or host_ca_key) that is a
// symlink to a missing file is refused at once, with the path, instead of
// start-up looping on "not there, create, already exists".
func TestHostileKeysDanglingSymlink(t *testing.T) {
	for _, key := range []string{"host_ed25519", "host_ca_ed25519"} {
		t.Run(key, func(t *testing.T) {
			w := newKeysWorld(t, "")
			if err := os.Symlink(w.path("missing/nowhere"), w.path(key)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			w.wantRefused(t, w.path(key), "symlink")
			t.Logf("refused in %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestHostileKeysCAIsHostKey: the host CA must be another key than the host
// key, whatever path names it: a symlink, a hard link and a copy of the host
// key are all refused.
func TestHostileKeysCAIsHostKey(t *testing.T) {
	cases := []struct {
		name string
		make func(from, to string) error
	}{
		{"symlink", os.Symlink},
		{"hard_link", os.Link},
		{"copy", func(from, to string) error {
			data, err := os.ReadFile(from)
			if err != nil {
				return err
			}
			return os.WriteFile(to, data, 0o600)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newKeysWorld(t, "")
			newKey(t, w.dir, "host_ed25519")
			if err := tc.make(w.path("host_ed25519"), w.path("host_ca_ed25519")); err != nil {
				t.Fatal(err)
			}
			w.wantRefused(t, "host_ca_key", "same key as host_key")
		})
	}
}

// TestHostileKeysLooseMode: private key files readable or writable by
// group or others are refused, as sshd refuses them, by serve and by
// check-config with the reason and the path.
func TestHostileKeysLooseMode(t *testing.T) {
	cases := []struct {
		name string
		file string
		mode os.FileMode
	}{
		{"host_key_0644", "host_ed25519", 0o644},
		{"host_ca_key_0640", "host_ca_ed25519", 0o640},
		{"static_private_key_0604", "static_key", 0o604},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			static := newKey(t, t.TempDir(), "static_key")
			w := newKeysWorld(t, fmt.Sprintf(`providers:
  static:
    - {name: db, address: "127.0.0.1:22", user: admin, private_key: %q, host_key: %q}
`, filepath.Join(filepath.Dir(static.Private), "static_key"), static.AuthorizedKey()))
			newKey(t, w.dir, "host_ed25519")
			newKey(t, w.dir, "host_ca_ed25519")
			path := w.path(tc.file)
			if tc.file == "static_key" {
				path = static.Private
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			w.wantRefused(t, path, "UNPROTECTED PRIVATE KEY FILE", fmt.Sprintf("%04o", tc.mode))
		})
	}
}

// TestHostileKeysConfigWritable: a config file others (or the group) may
// write grants access to whoever can write it, so it is refused.
func TestHostileKeysConfigWritable(t *testing.T) {
	for _, mode := range []os.FileMode{0o666, 0o620} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			w := newKeysWorld(t, "")
			if err := os.Chmod(w.config, mode); err != nil {
				t.Fatal(err)
			}
			w.wantRefused(t, w.config, "writable by group or others")
		})
	}
}
