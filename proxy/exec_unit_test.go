package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"bastion/auth"
	"bastion/config"
)

// askedGuard returns a guard for alice on web-1 as ec2-user under the
// policies of cfg, with restrictions r, and the capabilities it was refused
// so far, in order.
func askedGuard(cfg *config.Config, r auth.Restrictions) (*policyGuard, *[]string) {
	rules := &Rules{Auth: auth.NewAuthenticator(cfg), Policy: auth.NewPolicy(cfg)}
	var asked []string
	return &policyGuard{
		rules: func() *Rules { return rules },
		base: auth.Request{
			Identity: auth.Identity{User: "alice", Restrictions: r},
			Target:   auth.Target{Provider: "static", Name: "web-1", ID: "web-1"},
			OSUser:   "ec2-user",
		},
		typed:  "web-1",
		denied: func(capability, _ string) { asked = append(asked, capability) },
	}, &asked
}

// execReq returns an exec request for cmd.
func execReq(cmd string) *ssh.Request {
	return &ssh.Request{Type: reqExec, Payload: ssh.Marshal(struct{ Command string }{cmd})}
}

// subsystemReq returns a subsystem request for name.
func subsystemReq(name string) *ssh.Request {
	return &ssh.Request{Type: reqSubsystem, Payload: ssh.Marshal(struct{ Name string }{name})}
}

// TestExecCapabilityUnit checks which capability each session request of
// the person needs. No policy grants anything, so every request that needs
// one is refused and the refusal names it; a request that needs none
// passes without asking; a malformed one is refused without asking.
func TestExecCapabilityUnit(t *testing.T) {
	hugePath := "/tmp/" + strings.Repeat("x", 1<<20)
	tests := []struct {
		name     string
		dir      direction
		chanType string
		req      *ssh.Request
		// want is the capability asked for; "" means none.
		want string
		// malformed means refused without asking.
		malformed bool
	}{
		{name: "shell", req: &ssh.Request{Type: reqShell}, want: config.CapShell},
		{name: "exec", req: execReq("uname -a"), want: config.CapExec},
		{name: "scp upload", req: execReq("scp -t /tmp/x"), want: config.CapSCP},
		{name: "scp download with flags", req: execReq("scp -r -p -f dir"), want: config.CapSCP},
		{name: "scp then a command", req: execReq("scp -t x; id"), want: config.CapExec},
		{name: "scp with a leading space", req: execReq(" scp -t x"), want: config.CapExec},
		{name: "scp with repeated spaces", req: execReq("scp  -t x"), want: config.CapExec},
		{name: "scp with a repeated flag", req: execReq("scp -r -r -t x"), want: config.CapExec},
		{name: "scp by path", req: execReq("/usr/bin/scp -t x"), want: config.CapExec},
		{name: "scp with an escape", req: execReq("scp -t x\x1b[2J"), want: config.CapExec},
		{name: "scp with a NUL", req: execReq("scp -t x\x00; id"), want: config.CapExec},
		{name: "scp with invalid UTF-8", req: execReq("scp -t \xff"), want: config.CapExec},
		{name: "scp with a huge path", req: execReq("scp -t " + hugePath), want: config.CapSCP},
		{name: "empty command", req: execReq(""), want: config.CapExec},
		{name: "huge command", req: execReq(strings.Repeat("scp ", 1<<18)), want: config.CapExec},
		{name: "exec without payload", req: &ssh.Request{Type: reqExec}, malformed: true},
		{name: "exec with a short payload", req: &ssh.Request{Type: reqExec, Payload: []byte{0, 0, 0, 9, 'l', 's'}}, malformed: true},
		{name: "exec with trailing bytes", req: &ssh.Request{Type: reqExec, Payload: append(ssh.Marshal(struct{ Command string }{"ls"}), 'x')}, malformed: true},
		{name: "sftp", req: subsystemReq("sftp"), want: config.CapSFTP},
		{name: "sftp in capitals", req: subsystemReq("SFTP"), want: config.CapExec},
		{name: "sftp with a space", req: subsystemReq("sftp "), want: config.CapExec},
		{name: "other subsystem", req: subsystemReq("netconf"), want: config.CapExec},
		{name: "empty subsystem", req: subsystemReq(""), want: config.CapExec},
		{name: "subsystem without payload", req: &ssh.Request{Type: reqSubsystem}, malformed: true},
		{name: "pty", req: &ssh.Request{Type: reqPTY}, want: auth.CapPTY},
		{name: "agent", req: &ssh.Request{Type: reqAgent}, want: config.CapAgentForwarding},
		{name: "x11", req: &ssh.Request{Type: reqX11}, want: config.CapX11},
		{name: "env", req: &ssh.Request{Type: "env"}},
		{name: "window change", req: &ssh.Request{Type: "window-change"}},
		{name: "signal", req: &ssh.Request{Type: "signal"}},
		{name: "unknown request", req: &ssh.Request{Type: "exec\x00x"}},
		{name: "empty request type", req: &ssh.Request{Type: ""}},
		{name: "exec from upstream", dir: fromUpstream, req: execReq("id")},
		{name: "exec on a forward", chanType: chanDirectTCPIP, req: execReq("id")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, asked := askedGuard(&config.Config{}, auth.Restrictions{})
			chanType := tc.chanType
			if chanType == "" {
				chanType = chanSession
			}
			ok, msg := g.allowRequest(tc.dir, chanType, tc.req)
			switch {
			case tc.malformed:
				if ok || len(*asked) != 0 || msg != "bastion: malformed "+tc.req.Type+" request" {
					t.Errorf("got %v %q, asked %v; want refused as malformed without asking", ok, msg, *asked)
				}
			case tc.want == "":
				if !ok || len(*asked) != 0 {
					t.Errorf("got %v %q, asked %v; want allowed without asking", ok, msg, *asked)
				}
			default:
				if ok || len(*asked) != 1 || (*asked)[0] != tc.want {
					t.Errorf("got %v, asked %v; want refused, asked [%s]", ok, *asked, tc.want)
				}
				if !strings.HasPrefix(msg, "bastion: web-1: ") {
					t.Errorf("got message %q, want it to begin with the target", msg)
				}
			}
		})
	}
}

