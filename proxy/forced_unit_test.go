package proxy

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"bastion/auth"
	"bastion/config"
)

// forcedValue decodes the value forcedCommand assigns to
// SSH_ORIGINAL_COMMAND and returns it with what follows the assignment,
// reading only the two forms the quoting may use: 'text' and \c. It
// reports false for anything else, an unquoted byte included.
func forcedValue(cmd string) (value, rest string, ok bool) {
	s, ok := strings.CutPrefix(cmd, "SSH_ORIGINAL_COMMAND=")
	if !ok {
		return "", "", false
	}
	var b strings.Builder
	for len(s) > 0 && s[0] != ';' {
		switch s[0] {
		case '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return "", "", false
			}
			b.WriteString(s[1 : 1+end])
			s = s[2+end:]
		case '\\':
			if len(s) < 2 {
				return "", "", false
			}
			b.WriteByte(s[1])
			s = s[2:]
		default:
			return "", "", false
		}
	}
	return b.String(), s, true
}

// TestForcedCommandUnit checks the command line that runs a forced
// command: the exact quoting of plain and hostile original commands, that
// the original decodes back byte for byte with nothing outside the quotes,
// and what is refused.
func TestForcedCommandUnit(t *testing.T) {
	const force = "/usr/local/bin/only-this --flag 'x'"
	const tail = "; export SSH_ORIGINAL_COMMAND; " + force
	huge := strings.Repeat(`'\`, 1<<16)
	var allBytes strings.Builder
	for c := 1; c < 256; c++ {
		allBytes.WriteByte(byte(c))
	}
	tests := []struct {
		name string
		req  *ssh.Request
		// want is the exact command line; "" checks only the round trip.
		want string
		// refused means forcedCommand reports false.
		refused bool
	}{
		{name: "plain", req: execReq("ls -l"), want: "SSH_ORIGINAL_COMMAND='ls -l'" + tail},
		{name: "empty", req: execReq(""), want: "SSH_ORIGINAL_COMMAND=''" + tail},
		{name: "single quote", req: execReq("it's"), want: `SSH_ORIGINAL_COMMAND='it'\''s'` + tail},
		{name: "backslash", req: execReq(`a\b`), want: `SSH_ORIGINAL_COMMAND='a'\\'b'` + tail},
		{name: "quotes only", req: execReq("''"), want: `SSH_ORIGINAL_COMMAND=''\'''\'''` + tail},
		{name: "repeated separators", req: execReq(";;;&&||"), want: "SSH_ORIGINAL_COMMAND=';;;&&||'" + tail},
		{name: "breakout attempt", req: execReq(`'; rm -rf / #`), want: `SSH_ORIGINAL_COMMAND=''\''; rm -rf / #'` + tail},
		{name: "control characters", req: execReq("a\x1b[2J\r\nb\x7f"), want: "SSH_ORIGINAL_COMMAND='a\x1b[2J\r\nb\x7f'" + tail},
		{name: "substitutions", req: execReq("$(id) `id` ${HOME}")},
		{name: "every byte but NUL", req: execReq(allBytes.String())},
		{name: "invalid UTF-8", req: execReq("\xff\xfe'\\")},
		{name: "huge", req: execReq(huge)},
		{name: "NUL", req: execReq("ls\x00; id"), refused: true},
		{name: "NUL alone", req: execReq("\x00"), refused: true},
		{name: "no payload", req: &ssh.Request{Type: reqExec}, refused: true},
		{name: "short payload", req: &ssh.Request{Type: reqExec, Payload: []byte{0, 0, 1, 0, 'x'}}, refused: true},
		{name: "trailing bytes", req: &ssh.Request{Type: reqExec, Payload: append(ssh.Marshal(struct{ Command string }{"ls"}), 0)}, refused: true},
		{name: "shell", req: &ssh.Request{Type: reqShell}, want: force},
		{name: "shell with a payload", req: &ssh.Request{Type: reqShell, Payload: []byte("junk")}, want: force},
		{name: "subsystem", req: subsystemReq("sftp"), want: force},
		{name: "malformed subsystem", req: &ssh.Request{Type: reqSubsystem, Payload: []byte{9}}, want: force},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, ok := forcedCommand(force, tc.req)
			if tc.refused {
				if ok || cmd != "" {
					t.Fatalf("got %q, %v; want refused", cmd, ok)
				}
				return
			}
			if !ok {
				t.Fatal("got refused, want a command line")
			}
			if tc.want != "" && cmd != tc.want {
				t.Errorf("got %q, want %q", cmd, tc.want)
			}
			if tc.req.Type != reqExec {
				return
			}
			var p struct{ Command string }
			if err := ssh.Unmarshal(tc.req.Payload, &p); err != nil {
				t.Fatal(err)
			}
			value, rest, ok := forcedValue(cmd)
			if !ok || value != p.Command || rest != tail {
				t.Errorf("decoded %v: value of %d bytes (equal: %v), then %.60q; want the original, then %q", ok, len(value), value == p.Command, rest, tail)
			}
		})
	}
}

