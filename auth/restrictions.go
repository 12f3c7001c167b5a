package auth

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"

	"bastion/config"
)

// CapPTY names a pty for Restrictions.Allow. Policies grant no pty as such
// (it comes with a shell or an exec); certificates and key options can
// take it away.
const CapPTY = "pty"

// Restrictions are what a user certificate's extensions and critical
// options, or the authorized_keys options of a key's line, take away from
// what the policy grants. They apply on top of the policy, in every mode,
// as sshd applies them. The zero value restricts nothing.
type Restrictions struct {
	// By names the source for messages: "your certificate" or "your key
	// entry".
	By string
	// NoPortForwarding, NoAgentForwarding, NoPTY and NoX11Forwarding take
	// the capability away.
	NoPortForwarding, NoAgentForwarding, NoPTY, NoX11Forwarding bool
	// ForceCommand is the only command the person may run (force-command,
	// command=): every shell, exec and subsystem request runs it instead.
	ForceCommand string
	// PermitOpen, if not nil, lists the only host:port destinations of
	// local forwards (permitopen=); "*" as the host or port matches any.
	PermitOpen []string
	// PermitListen, if not nil, lists the only host:port listeners of
	// remote forwards (permitlisten=); the host is a pattern (* and ?),
	// "*" as the port matches any.
	PermitListen []string
}

// Allow decides whether the restrictions let the person use capability
// (towards dest, a host:port or socket path, for CapPortForwarding; dest is
// a listening address when listen is set). Capabilities the restrictions
// know nothing of are allowed: the policy decides them.
func (r Restrictions) Allow(capability, dest string, listen bool) Decision {
	no := func(what string) Decision { return Decision{Reason: fmt.Sprintf("%s does not permit %s", r.By, what)} }
	switch capability {
	case config.CapPortForwarding:
		if r.NoPortForwarding {
			return no("port forwarding")
		}
		list := r.PermitOpen
		if listen {
			list = r.PermitListen
		}
		if list != nil && dest != "" && !permitted(list, dest, listen) {
			return no("port forwarding to " + dest)
		}
	case config.CapAgentForwarding:
		if r.NoAgentForwarding {
			return no("agent forwarding")
		}
	case config.CapX11:
		if r.NoX11Forwarding {
			return no("X11 forwarding")
		}
	case CapPTY:
		if r.NoPTY {
			return no("a pty")
		}
	}
	return Decision{Allow: true}
}

// permitted reports whether dest (host:port) matches an entry of list as
// sshd matches permitopen (hosts literally, no lookup, or "*") and
// permitlisten (hosts by pattern); ports equal or "*". A socket path
// matches nothing.
func permitted(list []string, dest string, listen bool) bool {
	host, port, err := net.SplitHostPort(dest)
	if err != nil {
		return false
	}
	for _, e := range list {
		eh, ep, err := net.SplitHostPort(e)
		if err != nil || (ep != "*" && ep != port) {
			continue
		}
		if eh == "*" || eh == host || (listen && wildcard(eh, host)) {
			return true
		}
	}
	return false
}

// keyRestrictions turns a key line's options into restrictions.
func keyRestrictions(o config.KeyOptions) Restrictions {
	return Restrictions{
		By:                "your key entry",
		NoPortForwarding:  o.NoPortForwarding,
		NoAgentForwarding: o.NoAgentForwarding,
		NoPTY:             o.NoPTY,
		NoX11Forwarding:   o.NoX11Forwarding,
		ForceCommand:      o.Command,
		PermitOpen:        o.PermitOpen,
		PermitListen:      o.PermitListen,
	}
}

// certRestrictions turns a user certificate's extensions and force-command
// into restrictions. As sshd: a permit-* extension that is absent is
// denied (ssh-keygen -O clear, -O no-pty, …); unknown extensions are
// ignored.
func certRestrictions(cert *ssh.Certificate) Restrictions {
	has := func(ext string) bool { _, ok := cert.Extensions[ext]; return ok }
	return Restrictions{
		By:                "your certificate",
		NoPortForwarding:  !has("permit-port-forwarding"),
		NoAgentForwarding: !has("permit-agent-forwarding"),
		NoPTY:             !has("permit-pty"),
		NoX11Forwarding:   !has("permit-X11-forwarding"),
		ForceCommand:      cert.CriticalOptions["force-command"],
	}
}

// checkFrom checks remote against a key line's from= patterns as sshd does
// without UseDNS (match_host_and_ip on the address): each pattern is an
// address/masklen, an address, or a wildcard pattern (* and ?) matched
// against the address text, optionally negated with '!'. A negated match
// refuses; otherwise some pattern must match.
func checkFrom(patterns []string, remote net.Addr) error {
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return errors.New("from: remote address is not TCP")
	}
	ip := tcp.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	text := ip.String()
	match := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		var m bool
		if _, n, err := net.ParseCIDR(p); err == nil {
			m = n.Contains(ip)
		} else if pip := net.ParseIP(p); pip != nil {
			m = pip.Equal(ip)
		} else {
			m = wildcard(strings.ToLower(p), strings.ToLower(text))
		}
		if m && neg {
			return fmt.Errorf("from: %s is excluded by !%s", text, p)
		}
		match = match || m
	}
	if !match {
		return fmt.Errorf("from: %s matches none of %s", text, strings.Join(patterns, ","))
	}
	return nil
}

// wildcard matches s against an OpenSSH pattern: * matches any run of
// characters, ? one character, everything else itself.
func wildcard(pattern, s string) bool {
	// path.Match also knows [classes] and \ escapes, which OpenSSH's
	// match_pattern does not: quote them so they match themselves.
	var b strings.Builder
	for _, r := range pattern {
		if r == '[' || r == ']' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	ok, err := path.Match(b.String(), s)
	return err == nil && ok
}
