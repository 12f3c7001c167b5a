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

// policyGuard is the guard of one link: it asks the policy about every
// channel and request that needs a capability. Each decision reads the
// rules in force at that moment, never a copy taken when the link began, so
// that a reload reaches live links (a ControlMaster's new -L included).
type policyGuard struct {
	// rules returns the rules in force now.
	rules func() *Rules
	// base is the request for this link: identity, target and OS user. The
	// identity's groups are re-read from the rules at each decision.
	base auth.Request
	// typed is the target name as the person typed it, for messages.
	typed string
	// force is the only command the person may run (a certificate's
	// force-command): every shell, exec and subsystem request becomes an
	// exec of it.
	force string
	// denied is told of every refusal, for the audit log.
	denied func(capability, reason string)
}

// check asks the policy in force about one capability and returns the
// message for a refusal.
func (g *policyGuard) check(capability, dest string) (bool, string) {
	rules := g.rules()
	r := g.base
	r.Capability = capability
	r.Dest = dest
	r.Identity.Groups = rules.Auth.Groups(r.Identity.User)
	d := rules.Policy.Authorize(r)
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
		if g.force != "" {
			// As sshd does for ForceCommand: whatever was asked, the
			// forced command runs (the splice sends the rewritten
			// request).
			req.Type = reqExec
			req.Payload = ssh.Marshal(struct{ Command string }{g.force})
			return g.check(config.CapExec, "")
		}
	}
	switch req.Type {
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
		ok, _ = g.check(config.CapPortForwarding, dest)
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
