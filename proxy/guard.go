package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"bastion/auth"
	"bastion/config"
)

// policyGuard is the guard of one link: it asks the policy, and then the
// restrictions of the person's certificate or key line, about every
// channel and request that needs a capability. Each decision reads the
// rules in force at that moment, never a copy taken when the link began, so
// that a reload reaches live links (a ControlMaster's new -L included).
type policyGuard struct {
	// rules returns the rules in force now.
	rules func() *Rules
	// base is the request for this link: identity, target and OS user. The
	// identity is brought up to date (auth.Authenticator.Current) at each
	// decision.
	base auth.Request
	// typed is the target name as the person typed it, for messages.
	typed string
	// denied is told of every refusal, for the audit log.
	denied func(capability, reason string)
}

// identity returns the person's identity as the rules in force see it.
func (g *policyGuard) identity(rules *Rules) auth.Identity {
	return rules.Auth.Current(g.base.Identity)
}

// check asks the policy in force, then the person's restrictions, about
// one capability and returns the message for a refusal.
func (g *policyGuard) check(capability, dest string) (bool, string) {
	return g.decide(capability, dest, false)
}

// decide is check; listen says that dest is the listening address of a
// remote forward rather than a local forward's destination.
func (g *policyGuard) decide(capability, dest string, listen bool) (bool, string) {
	rules := g.rules()
	r := g.base
	r.Identity = g.identity(rules)
	r.Capability, r.Dest = capability, dest
	if capability == auth.CapPTY {
		// No policy capability: a pty comes with the login.
		r.Capability = ""
	}
	d := rules.Policy.Authorize(r)
	if d.Allow {
		d = kindDecision(rules.Policy, r)
	}
	if d.Allow {
		d = r.Identity.Restrictions.Allow(capability, dest, listen)
	}
	if d.Allow {
		return true, ""
	}
	g.denied(capability, d.Reason)
	return false, fmt.Sprintf("bastion: %s: %s", g.typed, d.Reason)
}

func (g *policyGuard) allowChannel(dir direction, typ string, extra []byte) (bool, string) {
	if dir == fromPerson {
		switch typ {
		case chanSession:
			return true, ""
		case chanDirectTCPIP, chanDirectStreamlocal:
			dest, _, ok := channelDest(typ, extra)
			if !ok {
				return false, "bastion: malformed " + strings.TrimSuffix(typ, "@openssh.com") + " request"
			}
			return g.check(config.CapPortForwarding, dest)
		}
		return false, fmt.Sprintf("bastion: %s: channel type %s is not supported", g.typed, typ)
	}
	switch typ {
	case chanForwardedTCPIP, chanForwardedStreamloc:
		// The forward was checked when it was requested; each
		// connection it brings is checked again against the rules in
		// force now.
		return g.check(config.CapPortForwarding, "")
	case chanAgent:
		return g.check(config.CapAgentForwarding, "")
	case chanX11:
		return g.check(config.CapX11, "")
	}
	return false, "unsupported channel type"
}

func (g *policyGuard) allowRequest(dir direction, chanType string, req *ssh.Request) (bool, string) {
	if dir == fromUpstream || chanType != chanSession {
		return true, ""
	}
	switch req.Type {
	case reqShell, reqExec, reqSubsystem:
		if force := g.identity(g.rules()).Restrictions.ForceCommand; force != "" {
			// As sshd does for a forced command: whatever was asked, the
			// forced command runs (the splice sends the rewritten
			// request), with an exec's command line in
			// SSH_ORIGINAL_COMMAND.
			cmd, ok := forcedCommand(force, req)
			if !ok {
				return false, "bastion: malformed " + req.Type + " request"
			}
			req.Type = reqExec
			req.Payload = ssh.Marshal(struct{ Command string }{cmd})
			return g.check(config.CapExec, "")
		}
	}
	switch req.Type {
	case reqPTY:
		return g.check(auth.CapPTY, "")
	case reqShell:
		return g.check(config.CapShell, "")
	case reqExec:
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			return false, "bastion: malformed exec request"
		}
		return g.check(execCapability(p.Command), "")
	case reqSubsystem:
		var p struct{ Name string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			return false, "bastion: malformed subsystem request"
		}
		if p.Name == "sftp" {
			return g.check(config.CapSFTP, "")
		}
		return g.check(config.CapExec, "")
	case reqAgent:
		return g.check(config.CapAgentForwarding, "")
	case reqX11:
		return g.check(config.CapX11, "")
	}
	return true, ""
}