// TestExecCapabilityGrantsUnit checks the classification against a policy
// that denies exec and shell: scp's exact server argv and sftp still run,
// and nothing that merely looks like them does.
func TestExecCapabilityGrantsUnit(t *testing.T) {
	cfg := &config.Config{Policies: []config.Policy{{
		Users: []string{"alice"}, Targets: []string{"web-1"}, OSUsers: []string{"ec2-user"},
		Deny: []string{config.CapExec, config.CapShell},
	}}}
	tests := []struct {
		name string
		req  *ssh.Request
		ok   bool
	}{
		{"scp", execReq("scp -t /tmp/x"), true},
		{"scp with -- and a dash path", execReq("scp -f -- -x"), true},
		{"sftp", subsystemReq("sftp"), true},
		{"pty", &ssh.Request{Type: reqPTY}, true},
		{"shell", &ssh.Request{Type: reqShell}, false},
		{"exec", execReq("id"), false},
		{"scp then sh", execReq("scp -t x && sh"), false},
		{"scp in a subshell", execReq("scp -t $(id)"), false},
		{"scp then a newline", execReq("scp -t x\nid"), false},
		{"other subsystem", subsystemReq("sftp\x00"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, asked := askedGuard(cfg, auth.Restrictions{})
			if ok, msg := g.allowRequest(fromPerson, chanSession, tc.req); ok != tc.ok {
				t.Errorf("got %v %q (refused %v), want %v", ok, msg, *asked, tc.ok)
			}
		})
	}
}

// tcpipExtra returns the extra data of a direct-tcpip or forwarded-tcpip
// channel to host:port.
func tcpipExtra(host string, port uint32) []byte {
	return ssh.Marshal(tcpipChannel{Host: host, Port: port, OrigHost: "127.0.0.1", OrigPort: 5000})
}

