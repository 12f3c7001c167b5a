package config

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fuzzHead is the least a valid file holds.
const fuzzHead = "host_key: /var/lib/bastion/host_ed25519\nhost_ca_key: /var/lib/bastion/host_ca_ed25519\n"

// FuzzParse checks that Parse never panics and keeps its documented
// contract on any input:
//
//   - it returns a Config or an error, never both, never neither;
//   - the error is a join of *Error values, one per line, in line order,
//     each printed as "config:LINE: KEY: message" (":LINE" left out when
//     unknown, "KEY: " for the file as a whole), with a line inside the
//     file and no line break inside one error;
//   - a Config it accepts has every default filled in and passes the
//     checks that the server relies on without looking again;
//   - the same input gives the same answer twice.
//
// Parse reads the files that keys_file, private_key and known_hosts name;
// inputs that could name a device or kernel file (which may never end) are
// skipped. Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fuzzHead))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range []string{"dev/", "proc/", "sys/", `\x`, `\u`, `\U`, `\/`} {
			if bytes.Contains(data, []byte(s)) {
				t.Skip("could name a special file")
			}
		}
		cfg, err := Parse(data, "")
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse: got %v, %v; want exactly one of a Config and an error", cfg, err)
		}
		if err != nil {
			checkErrorShape(t, data, err)
		} else {
			checkDefaults(t, cfg)
		}
		cfg2, err2 := Parse(data, "")
		if fmt.Sprint(err) != fmt.Sprint(err2) || (cfg == nil) != (cfg2 == nil) {
			t.Errorf("Parse twice: got error %q then %q; want the same", fmt.Sprint(err), fmt.Sprint(err2))
		}
	})
}

// checkErrorShape checks that err is a join of one-line *Error values for
// the file "config", sorted by line, each within data.
func checkErrorShape(t *testing.T, data []byte, err error) {
	t.Helper()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("error %q: got %T, want a joined error", err, err)
	}
	errs := joined.Unwrap()
	if len(errs) == 0 {
		t.Fatalf("error %q: joins no error", err)
	}
	if got, want := strings.Count(err.Error(), "\n")+1, len(errs); got != want {
		t.Errorf("error %q: got %d lines, want %d (one per problem)", err, got, want)
	}
	// YAML ends a line at \n, \r\n or a lone \r.
	breaks := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	lines := bytes.Count(breaks, []byte("\n")) + bytes.Count(breaks, []byte("\r")) + 1
	prev := 0
	for _, e := range errs {
		ce, ok := e.(*Error)
		if !ok {
			t.Errorf("error %q: got %T, want *Error", e, e)
			continue
		}
		if ce.File != "config" {
			t.Errorf("error %q: File = %q, want \"config\"", ce, ce.File)
		}
		if ce.Msg == "" {
			t.Errorf("error %q: empty message", ce)
		}
		// A YAML syntax error may point just past the last line.
		if ce.Line < 0 || ce.Line > lines+1 {
			t.Errorf("error %q: line %d outside the file's %d lines", ce, ce.Line, lines)
		}
		if ce.Line < prev {
			t.Errorf("error %q: line %d after line %d; want errors sorted by line", ce, ce.Line, prev)
		}
		prev = ce.Line
		want := "config"
		if ce.Line > 0 {
			want += fmt.Sprintf(":%d", ce.Line)
		}
		want += ": "
		if ce.Key != "" {
			want += ce.Key + ": "
		}
		want += ce.Msg
		if got := ce.Error(); got != want {
			t.Errorf("error: got %q, want %q", got, want)
		}
		if strings.ContainsAny(ce.Error(), "\r\n") {
			t.Errorf("error %q: holds a line break; want one line per problem", ce.Error())
		}
	}
}

