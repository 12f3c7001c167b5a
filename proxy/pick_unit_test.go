package proxy

import (
	"strings"
	"testing"

	"bastion/upstream"
)

// TestPickUnit checks how the menu reads the person's choice: by number,
// by name or full name, with the OS user after a space or before an '@',
// the one plain OS user taken when none is typed, and a message (never a
// panic, never a raw control character) for everything else.
func TestPickUnit(t *testing.T) {
	entries := []entry{
		{t: upstream.Target{Provider: "lightsail", Name: "web-1", Region: "us-east-1"}, osUsers: []string{"ec2-user"}},
		{t: upstream.Target{Provider: "ec2", Name: "db", Region: "eu-west-1"}, osUsers: []string{"ubuntu", "admin"}},
		{t: upstream.Target{Provider: "static", Name: "evil\x1b[2Jname"}, osUsers: []string{"*", "ops-?"}},
		{t: upstream.Target{Provider: "static", Name: "both"}, osUsers: []string{"root", "*"}},
	}
	huge := strings.Repeat("w", 1<<16)
	tests := []struct {
		name, line string
		// target and user are the pick when msg is empty.
		target, user string
		// msg is what the message must hold ("" means a pick).
		msg string
	}{
		{name: "number", line: "1", target: "web-1", user: "ec2-user"},
		{name: "name", line: "web-1", target: "web-1", user: "ec2-user"},
		{name: "full name", line: "web-1.us-east-1.lightsail", target: "web-1", user: "ec2-user"},
		{name: "number and user", line: "1 root", target: "web-1", user: "root"},
		{name: "name and user after a tab", line: "db\tadmin", target: "db", user: "admin"},
		{name: "repeated spaces", line: "db    ubuntu", target: "db", user: "ubuntu"},
		{name: "user at name", line: "admin@db", target: "db", user: "admin"},
		{name: "user at number", line: "ubuntu@2", target: "db", user: "ubuntu"},
		{name: "at name without user", line: "@web-1", target: "web-1", user: "ec2-user"},
		{name: "one plain user beside a pattern", line: "both", target: "both", user: "root"},
		{name: "number zero", line: "0", msg: "no target number 0"},
		{name: "negative number", line: "-1", msg: "no target number -1"},
		{name: "number past the end", line: "5", msg: "no target number 5"},
		{name: "number overflowing int", line: "99999999999999999999999", msg: "99999999999999999999999 is not in the list"},
		{name: "unknown name", line: "web-2", msg: "web-2 is not in the list"},
		{name: "name is case sensitive", line: "WEB-1", msg: "WEB-1 is not in the list"},
		{name: "repeated at", line: "a@b@c", msg: "b@c is not in the list"},
		{name: "two users", line: "db", msg: "name the OS user for db, as in: db ec2-user"},
		{name: "only patterns", line: "3", msg: `name the OS user for evil\x1b[2Jname, as in: 3 ec2-user`},
		{name: "typed control characters escaped", line: "evil\x1b[2Jname", msg: `name the OS user for evil\x1b[2Jname, as in: evil\x1b[2Jname ec2-user`},
		{name: "unknown name with escape", line: "x\x1b]0;owned\x07", msg: `x\x1b]0;owned\x07 is not in the list`},
		{name: "unknown name with NUL", line: "1\x00", msg: `1\x00 is not in the list`},
		{name: "invalid UTF-8", line: "\xff\xfe", msg: `\xff\xfe is not in the list`},
		{name: "user with a slash", line: "web-1 bad/user", msg: `"bad/user" is not a user name`},
		{name: "user like an option", line: "web-1 -oProxyCommand=id", msg: `"-oProxyCommand=id" is not a user name`},
		{name: "user with control character", line: "ro\x1bot@web-1", msg: `"ro\x1bot" is not a user name`},
		{name: "user too long", line: "web-1 " + strings.Repeat("u", 65), msg: "is not a user name"},
		{name: "empty", line: "", msg: "type a target number or name"},
		{name: "spaces", line: "   ", msg: "type a target number or name"},
		{name: "whitespace", line: "\t\r\n\v", msg: "type a target number or name"},
		{name: "at alone", line: "@", msg: "type a target number or name"},
		{name: "user at nothing", line: "root@", msg: "type a target number or name"},
		{name: "huge name", line: huge, msg: huge[:64]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, user, msg := pick(entries, tc.line)
			if tc.msg == "" {
				if msg != "" || e.t.Name != tc.target || user != tc.user {
					t.Fatalf("pick(%q): got %q as %q, message %q; want %q as %q", tc.line, e.t.Name, user, msg, tc.target, tc.user)
				}
				return
			}
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("pick(%q): got message %q, want it to hold %q", tc.line, msg, tc.msg)
			}
			if user != "" || e.t.Name != "" {
				t.Errorf("pick(%q): got %q as %q beside the message; want no pick", tc.line, e.t.Name, user)
			}
			if i := strings.IndexFunc(msg, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
				t.Errorf("pick(%q): message %q holds control byte %#x; want it escaped", tc.line, msg, msg[i])
			}
		})
	}
}