// TestChannelCapabilityUnit checks which capability each channel type
// needs, from either side, under a policy that grants nothing.
func TestChannelCapabilityUnit(t *testing.T) {
	tests := []struct {
		name  string
		dir   direction
		typ   string
		extra []byte
		// want is the capability asked for; "" means none.
		want string
		// ok is the verdict when nothing is asked.
		ok bool
		// msg is part of the refusal when nothing is asked.
		msg string
	}{
		{name: "session", typ: chanSession, ok: true},
		{name: "local forward", typ: chanDirectTCPIP, extra: tcpipExtra("10.0.0.1", 5432), want: config.CapPortForwarding},
		{name: "local forward to a huge host", typ: chanDirectTCPIP, extra: tcpipExtra(strings.Repeat("h", 1<<16), 1), want: config.CapPortForwarding},
		{name: "local forward to a control character", typ: chanDirectTCPIP, extra: tcpipExtra("h\x1b", 1), want: config.CapPortForwarding},
		{name: "local forward malformed", typ: chanDirectTCPIP, extra: []byte{1, 2}, msg: "bastion: malformed direct-tcpip request"},
		{name: "local forward empty", typ: chanDirectTCPIP, msg: "bastion: malformed direct-tcpip request"},
		{name: "socket forward", typ: chanDirectStreamlocal, extra: ssh.Marshal(struct {
			Path, Host string
			Port       uint32
		}{"/run/x.sock", "", 0}), want: config.CapPortForwarding},
		{name: "socket forward malformed", typ: chanDirectStreamlocal, extra: []byte{0, 0, 0, 99}, msg: "bastion: malformed direct-streamlocal request"},
		{name: "person opens x11", typ: chanX11, msg: "channel type x11 is not supported"},
		{name: "person opens agent", typ: chanAgent, msg: "is not supported"},
		{name: "person opens forwarded-tcpip", typ: chanForwardedTCPIP, msg: "is not supported"},
		{name: "person opens an unknown type", typ: "session\x1b", msg: "is not supported"},
		{name: "person opens an empty type", typ: "", msg: "is not supported"},
		{name: "remote forward connection", dir: fromUpstream, typ: chanForwardedTCPIP, want: config.CapPortForwarding},
		{name: "remote socket forward connection", dir: fromUpstream, typ: chanForwardedStreamloc, want: config.CapPortForwarding},
		{name: "instance asks for the agent", dir: fromUpstream, typ: chanAgent, want: config.CapAgentForwarding},
		{name: "instance opens x11", dir: fromUpstream, typ: chanX11, want: config.CapX11},
		{name: "instance opens a session", dir: fromUpstream, typ: chanSession, msg: "unsupported channel type"},
		{name: "instance opens direct-tcpip", dir: fromUpstream, typ: chanDirectTCPIP, msg: "unsupported channel type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, asked := askedGuard(&config.Config{}, auth.Restrictions{})
			ok, msg := g.allowChannel(tc.dir, tc.typ, tc.extra)
			if tc.want != "" {
				if ok || len(*asked) != 1 || (*asked)[0] != tc.want {
					t.Errorf("got %v %q, asked %v; want refused, asked [%s]", ok, msg, *asked, tc.want)
				}
				return
			}
			if ok != tc.ok || len(*asked) != 0 || !strings.Contains(msg, tc.msg) {
				t.Errorf("got %v %q, asked %v; want %v %q without asking", ok, msg, *asked, tc.ok, tc.msg)
			}
		})
	}
}

