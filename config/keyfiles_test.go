package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyFileChecks covers the file checks Load makes on the host keys,
// static private keys, keys_file and the config file itself.
func TestKeyFileChecks(t *testing.T) {
	alice := strings.TrimSpace(readFile(t, "testdata/keys/alice.pub"))
	static := readFile(t, "testdata/keys/static_ed25519")
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		body  string
		want  string // "" for no error
	}{
		{name: "fresh state folder", setup: func(*testing.T, string) {}},
		{name: "host keys 0600", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "host_ed25519"), static)
		}},
		{name: "host key 0644", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "host_ed25519"), static)
			chmod(t, filepath.Join(dir, "host_ed25519"), 0o644)
		}, want: "host_key: UNPROTECTED PRIVATE KEY FILE: "},
		{name: "dangling host CA symlink", setup: func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "host_ca_ed25519")); err != nil {
				t.Fatal(err)
			}
		}, want: "host_ca_key: " + "DIR/host_ca_ed25519 is a symlink to DIR/gone, which does not exist"},
		{name: "CA is a copy of the host key", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "host_ed25519"), static)
			writeFile(t, filepath.Join(dir, "host_ca_ed25519"), static)
		}, want: "holds the same key as host_key"},
		{name: "CA is a hard link to the host key", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "host_ed25519"), static)
			if err := os.Link(filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "host_ca_ed25519")); err != nil {
				t.Fatal(err)
			}
		}, want: "holds the same key as host_key"},
		{name: "static key 0640", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "db_key"), static)
			chmod(t, filepath.Join(dir, "db_key"), 0o640)
		}, body: "providers:\n  static:\n    - {name: db, address: \"db:22\", user: u, private_key: db_key, host_key: \"" + alice + "\"}\n",
			want: "providers.static[0].private_key: UNPROTECTED PRIVATE KEY FILE: "},
		{name: "keys_file 0664", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "bob.pub"), alice+"\n")
			chmod(t, filepath.Join(dir, "bob.pub"), 0o664)
		}, body: "  - {name: bob, keys_file: bob.pub}\n", want: "users[1].keys_file: DIR/bob.pub is mode 0664, writable by group or others"},
		{name: "config 0646", setup: func(t *testing.T, dir string) {
			chmod(t, filepath.Join(dir, "config.yaml"), 0o646)
		}, want: "DIR/config.yaml: DIR/config.yaml is mode 0646, writable by group or others"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			body := tc.body
			users := "users:\n  - {name: alice, keys: [\"" + alice + "\"]}\n"
			if strings.HasPrefix(body, "  - ") {
				users, body = users+body, ""
			}
			writeFile(t, filepath.Join(dir, "config.yaml"), "host_key: host_ed25519\nhost_ca_key: host_ca_ed25519\n"+users+body)
			tc.setup(t, dir)
			_, err := Load(filepath.Join(dir, "config.yaml"))
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			switch {
			case want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("got %v, want an error containing %q", err, want)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
