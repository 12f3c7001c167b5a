package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.err from the errors Load returns")

// The keys under testdata/keys were made with ssh-keygen; their private
// halves were deleted, except static_ed25519 and static_encrypted (passphrase
// "secret passphrase"), which stand for a static target's login key, and
// win_admins_rsa.pem, a Lightsail key pair for rdp_key_pairs. The
// sk-* public keys were assembled by hand: ssh-keygen needs a token for them.
//
// Git keeps no permissions but the executable bit, so a checkout leaves the
// private halves 0644, which Load refuses as sshd would: TestMain makes
// them 0600 first.
func TestMain(m *testing.M) {
	for _, key := range []string{"testdata/keys/static_ed25519", "testdata/keys/static_encrypted", "testdata/keys/win_admins_rsa.pem"} {
		if err := os.Chmod(key, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "config tests:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func TestGoldenValid(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("globbing testdata/valid: got %d files, %v; want some", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := Load(file)
			if err != nil {
				t.Fatalf("Load(%q): got error\n%v\nwant none", file, err)
			}
			if cfg.Path != file {
				t.Errorf("Path: got %q, want %q", cfg.Path, file)
			}
		})
	}
}

func TestGoldenInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("globbing testdata/invalid: got %d files, %v; want some", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%q): got %+v, nil; want an error", file, cfg)
			}
			if cfg != nil {
				t.Errorf("Load(%q) with errors: got a Config, want nil", file)
			}
			errFile := strings.TrimSuffix(file, ".yaml") + ".err"
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(errFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(errFile)
			if rerr != nil {
				t.Fatalf("reading %s (run go test -update to create it): %v", errFile, rerr)
			}
			if got != string(want) {
				t.Errorf("Load(%q) error:\ngot\n%s\nwant\n%s", file, got, want)
			}
			// Every line is one *Error, in FILE:LINE: form.
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) {
				t.Fatalf("error: got %T, want a joined error", err)
			}
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			if n := len(joined.Unwrap()); n != len(lines) {
				t.Errorf("joined errors: got %d, want %d (one per line)", n, len(lines))
			}
			for _, e := range joined.Unwrap() {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != file {
					t.Errorf("error %q: got %T with file %v, want *Error with file %q", e, e, ce, file)
				}
			}
		})
	}
}

// parseString parses a config given as text, failing the test on error.
func parseString(t *testing.T, text string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(text), "")
	if err != nil {
		t.Fatalf("Parse: got error\n%v\nwant none", err)
	}
	return cfg
}

// parseError parses a config given as text and returns its error text,
// failing the test if there is none.
func parseError(t *testing.T, text string) string {
	t.Helper()
	cfg, err := Parse([]byte(text), "")
	if err == nil {
		t.Fatalf("Parse: got %+v, nil; want an error", cfg)
	}
	return err.Error()
}

const minimalHead = `host_key: /var/lib/bastion/host_ed25519
host_ca_key: /var/lib/bastion/host_ca_ed25519
`