// checkDefaults checks that an accepted Config has its defaults filled in
// and the properties that validation promises.
func checkDefaults(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Listen == "" {
		t.Errorf("Listen: empty, want %q or a value", DefaultListen)
	}
	if cfg.HostKey == "" || cfg.HostCAKey == "" || cfg.HostKey == cfg.HostCAKey {
		t.Errorf("HostKey %q, HostCAKey %q: want two different paths", cfg.HostKey, cfg.HostCAKey)
	}
	l := cfg.Limits
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"handshake_timeout", l.HandshakeTimeout},
		{"dial_timeout", l.DialTimeout},
		{"aws_timeout", l.AWSTimeout},
	} {
		if d.v <= 0 {
			t.Errorf("limits.%s = %v, want > 0 (a default)", d.name, d.v)
		}
	}
	if l.IdleTimeout < 0 || l.MaxSession < 0 {
		t.Errorf("limits idle_timeout %v, max_session %v: want >= 0", l.IdleTimeout, l.MaxSession)
	}
	if l.MaxAuthTries < 1 {
		t.Errorf("limits.max_auth_tries = %d, want >= 1", l.MaxAuthTries)
	}
	if ls := cfg.Providers.Lightsail; ls != nil {
		if len(ls.Regions) == 0 || (ls.Address != AddressPublic && ls.Address != AddressPrivate) ||
			ls.Port < 1 || ls.Port > 65535 || ls.ResolveCache < 0 {
			t.Errorf("providers.lightsail = %+v: want regions, an address choice, a port and a cache >= 0", *ls)
		}
	}
	if e := cfg.Providers.EC2; e != nil {
		if len(e.Regions) == 0 || (e.Address != AddressPublic && e.Address != AddressPrivate) ||
			e.Port < 1 || e.Port > 65535 || e.ResolveCache < 0 ||
			(e.HostKeys != HostKeysTOFU && e.HostKeys != HostKeysPinned) || e.KnownHosts == "" {
			t.Errorf("providers.ec2 = %+v: want regions, address, port, cache >= 0, host_keys and known_hosts", *e)
		}
	}
	if len(cfg.TrustedUserCAs) != len(cfg.TrustedUserCAKeys) {
		t.Errorf("TrustedUserCAs: got %d, want %d (one per trusted_user_ca_keys)", len(cfg.TrustedUserCAs), len(cfg.TrustedUserCAKeys))
	}
	names := make(map[string]bool)
	owners := make(map[string]string)
	for _, u := range cfg.Users {
		if u.Name == "" || names[u.Name] {
			t.Errorf("user %q: empty or duplicate name", u.Name)
		}
		names[u.Name] = true
		if len(u.PublicKeys) == 0 && len(cfg.TrustedUserCAs) == 0 {
			t.Errorf("user %q: no key and no trusted CA", u.Name)
		}
		for _, k := range u.PublicKeys {
			w := string(k.Marshal())
			if o, ok := owners[w]; ok && o != u.Name {
				t.Errorf("a key is listed for both %q and %q", o, u.Name)
			}
			owners[w] = u.Name
		}
	}
	statics := make(map[string]bool)
	for _, s := range cfg.Providers.Static {
		if s.Name == "" || statics[s.Name] || s.Address == "" || s.User == "" || s.PrivateKey == "" ||
			(s.HostKey == "") == (s.KnownHosts == "") {
			t.Errorf("static %+v: want a unique name, address, user, private key and one host key source", s)
		}
		statics[s.Name] = true
	}
	for i, p := range cfg.Policies {
		if (len(p.Users) == 0 && len(p.Groups) == 0) || len(p.Targets) == 0 || len(p.OSUsers) == 0 {
			t.Errorf("policies[%d] = %+v: want users or groups, targets and os_users", i, p)
		}
	}
}

// TestParseMergeOncePerProblem checks that merge keys do not multiply
// problems: a chain of n anchors, each merging the previous one twice, is
// n lines of YAML and must not report the one bad merge 2^n times (nor take
// 2^n steps: at n=30 that is minutes and gigabytes for a 33-line file).
// yaml.v3's own Decode refuses such documents ("excessive aliasing"); the
// config decoder, which walks yaml.Node itself, must bound them too.
func TestParseMergeOncePerProblem(t *testing.T) {
	const n = 12
	var b strings.Builder
	b.WriteString(fuzzHead + "limits: &m0 {<<: [0]}\npolicies:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	data := []byte(b.String())
	_, err := Parse(data, "")
	if err == nil {
		t.Fatal("Parse: got no error, want some (the merges name a scalar)")
	}
	lines := strings.Split(err.Error(), "\n")
	if limit := bytes.Count(data, []byte("\n")) * 4; len(lines) > limit {
		t.Errorf("Parse of %d lines: got %d error lines, want at most %d; first lines:\n%s",
			bytes.Count(data, []byte("\n")), len(lines), limit, strings.Join(lines[:8], "\n"))
	}
	seen := make(map[string]bool)
	for _, l := range lines {
		if seen[l] {
			t.Errorf("error line %q reported more than once", l)
			break
		}
		seen[l] = true
	}
}