// forcedCommand returns the command line that runs force in place of req
// (a shell, exec or subsystem request), and whether req parsed. sshd sets
// SSH_ORIGINAL_COMMAND to an exec's command line; the instance's sshd would
// refuse it as an env request, so the command line assigns and exports it
// first, in POSIX shell syntax, quoted so that the original command is
// only ever data. Each quote and backslash of it is written outside the
// single quotes, so that no shell's single-quote rules (fish's included)
// can end the quoted text early:
//
//	ssh host "it's a\b"  →  SSH_ORIGINAL_COMMAND='it'\''s a'\\'b'; export SSH_ORIGINAL_COMMAND; FORCE
//
// A shell or subsystem request runs force alone.
func forcedCommand(force string, req *ssh.Request) (string, bool) {
	if req.Type != reqExec {
		return force, true
	}
	var p struct{ Command string }
	if err := ssh.Unmarshal(req.Payload, &p); err != nil || strings.IndexByte(p.Command, 0) >= 0 {
		// sshd refuses a command line with a NUL too.
		return "", false
	}
	quoted := "'" + strings.NewReplacer(`'`, `'\''`, `\`, `'\\'`).Replace(p.Command) + "'"
	return "SSH_ORIGINAL_COMMAND=" + quoted + "; export SSH_ORIGINAL_COMMAND; " + force, true
}

// execCapability returns the capability a command line needs: exactly the
// remote end of a legacy scp transfer (parseSCPServer) is CapSCP; anything
// else, a command line that merely begins with scp included, is CapExec.
func execCapability(cmd string) string {
	if _, ok := parseSCPServer(cmd); ok {
		return config.CapSCP
	}
	return config.CapExec
}

func (g *policyGuard) allowGlobal(dir direction, req *ssh.Request) bool {
	if dir == fromUpstream {
		// The instance's host keys describe the instance, not the host
		// certificate the person trusts: never relay them.
		return req.Type == reqKeepalive
	}
	switch req.Type {
	case reqKeepalive, reqNoMoreSessions:
		return true
	case reqTCPIPForward, reqCancelTCPIPForward, reqStreamlocalForward, reqCancelStreamlocalFwd:
		dest, ok := listenDest(req)
		if !ok {
			return false
		}
		ok, _ = g.decide(config.CapPortForwarding, dest, true)
		return ok
	}
	return false
}

// tcpipChannel is the extra data of direct-tcpip and forwarded-tcpip
// channels (RFC 4254 §7.2): where to connect (or where the connection
// came in) and where it came from.
type tcpipChannel struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// channelDest returns the destination (host:port, or a socket path) and the
// origin of a forwarding channel from its extra data (RFC 4254 §7.2,
// OpenSSH PROTOCOL §2.4), and whether the data parsed.
func channelDest(typ string, extra []byte) (dest, origin string, ok bool) {
	switch typ {
	case chanDirectTCPIP, chanForwardedTCPIP:
		var p tcpipChannel
		if ssh.Unmarshal(extra, &p) != nil {
			return "", "", false
		}
		return net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))), net.JoinHostPort(p.OrigHost, strconv.Itoa(int(p.OrigPort))), true
	case chanDirectStreamlocal, chanForwardedStreamloc:
		var p struct {
			Path string
			Rest []byte `ssh:"rest"`
		}
		if ssh.Unmarshal(extra, &p) != nil {
			return "", "", false
		}
		return p.Path, "", true
	}
	return "", "", false
}

// listenDest returns the address a tcpip-forward or streamlocal-forward
// request (or its cancel) names (RFC 4254 §7.1, OpenSSH PROTOCOL §2.4),
// and whether the payload parsed.
func listenDest(req *ssh.Request) (string, bool) {
	switch req.Type {
	case reqTCPIPForward, reqCancelTCPIPForward:
		var p struct {
			Addr string
			Port uint32
		}
		if ssh.Unmarshal(req.Payload, &p) != nil {
			return "", false
		}
		return net.JoinHostPort(p.Addr, strconv.Itoa(int(p.Port))), true
	case reqStreamlocalForward, reqCancelStreamlocalFwd:
		var p struct{ Path string }
		if ssh.Unmarshal(req.Payload, &p) != nil {
			return "", false
		}
		return p.Path, true
	}
	return "", false
}