func TestDefaults(t *testing.T) {
	cfg := parseString(t, minimalHead+`
providers:
  lightsail: {regions: [us-east-1]}
  ec2: {regions: [us-east-1], known_hosts: ec2_known_hosts}
`)
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, DefaultListen},
		{"admin_listen", cfg.AdminListen, ""},
		{"limits.handshake_timeout", cfg.Limits.HandshakeTimeout.D(), DefaultHandshakeTimeout},
		{"limits.dial_timeout", cfg.Limits.DialTimeout.D(), DefaultDialTimeout},
		{"limits.aws_timeout", cfg.Limits.AWSTimeout.D(), DefaultAWSTimeout},
		{"limits.max_auth_tries", cfg.Limits.MaxAuthTries, DefaultMaxAuthTries},
		{"limits.idle_timeout", cfg.Limits.IdleTimeout.D(), time.Duration(0)},
		{"limits.max_session", cfg.Limits.MaxSession.D(), time.Duration(0)},
		{"lightsail.address", cfg.Providers.Lightsail.Address, AddressPublic},
		{"lightsail.port", cfg.Providers.Lightsail.Port, 22},
		{"lightsail.resolve_cache", cfg.Providers.Lightsail.ResolveCache.D(), DefaultResolveCache},
		{"ec2.address", cfg.Providers.EC2.Address, AddressPrivate},
		{"ec2.port", cfg.Providers.EC2.Port, 22},
		{"ec2.host_keys", cfg.Providers.EC2.HostKeys, HostKeysTOFU},
		{"ec2.resolve_cache", cfg.Providers.EC2.ResolveCache.D(), DefaultResolveCache},
		{"audit.log", cfg.Audit.Log, ""},
		{"audit.recordings", cfg.Audit.Recordings, ""},
		{"static", len(cfg.Providers.Static), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestDefaultsNoProviders(t *testing.T) {
	cfg := parseString(t, minimalHead)
	if cfg.Providers.Lightsail != nil || cfg.Providers.EC2 != nil {
		t.Errorf("providers left out: got lightsail %v, ec2 %v; want nil, nil", cfg.Providers.Lightsail, cfg.Providers.EC2)
	}
}

func TestExplicitValues(t *testing.T) {
	cfg, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ls, ec2 := cfg.Providers.Lightsail, cfg.Providers.EC2
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, "0.0.0.0:2200"},
		{"admin_listen", cfg.AdminListen, "127.0.0.1:9090"},
		{"limits.idle_timeout", cfg.Limits.IdleTimeout.D(), 30 * time.Minute},
		{"limits.max_session", cfg.Limits.MaxSession.D(), 12 * time.Hour},
		{"limits.handshake_timeout", cfg.Limits.HandshakeTimeout.D(), 5 * time.Second},
		{"limits.dial_timeout", cfg.Limits.DialTimeout.D(), 3 * time.Second},
		{"limits.aws_timeout", cfg.Limits.AWSTimeout.D(), 20 * time.Second},
		{"limits.max_auth_tries", cfg.Limits.MaxAuthTries, 3},
		{"lightsail.regions", strings.Join(ls.Regions, ","), "us-east-1,eu-west-2"},
		{"lightsail.address", ls.Address, AddressPrivate},
		{"lightsail.port", ls.Port, 2222},
		{"lightsail.resolve_cache", ls.ResolveCache.D(), time.Minute},
		{"ec2.address", ec2.Address, AddressPublic},
		{"ec2.host_keys", ec2.HostKeys, HostKeysPinned},
		{"ec2.resolve_cache (explicit 0 kept)", ec2.ResolveCache.D(), time.Duration(0)},
		{"policies", len(cfg.Policies), 2},
		{"policies[1].deny", strings.Join(cfg.Policies[1].Deny, ","), CapSCP},
		{"policies[1].forward_to", len(cfg.Policies[1].ForwardTo), 3},
		{"trusted CAs", len(cfg.TrustedUserCAs), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestPublicKeys(t *testing.T) {
	cfg, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user  string
		types []string
	}{
		{"alice", []string{"ssh-ed25519", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"}},
		{"bob", []string{"ecdsa-sha2-nistp256"}},
		{"carol", []string{"ssh-ed25519", "ssh-ed25519"}}, // from keys_file
		{"dave.ci", nil}, // certificates only
	} {
		t.Run(tc.user, func(t *testing.T) {
			u := cfg.UserByName(tc.user)
			if u == nil {
				t.Fatalf("UserByName(%q): got nil, want a user", tc.user)
			}
			var got []string
			for _, k := range u.PublicKeys {
				got = append(got, k.Type())
			}
			if !slices.Equal(got, tc.types) {
				t.Errorf("key types: got %v, want %v", got, tc.types)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys", "carol.pub"), readFile(t, "testdata/keys/alice.pub"))
	writeFile(t, filepath.Join(dir, "keys", "db"), readFile(t, "testdata/keys/static_ed25519"))
	writeFile(t, filepath.Join(dir, "known_hosts"), readFile(t, "testdata/keys/static_known_hosts"))
	data := []byte(`
host_key: host_ed25519
host_ca_key: /abs/host_ca_ed25519
users:
  - name: carol
    keys_file: keys/carol.pub
providers:
  ec2: {regions: [us-east-1], known_hosts: state/ec2_known_hosts}
  static:
    - {name: db, address: "db:22", user: admin, private_key: keys/db, known_hosts: known_hosts}
audit:
  log: ./logs/../audit.jsonl
  recordings: rec
`)
	configPath := filepath.Join(dir, "config.yaml")
	cfg, err := Parse(data, configPath)
	if err != nil {
		t.Fatalf("Parse: got error\n%v\nwant none", err)
	}
	stdout, err := Parse([]byte(minimalHead+"audit: {log: stdout}\n"), configPath)
	if err != nil {
		t.Fatal(err)
	}
	noPath := parseString(t, "host_key: a/host_ed25519\nhost_ca_key: ca\naudit: {recordings: rec}\n")
	for _, tc := range []struct {
		name      string
		got, want string
	}{
		{"host_key", cfg.HostKey, filepath.Join(dir, "host_ed25519")},
		{"host_ca_key absolute", cfg.HostCAKey, "/abs/host_ca_ed25519"},
		{"keys_file", cfg.Users[0].KeysFile, filepath.Join(dir, "keys", "carol.pub")},
		{"ec2.known_hosts", cfg.Providers.EC2.KnownHosts, filepath.Join(dir, "state", "ec2_known_hosts")},
		{"static.private_key", cfg.Providers.Static[0].PrivateKey, filepath.Join(dir, "keys", "db")},
		{"static.known_hosts", cfg.Providers.Static[0].KnownHosts, filepath.Join(dir, "known_hosts")},
		{"audit.log cleaned", cfg.Audit.Log, filepath.Join(dir, "audit.jsonl")},
		{"audit.recordings", cfg.Audit.Recordings, filepath.Join(dir, "rec")},
		{"audit.log stdout", stdout.Audit.Log, "stdout"},
		{"no path: host_key", noPath.HostKey, filepath.Join("a", "host_ed25519")},
		{"no path: recordings", noPath.Audit.Recordings, "rec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestMergeKeys(t *testing.T) {
	cfg, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.StaticByName("legacy-db-replica")
	if s == nil {
		t.Fatal("StaticByName(legacy-db-replica): got nil, want a target")
	}
	for _, tc := range []struct {
		name      string
		got, want string
	}{
		{"user merged", s.User, "admin"},
		{"private_key merged", s.PrivateKey, filepath.Join("testdata", "keys", "static_ed25519")},
		{"tags merged", s.Tags["team"], "data"},
		{"address overridden", s.Address, "[fd00::6]:2022"},
		{"host_key overridden by null", s.HostKey, ""},
		{"known_hosts added", s.KnownHosts, filepath.Join("testdata", "keys", "static_known_hosts")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		want    time.Duration
		wantErr string
	}{
		{yaml: `30s`, want: 30 * time.Second},
		{yaml: `"10m"`, want: 10 * time.Minute},
		{yaml: `12h`, want: 12 * time.Hour},
		{yaml: `1h30m`, want: 90 * time.Minute},
		{yaml: `0`, want: 0},
		{yaml: `~`, want: 0},
		{yaml: `30`, wantErr: `duration 30 needs a unit, such as "30s" or "30m"`},
		{yaml: `2.5`, wantErr: `duration 2.5 needs a unit, such as "2.5s" or "2.5m"`},
		{yaml: `soon`, wantErr: `"soon" is not a duration (write a number and a unit, such as "30s", "10m" or "12h")`},
		{yaml: `{a: 1}`, wantErr: `expected a duration such as "30s", got a mapping`},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+tc.yaml), &v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if v.D.D() != tc.want {
				t.Errorf("got %v, want %v", v.D.D(), tc.want)
			}
		})
	}
}

func TestDurationRoundTrip(t *testing.T) {
	in := struct {
		D Duration `yaml:"d"`
	}{Duration(90 * time.Second)}
	out, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "d: 1m30s\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestErrorPrefix(t *testing.T) {
	for _, tc := range []struct {
		name, path, want string
	}{
		{"no path", "", "config:3: bogus: unknown key"},
		{"relative path", "etc/config.yaml", "etc/config.yaml:3: bogus: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(minimalHead+"bogus: 1\n"), tc.path)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestErrorFields(t *testing.T) {
	_, err := Parse([]byte(minimalHead+"users:\n  - name: Alice\n    keys: [nope]\n"), "c.yaml")
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("got %v, want a joined error", err)
	}
	var got []Error
	for _, e := range joined.Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("got %T, want *Error", e)
		}
		got = append(got, *ce)
	}
	want := []Error{
		{File: "c.yaml", Line: 4, Key: "users[0].name", Msg: `"Alice" is not a valid user name (lower-case letters, digits, '.', '_' and '-', not starting with a digit, '.' or '-')`},
		{File: "c.yaml", Line: 5, Key: "users[0].keys[0]", Msg: "not a public key in authorized_keys format"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestUserKeysWithTrustedCA(t *testing.T) {
	ca := strings.TrimSpace(readFile(t, "testdata/keys/user_ca.pub"))
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"no keys, no CA", "users: [{name: alice}]\n", "config:3: users[0]: has no keys: set keys or keys_file (or trusted_user_ca_keys to log in with certificates)"},
		{"no keys, CA", "users: [{name: alice}]\ntrusted_user_ca_keys: [\"" + ca + "\"]\n", ""},
		{"empty keys_file, no CA", "users: [{name: alice, keys_file: testdata/keys/empty_authorized_keys}]\n", "config:3: users[0]: has no keys: set keys or keys_file (or trusted_user_ca_keys to log in with certificates)"},
		{"CA option other than cert-authority", "trusted_user_ca_keys: [\"principals=\\\"x\\\" " + ca + "\"]\n", `config:3: trusted_user_ca_keys[0]: key option principals="x" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(minimalHead+tc.text), "")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("got error\n%v\nwant none", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("got %v, want %q", err, tc.wantErr)
			case err == nil && len(cfg.TrustedUserCAs) != 1:
				t.Errorf("TrustedUserCAs: got %d, want 1", len(cfg.TrustedUserCAs))
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/no-such-config.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestByName(t *testing.T) {
	cfg, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		user, static    string
		wantUser, wantS bool
	}{
		{name: "user", user: "bob", wantUser: true},
		{name: "unknown user", user: "mallory"},
		{name: "static", static: "legacy-db", wantS: true},
		{name: "unknown static", static: "web-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.user != "" {
				u := cfg.UserByName(tc.user)
				if got := u != nil; got != tc.wantUser {
					t.Fatalf("UserByName(%q) found: got %v, want %v", tc.user, got, tc.wantUser)
				}
				if u != nil && u != &cfg.Users[1] {
					t.Errorf("UserByName(%q): got a copy, want a pointer into Users", tc.user)
				}
			}
			if tc.static != "" {
				s := cfg.StaticByName(tc.static)
				if got := s != nil; got != tc.wantS {
					t.Fatalf("StaticByName(%q) found: got %v, want %v", tc.static, got, tc.wantS)
				}
				if s != nil && s.Name != tc.static {
					t.Errorf("StaticByName(%q).Name: got %q, want %q", tc.static, s.Name, tc.static)
				}
			}
		})
	}
}

// TestExample proves that config.yaml.example at the repository root is
// valid and shows every key of the schema. The files it names relative to
// its folder are supplied in a temporary one.
func TestExample(t *testing.T) {
	example := readFile(t, "../config.yaml.example")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys", "bob.pub"), readFile(t, "testdata/keys/bob.pub"))
	writeFile(t, filepath.Join(dir, "keys", "legacy_db"), readFile(t, "testdata/keys/static_ed25519"))
	writeFile(t, filepath.Join(dir, "keys", "build_known_hosts"), readFile(t, "testdata/keys/static_known_hosts"))
	writeFile(t, filepath.Join(dir, "keys", "revoked"), "# revoked\n"+readFile(t, "testdata/keys/bob.pub"))
	writeFile(t, filepath.Join(dir, "keys", "win-admins.pem"), readFile(t, "testdata/keys/win_admins_rsa.pem"))
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, example)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(config.yaml.example): got error\n%v\nwant none", err)
	}
	if got, want := len(cfg.Users), 3; got != want {
		t.Errorf("users: got %d, want %d", got, want)
	}

	var root yaml.Node
	if err := yaml.Unmarshal([]byte(example), &root); err != nil {
		t.Fatal(err)
	}
	present := make(map[string]bool)
	collectKeys(&root, "", present)
	for _, key := range schemaKeys(reflect.TypeFor[Config](), "") {
		t.Run(key, func(t *testing.T) {
			if !present[key] {
				t.Errorf("config.yaml.example: got no %s, want every key of the schema", key)
			}
		})
	}
}

// schemaKeys lists the key paths of struct type t, lists written as "[]";
// deprecated keys are left out.
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || t.Field(i).Tag.Get("deprecated") != "" {
			continue
		}
		key := joinKey(prefix, name)
		keys = append(keys, key)
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			keys = append(keys, schemaKeys(ft.Elem(), key+"[]")...)
		} else if ft.Kind() == reflect.Struct {
			keys = append(keys, schemaKeys(ft, key)...)
		}
	}
	return keys
}

// collectKeys records in present the key paths found under n, lists
// written as "[]".
func collectKeys(n *yaml.Node, prefix string, present map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectKeys(c, prefix, present)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := joinKey(prefix, n.Content[i].Value)
			present[key] = true
			collectKeys(n.Content[i+1], key, present)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			collectKeys(c, prefix+"[]", present)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	alice := strings.TrimSpace(readFile(t, "testdata/keys/alice.pub"))
	bob := strings.TrimSpace(readFile(t, "testdata/keys/bob.pub"))
	for _, tc := range []struct {
		name, text, want string
	}{
		{
			name: "key that is not a string",
			text: "? [a, b]\n: c\n",
			want: `config:3: expected a key name, got a list`,
		},
		{
			name: "tags not a mapping",
			text: "providers:\n  static:\n    - {name: db, address: \"db:22\", user: u, private_key: testdata/keys/static_ed25519, known_hosts: testdata/keys/static_known_hosts, tags: [x]}\n",
			want: `config:5: providers.static[0].tags: expected a mapping, got a list`,
		},
		{
			name: "two keys in one entry",
			text: "users:\n  - name: alice\n    keys: [\"" + alice + "\\n" + bob + "\"]\n",
			want: `config:5: users[0].keys[0]: more than one key; give one key per entry`,
		},
		{
			name: "keys_file is a folder",
			text: "users:\n  - name: alice\n    keys_file: testdata\n",
			want: `config:5: users[0].keys_file: reading testdata: is a directory`,
		},
		{
			name: "empty group in policy",
			text: "policies:\n  - {groups: [\"\"], targets: [\"*\"], os_users: [\"*\"]}\n",
			want: `config:4: policies[0].groups[0]: must not be empty`,
		},
		{
			name: "static host key is a certificate",
			text: "providers:\n  static:\n    - {name: db, address: \"db:22\", user: u, private_key: testdata/keys/static_ed25519, host_key: \"" +
				strings.TrimSpace(readFile(t, "testdata/keys/alice-cert.pub")) + "\"}\n",
			want: `config:5: providers.static[0].host_key: a certificate, not a public key; pin the host's public key`,
		},
		{
			name: "tab indentation",
			text: "users:\n\t- name: alice\n",
			want: `config:4: found character that cannot start any token`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseError(t, minimalHead+tc.text); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