// TestForcedRewriteUnit checks what the guard does to a session request
// when the person's key or certificate forces a command: shell, exec and
// subsystem requests become an exec of the forced command, needing exec
// (scp's argv and sftp do not get their own capabilities then), and other
// requests pass unchanged.
func TestForcedRewriteUnit(t *testing.T) {
	const force = "backup-only"
	forced := auth.Restrictions{By: "your key entry", ForceCommand: force}
	allowAll := &config.Config{Policies: []config.Policy{{
		Users: []string{"alice"}, Targets: []string{"web-1"}, OSUsers: []string{"ec2-user"},
		Allow: []string{config.CapPortForwarding, config.CapAgentForwarding, config.CapX11},
	}}}
	noExec := &config.Config{Policies: []config.Policy{{
		Users: []string{"alice"}, Targets: []string{"web-1"}, OSUsers: []string{"ec2-user"},
		Deny: []string{config.CapExec},
	}}}
	tests := []struct {
		name string
		cfg  *config.Config
		req  *ssh.Request
		ok   bool
		// typ and cmd are the request after the guard; cmd "" means the
		// payload is unchanged.
		typ, cmd string
		asked    string
	}{
		{name: "shell", cfg: allowAll, req: &ssh.Request{Type: reqShell}, ok: true, typ: reqExec, cmd: force},
		{name: "exec", cfg: allowAll, req: execReq("rm -rf /"), ok: true, typ: reqExec, cmd: wantForced(force, "rm -rf /")},
		{name: "exec with a quote", cfg: allowAll, req: execReq("'; id"), ok: true, typ: reqExec, cmd: wantForced(force, "'; id")},
		{name: "sftp", cfg: allowAll, req: subsystemReq("sftp"), ok: true, typ: reqExec, cmd: force},
		{name: "scp without exec", cfg: noExec, req: execReq("scp -t /tmp/x"), typ: reqExec, cmd: wantForced(force, "scp -t /tmp/x"), asked: config.CapExec},
		{name: "sftp without exec", cfg: noExec, req: subsystemReq("sftp"), typ: reqExec, cmd: force, asked: config.CapExec},
		{name: "shell without exec", cfg: noExec, req: &ssh.Request{Type: reqShell}, typ: reqExec, cmd: force, asked: config.CapExec},
		{name: "exec with a NUL", cfg: allowAll, req: execReq("a\x00b"), typ: reqExec},
		{name: "malformed exec", cfg: allowAll, req: &ssh.Request{Type: reqExec, Payload: []byte{1}}, typ: reqExec},
		{name: "pty unchanged", cfg: allowAll, req: &ssh.Request{Type: reqPTY, Payload: []byte("pty")}, ok: true, typ: reqPTY},
		{name: "env unchanged", cfg: allowAll, req: &ssh.Request{Type: "env", Payload: []byte("env")}, ok: true, typ: "env"},
		{name: "agent unchanged", cfg: allowAll, req: &ssh.Request{Type: reqAgent}, ok: true, typ: reqAgent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, asked := askedGuard(tc.cfg, forced)
			before := string(tc.req.Payload)
			ok, msg := g.allowRequest(fromPerson, chanSession, tc.req)
			if ok != tc.ok || tc.req.Type != tc.typ {
				t.Fatalf("got %v %q, type %s; want %v, type %s", ok, msg, tc.req.Type, tc.ok, tc.typ)
			}
			if tc.cmd == "" {
				if string(tc.req.Payload) != before {
					t.Errorf("payload changed to %q, want it unchanged", tc.req.Payload)
				}
			} else {
				var p struct{ Command string }
				if err := ssh.Unmarshal(tc.req.Payload, &p); err != nil || p.Command != tc.cmd {
					t.Errorf("got command %q (%v), want %q", p.Command, err, tc.cmd)
				}
			}
			if got := strings.Join(*asked, ","); got != tc.asked {
				t.Errorf("refused %q, want %q", got, tc.asked)
			}
		})
	}
	// Without a forced command, the same request is left alone.
	g, _ := askedGuard(allowAll, auth.Restrictions{})
	req := &ssh.Request{Type: reqShell}
	if ok, msg := g.allowRequest(fromPerson, chanSession, req); !ok || req.Type != reqShell || req.Payload != nil {
		t.Errorf("shell without a forced command: got %v %q, type %s, payload %q; want it allowed and unchanged", ok, msg, req.Type, req.Payload)
	}
}
