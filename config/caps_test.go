package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestExecLoopholeWarning(t *testing.T) {
	const users = "users: [{name: alice, keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZtH5y1xGcR3sAa1F2B0YtJvNqZk7lq3bYg0tW1Xm2U\"], groups: [dev]}]\n"
	for _, tc := range []struct {
		name, policy, want string
	}{
		{"shell denied, exec allowed", `{groups: [dev], targets: ["*"], os_users: ["*"], deny: [shell]}`,
			"config:5: policies[0].deny: denies shell but not exec, and an exec can start a shell or an SFTP server; add exec to deny for the denial to hold"},
		{"sftp and shell denied", `{groups: [dev], targets: ["*"], os_users: ["*"], deny: [sftp, shell]}`,
			"config:5: policies[0].deny: denies shell and sftp but not exec, and an exec can start a shell or an SFTP server; add exec to deny for the denial to hold"},
		{"exec denied too", `{groups: [dev], targets: ["*"], os_users: ["*"], deny: [shell, sftp, exec]}`, ""},
		{"nothing denied", `{groups: [dev], targets: ["*"], os_users: ["*"]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(minimalHead+users+"policies:\n  - "+tc.policy+"\n"), "")
			if err != nil {
				t.Fatalf("got error %v, want a warning at most", err)
			}
			var got []string
			for _, w := range cfg.Warnings {
				got = append(got, w.Error())
			}
			if strings.Join(got, "\n") != tc.want {
				t.Errorf("warnings: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseKeyOptions(t *testing.T) {
	utc := func(s string) time.Time { t, _ := time.ParseInLocation("20060102150405", s, time.UTC); return t }
	tests := []struct {
		name    string
		opts    []string
		want    KeyOptions
		wantErr string
	}{
		{"none", nil, KeyOptions{}, ""},
		{"restrict", []string{"restrict"}, KeyOptions{NoPortForwarding: true, NoAgentForwarding: true, NoPTY: true, NoX11Forwarding: true}, ""},
		{"restrict then pty", []string{"restrict", "pty", "port-forwarding"}, KeyOptions{NoAgentForwarding: true, NoX11Forwarding: true}, ""},
		{"pty then restrict", []string{"pty", "restrict"}, KeyOptions{NoPortForwarding: true, NoAgentForwarding: true, NoPTY: true, NoX11Forwarding: true}, ""},
		{"no-* in any case", []string{"No-Port-Forwarding", "no-X11-forwarding", "NO-PTY", "no-agent-forwarding"}, KeyOptions{NoPortForwarding: true, NoAgentForwarding: true, NoPTY: true, NoX11Forwarding: true}, ""},
		{"command", []string{`command="echo \"hi\" \\n"`}, KeyOptions{Command: `echo "hi" \\n`}, ""},
		{"from", []string{`from="10.0.0.0/8,!10.1.*,*.example.com"`}, KeyOptions{From: []string{"10.0.0.0/8", "!10.1.*", "*.example.com"}}, ""},
		{"permitopen", []string{`permitopen="db:5432"`, `permitopen="[::1]:*"`, `permitopen="*:80"`}, KeyOptions{PermitOpen: []string{"db:5432", "[::1]:*", "*:80"}}, ""},
		{"permitlisten", []string{`permitlisten="8080"`, `permitlisten="localhost:*"`}, KeyOptions{PermitListen: []string{"*:8080", "localhost:*"}}, ""},
		{"expiry-time earliest", []string{`expiry-time="20300101Z"`, `expiry-time="202001021504Z"`}, KeyOptions{ExpiryTime: utc("20200102150400")}, ""},
		{"no-touch-required", []string{"no-touch-required"}, KeyOptions{NoTouchRequired: true}, ""},
		{"environment", []string{`environment="A=b"`}, KeyOptions{}, "key option environment is not supported: the bastion cannot set environment variables on the instance"},
		{"verify-required", []string{"verify-required"}, KeyOptions{}, "key option verify-required is not supported: the SSH library does not show the server a security key signature's user-verification flag, so it cannot be checked"},
		{"tunnel", []string{`tunnel="0"`}, KeyOptions{}, "key option tunnel is not supported: tun forwarding is not supported"},
		{"no-user-rc", []string{"no-user-rc"}, KeyOptions{}, "key option no-user-rc is not supported: whether ~/.ssh/rc runs is up to the instance's sshd"},
		{"cert-authority", []string{"cert-authority"}, KeyOptions{}, "key option cert-authority is not supported: list certificate authorities in trusted_user_ca_keys"},
		{"unknown", []string{"frobnicate"}, KeyOptions{}, "key option frobnicate is not supported"},
		{"flag with value", []string{`no-pty="x"`}, KeyOptions{}, "key option no-pty takes no value"},
		{"command twice", []string{`command="a"`, `command="b"`}, KeyOptions{}, "key option command is given twice"},
		{"unquoted", []string{`command=ls`}, KeyOptions{}, "key option command: value must be in double quotes"},
		{"unterminated", []string{`command="ls`}, KeyOptions{}, "key option command: missing closing quote"},
		{"bad cidr", []string{`from="10.0.0.0/99"`}, KeyOptions{}, `key option from: "10.0.0.0/99" is not an address/masklen`},
		{"bad permitopen", []string{`permitopen="db"`}, KeyOptions{}, `key option permitopen: "db" is not host:port (the port may be *)`},
		{"bad expiry", []string{`expiry-time="2020"`}, KeyOptions{}, `key option expiry-time: "2020" is not YYYYMMDD[HHMM[SS]][Z]`},
		{"control bytes quoted", []string{"x\x1b[2J"}, KeyOptions{}, `key option x\x1b[2J is not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeyOptions(tc.opts)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestKeyOptionLines checks that a key line's unsupported option fails the
// load with the file, line and option name, inline and in keys_file.
func TestKeyOptionLines(t *testing.T) {
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZtH5y1xGcR3sAa1F2B0YtJvNqZk7lq3bYg0tW1Xm2U"
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "alice.pub")
	if err := os.WriteFile(keysFile, []byte("# alice\nrestrict,pty "+key+"\n"+`environment="X=1" `+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Parse([]byte(minimalHead+"users:\n  - name: alice\n    keys:\n      - 'restrict "+key+"'\n      - 'tunnel=\"1\" "+key+"'\n    keys_file: "+keysFile+"\n"), "c.yaml")
	if err == nil {
		t.Fatal("got no error, want the unsupported options refused")
	}
	got := err.Error()
	for _, w := range []string{
		"c.yaml:7: users[0].keys[1]: key option tunnel is not supported",
		"c.yaml:8: users[0].keys_file: " + keysFile + " line 3: key option environment is not supported",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("got\n%s\nwant a line with %q", got, w)
		}
	}
	if strings.Contains(got, "keys[0]") {
		t.Errorf("got\n%s\nwant restrict accepted", got)
	}
}

// FuzzKeyOptions checks that the authorized_keys options parser never
// panics, and that what it accepts it accepts consistently: an accepted
// line parses to the same options twice, and a restrict line without later
// grants restricts everything.
func FuzzKeyOptions(f *testing.F) {
	for _, s := range []string{
		`restrict,pty,command="echo \"hi\"",from="10.0.0.0/8,!10.1.*"`,
		`permitopen="[::1]:22",permitlisten="8080",expiry-time="20300101Z",no-touch-required`,
		`environment="A=b",tunnel="0"`, `command="`, `x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, opts string) {
		_, _, parsed, _, err := ssh.ParseAuthorizedKey([]byte(opts + " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZtH5y1xGcR3sAa1F2B0YtJvNqZk7lq3bYg0tW1Xm2U"))
		if err != nil {
			return
		}
		ko, err := ParseKeyOptions(parsed)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		again, _ := ParseKeyOptions(parsed)
		if !reflect.DeepEqual(ko, again) {
			t.Fatalf("two parses differ: %+v, %+v", ko, again)
		}
		if len(parsed) > 0 && strings.EqualFold(parsed[len(parsed)-1], "restrict") &&
			!(ko.NoPortForwarding && ko.NoAgentForwarding && ko.NoPTY && ko.NoX11Forwarding) {
			t.Fatalf("%q ends in restrict but parsed to %+v", opts, ko)
		}
		for _, p := range ko.From {
			if p == "" || p == "!" {
				t.Fatalf("%q: empty from pattern accepted", opts)
			}
		}
	})
}
