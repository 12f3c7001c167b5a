package proxy

import (
	"errors"
	"strings"
	"testing"

	"bastion/upstream"
)

// TestParseDirectUserUnit checks the direct-mode login grammar on fixed
// logins: where the login splits, which logins are ProxyJump ones, where
// the length cap falls, and that the target part of a hostile login is
// then refused by the target name parser the connection runs next
// (upstream.ParseQuery), so nothing of it reaches a provider.
func TestParseDirectUserUnit(t *testing.T) {
	long := strings.Repeat("a", upstream.MaxNameLen)
	tests := []struct {
		name, login    string
		osUser, typed  string
		direct, tooBig bool
		// query is the parsed target ("" when ParseQuery must refuse it);
		// checked for direct logins only.
		query string
	}{
		{name: "jump login", login: "alice"},
		{name: "empty", login: ""},
		{name: "jump login with dots and at", login: "alice@example.com"},
		{name: "plus", login: "ec2-user+web-1", osUser: "ec2-user", typed: "web-1", direct: true, query: "web-1"},
		{name: "hash", login: "ec2-user#web-1.us-east-1.lightsail", osUser: "ec2-user", typed: "web-1.us-east-1.lightsail", direct: true, query: "web-1.us-east-1.lightsail"},
		{name: "instance id", login: "ubuntu+I-0123456789ABCDEF0", osUser: "ubuntu", typed: "I-0123456789ABCDEF0", direct: true, query: "i-0123456789abcdef0.ec2"},
		{name: "first separator wins plus", login: "a+b#c", osUser: "a", typed: "b#c", direct: true},
		{name: "first separator wins hash", login: "a#b+c", osUser: "a", typed: "b+c", direct: true},
		{name: "repeated separators", login: "a++web-1", osUser: "a", typed: "+web-1", direct: true},
		{name: "separators only", login: "+#+#", osUser: "", typed: "#+#", direct: true},
		{name: "no OS user", login: "+web-1", osUser: "", typed: "web-1", direct: true, query: "web-1"},
		{name: "no target", login: "ec2-user+", osUser: "ec2-user", typed: "", direct: true},
		{name: "separator alone", login: "#", direct: true},
		{name: "target with at", login: "u+web-1@evil", osUser: "u", typed: "web-1@evil", direct: true},
		{name: "target with slash", login: "u+../../etc/passwd", osUser: "u", typed: "../../etc/passwd", direct: true},
		{name: "target with escape", login: "u+web\x1b[2J", osUser: "u", typed: "web\x1b[2J", direct: true},
		{name: "target with newline", login: "u+web-1\nlevel=error", osUser: "u", typed: "web-1\nlevel=error", direct: true},
		{name: "target with NUL", login: "u+web\x00-1", osUser: "u", typed: "web\x00-1", direct: true},
		{name: "target with invalid UTF-8", login: "u+\xff\xfe", osUser: "u", typed: "\xff\xfe", direct: true},
		{name: "target with spaces", login: "u+web 1", osUser: "u", typed: "web 1", direct: true},
		{name: "region on static", login: "u+db.us-east-1.static", osUser: "u", typed: "db.us-east-1.static", direct: true},
		{name: "OS user with control character", login: "r\x1boot+web-1", osUser: "r\x1boot", typed: "web-1", direct: true, query: "web-1"},
		{name: "at the cap", login: "u+" + long[:upstream.MaxNameLen-2], osUser: "u", typed: long[:upstream.MaxNameLen-2], direct: true, query: long[:upstream.MaxNameLen-2]},
		{name: "jump login at the cap", login: long},
		{name: "one over the cap", login: "u+" + long[:upstream.MaxNameLen-1], tooBig: true},
		{name: "jump login over the cap", login: long + "a", tooBig: true},
		{name: "huge", login: strings.Repeat("u+", 1<<15), tooBig: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			osUser, typed, direct, err := parseDirectUser(tc.login)
			if tc.tooBig {
				if !errors.Is(err, errLoginTooLong) || direct || osUser != "" || typed != "" {
					t.Fatalf("parseDirectUser of %d bytes: got %q, %q, %v, %v; want errLoginTooLong alone", len(tc.login), osUser, typed, direct, err)
				}
				if strings.Contains(err.Error(), tc.login) {
					t.Errorf("parseDirectUser of %d bytes: error %q quotes the login", len(tc.login), err)
				}
				return
			}
			if err != nil || direct != tc.direct || osUser != tc.osUser || typed != tc.typed {
				t.Fatalf("parseDirectUser(%q): got %q, %q, %v, %v; want %q, %q, %v, nil", tc.login, osUser, typed, direct, err, tc.osUser, tc.typed, tc.direct)
			}
			if !direct {
				return
			}
			q, err := upstream.ParseQuery(typed)
			switch {
			case tc.query == "" && err == nil:
				t.Errorf("ParseQuery(%q): got %q, want it refused", typed, q)
			case tc.query != "" && err != nil:
				t.Errorf("ParseQuery(%q): %v; want %q", typed, err, tc.query)
			case tc.query != "" && q.String() != tc.query:
				t.Errorf("ParseQuery(%q): got %q, want %q", typed, q, tc.query)
			}
		})
	}
}