// TestGlobalCapabilityUnit checks the global requests each side may send:
// the person's forwards need port_forwarding, keepalives pass, and the
// instance's host keys never reach the person.
func TestGlobalCapabilityUnit(t *testing.T) {
	fwd := func(typ, addr string, port uint32) *ssh.Request {
		return &ssh.Request{Type: typ, Payload: ssh.Marshal(struct {
			Addr string
			Port uint32
		}{addr, port})}
	}
	tests := []struct {
		name string
		dir  direction
		req  *ssh.Request
		ok   bool
		want string
	}{
		{name: "keepalive", req: &ssh.Request{Type: reqKeepalive}, ok: true},
		{name: "no more sessions", req: &ssh.Request{Type: reqNoMoreSessions}, ok: true},
		{name: "remote forward", req: fwd(reqTCPIPForward, "0.0.0.0", 8080), want: config.CapPortForwarding},
		{name: "cancel remote forward", req: fwd(reqCancelTCPIPForward, "", 8080), want: config.CapPortForwarding},
		{name: "socket forward", req: &ssh.Request{Type: reqStreamlocalForward, Payload: ssh.Marshal(struct{ Path string }{"/tmp/s"})}, want: config.CapPortForwarding},
		{name: "remote forward malformed", req: &ssh.Request{Type: reqTCPIPForward, Payload: []byte{0}}},
		{name: "remote forward empty", req: &ssh.Request{Type: reqTCPIPForward}},
		{name: "host keys from the person", req: &ssh.Request{Type: reqHostkeys}},
		{name: "unknown from the person", req: &ssh.Request{Type: "x@example.com"}},
		{name: "keepalive from the instance", dir: fromUpstream, req: &ssh.Request{Type: reqKeepalive}, ok: true},
		{name: "host keys from the instance", dir: fromUpstream, req: &ssh.Request{Type: reqHostkeys}},
		{name: "forward from the instance", dir: fromUpstream, req: fwd(reqTCPIPForward, "", 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, asked := askedGuard(&config.Config{}, auth.Restrictions{})
			ok := g.allowGlobal(tc.dir, tc.req)
			var want []string
			if tc.want != "" {
				want = []string{tc.want}
			}
			if ok != tc.ok || strings.Join(*asked, ",") != strings.Join(want, ",") {
				t.Errorf("got %v, asked %v; want %v, asked %v", ok, *asked, tc.ok, want)
			}
		})
	}
}

// TestGuardReadsRulesNowUnit checks what policyGuard's doc promises: each
// decision reads the rules in force at that moment, so that a reload
// reaches a live link, the person's key line options included.
func TestGuardReadsRulesNowUnit(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	rulesFor := func(deny []string, opts config.KeyOptions) *Rules {
		cfg := &config.Config{
			Users: []config.User{{Name: "alice", PublicKeys: []ssh.PublicKey{key}, KeyOptions: []config.KeyOptions{opts}}},
			Policies: []config.Policy{{
				Users: []string{"alice"}, Targets: []string{"web-1"}, OSUsers: []string{"ec2-user"},
				Allow: []string{config.CapPortForwarding}, Deny: deny,
			}},
		}
		return &Rules{Auth: auth.NewAuthenticator(cfg), Policy: auth.NewPolicy(cfg)}
	}
	current := rulesFor(nil, config.KeyOptions{})
	g := &policyGuard{
		rules: func() *Rules { return current },
		base: auth.Request{
			Identity: auth.Identity{User: "alice", KeyFingerprint: ssh.FingerprintSHA256(key)},
			Target:   auth.Target{Provider: "static", Name: "web-1", ID: "web-1"},
			OSUser:   "ec2-user",
		},
		typed:  "web-1",
		denied: func(string, string) {},
	}
	forward := tcpipExtra("10.0.0.1", 22)
	steps := []struct {
		name    string
		rules   *Rules
		exec    bool
		forward bool
		// command is what an exec of "id" becomes.
		command string
	}{
		{"as loaded", current, true, true, "id"},
		{"exec denied", rulesFor([]string{config.CapExec}, config.KeyOptions{}), false, true, "id"},
		{"key line forbids forwarding", rulesFor(nil, config.KeyOptions{NoPortForwarding: true}), true, false, "id"},
		{"key line forces a command", rulesFor(nil, config.KeyOptions{Command: "uptime"}), true, true, wantForced("uptime", "id")},
		{"back as loaded", current, true, true, "id"},
	}
	for _, s := range steps {
		current = s.rules
		req := execReq("id")
		ok, msg := g.allowRequest(fromPerson, chanSession, req)
		var p struct{ Command string }
		ssh.Unmarshal(req.Payload, &p)
		if ok != s.exec || p.Command != s.command {
			t.Errorf("%s: exec got %v %q, command %q; want %v, %q", s.name, ok, msg, p.Command, s.exec, s.command)
		}
		if ok, msg := g.allowChannel(fromPerson, chanDirectTCPIP, forward); ok != s.forward {
			t.Errorf("%s: forward got %v %q, want %v", s.name, ok, msg, s.forward)
		}
	}
}

// wantForced returns the command line that runs force for an exec of cmd.
func wantForced(force, cmd string) string {
	line, _ := forcedCommand(force, execReq(cmd))
	return line
}
