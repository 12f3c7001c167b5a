package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// KeyOptions are the authorized_keys options of one key line (sshd(8),
// AUTHORIZED KEYS FILE FORMAT) that the bastion honours, as sshd would.
// The zero value is a line without options.
type KeyOptions struct {
	// NoPortForwarding, NoAgentForwarding, NoPTY and NoX11Forwarding take
	// the capability away whatever the policy grants (no-port-forwarding,
	// no-agent-forwarding, no-pty, no-X11-forwarding, or restrict without
	// a later port-forwarding, agent-forwarding, pty or X11-forwarding).
	NoPortForwarding, NoAgentForwarding, NoPTY, NoX11Forwarding bool
	// Command is command=: the only command the person may run, whatever
	// they ask for.
	Command string
	// From is from=: the address patterns a login must come from, or nil
	// for any address.
	From []string
	// PermitOpen is permitopen=: the only host:port destinations of local
	// forwards ("*" as the port, or as the host, matches any), or nil for
	// any.
	PermitOpen []string
	// PermitListen is permitlisten=: the only host:port listeners of
	// remote forwards (the host a pattern with * and ?, "*" when the line
	// gave a port alone; "*" as the port matches any), or nil for any.
	PermitListen []string
	// ExpiryTime is expiry-time=: the key is refused from then on; zero
	// for never.
	ExpiryTime time.Time
	// NoTouchRequired is no-touch-required: a security key's signature
	// need not assert user presence.
	NoTouchRequired bool
}

// unsupportedKeyOptions are the authorized_keys options the bastion cannot
// honour as sshd does, with the reason; a key line with one is refused.
var unsupportedKeyOptions = map[string]string{
	"cert-authority":  "list certificate authorities in trusted_user_ca_keys",
	"principals":      "it applies to cert-authority lines only",
	"environment":     "the bastion cannot set environment variables on the instance",
	"tunnel":          "tun forwarding is not supported",
	"user-rc":         "whether ~/.ssh/rc runs is up to the instance's sshd",
	"no-user-rc":      "whether ~/.ssh/rc runs is up to the instance's sshd",
	"verify-required": "the SSH library does not show the server a security key signature's user-verification flag, so it cannot be checked",
}

// maxKeyOptionsLen bounds the option text of one key line; sshd reads a
// line of at most 8 KiB.
const maxKeyOptionsLen = 8 << 10

// ParseKeyOptions parses the options that ssh.ParseAuthorizedKey split off
// a key line, applying them in order as sshd does (so "restrict,pty"
// allows a pty, "pty,restrict" does not). Option names are matched without
// regard to case. An option the bastion does not honour, a malformed value
// or a repeated command= or from= is an error naming the option.
func ParseKeyOptions(opts []string) (KeyOptions, error) {
	var ko KeyOptions
	total := 0
	seen := map[string]bool{}
	for _, o := range opts {
		total += len(o)
		if total > maxKeyOptionsLen {
			return KeyOptions{}, errors.New("key options are longer than 8 KiB")
		}
		name, value, hasValue := strings.Cut(o, "=")
		lname := strings.ToLower(name)
		if why, ok := unsupportedKeyOptions[lname]; ok {
			return KeyOptions{}, fmt.Errorf("key option %s is not supported: %s", clipOption(name), why)
		}
		flag := func(set *bool, restricted bool) error {
			if hasValue {
				return fmt.Errorf("key option %s takes no value", clipOption(name))
			}
			*set = restricted
			return nil
		}
		var err error
		switch lname {
		case "restrict":
			if hasValue {
				return KeyOptions{}, fmt.Errorf("key option %s takes no value", clipOption(name))
			}
			ko.NoPortForwarding, ko.NoAgentForwarding, ko.NoPTY, ko.NoX11Forwarding = true, true, true, true
		case "port-forwarding", "no-port-forwarding":
			err = flag(&ko.NoPortForwarding, lname[0] == 'n')
		case "agent-forwarding", "no-agent-forwarding":
			err = flag(&ko.NoAgentForwarding, lname[0] == 'n')
		case "pty", "no-pty":
			err = flag(&ko.NoPTY, lname[0] == 'n')
		case "x11-forwarding", "no-x11-forwarding":
			err = flag(&ko.NoX11Forwarding, lname[0] == 'n')
		case "no-touch-required":
			err = flag(&ko.NoTouchRequired, true)
		case "command", "from", "permitopen", "permitlisten", "expiry-time":
			if !hasValue {
				return KeyOptions{}, fmt.Errorf("key option %s needs a value", clipOption(name))
			}
			var v string
			if v, err = dequoteOption(value); err != nil {
				return KeyOptions{}, fmt.Errorf("key option %s: %w", lname, err)
			}
			if (lname == "command" || lname == "from") && seen[lname] {
				return KeyOptions{}, fmt.Errorf("key option %s is given twice", lname)
			}
			seen[lname] = true
			err = ko.setValue(lname, v)
		default:
			return KeyOptions{}, fmt.Errorf("key option %s is not supported", clipOption(name))
		}
		if err != nil {
			return KeyOptions{}, err
		}
	}
	return ko, nil
}

// setValue sets the option name (lower case) that has a value.
func (ko *KeyOptions) setValue(name, v string) error {
	switch name {
	case "command":
		if strings.IndexByte(v, 0) >= 0 {
			return errors.New("key option command: holds a NUL byte")
		}
		ko.Command = v
	case "from":
		for _, p := range strings.Split(v, ",") {
			if err := checkFromPattern(p); err != nil {
				return fmt.Errorf("key option from: %w", err)
			}
			ko.From = append(ko.From, p)
		}
	case "permitopen":
		host, port, err := splitOptionHostPort(v)
		if err != nil || host == "" || (port != "*" && !validPort(port, 1)) {
			return fmt.Errorf("key option permitopen: %q is not host:port (the port may be *)", clipOption(v))
		}
		ko.PermitOpen = append(ko.PermitOpen, net.JoinHostPort(host, port))
	case "permitlisten":
		// As sshd: a port alone is any host ("*:port"); the instance's
		// GatewayPorts still decides which addresses it binds.
		host, port := "*", v
		if strings.ContainsAny(v, ":]") {
			var err error
			if host, port, err = splitOptionHostPort(v); err != nil {
				return fmt.Errorf("key option permitlisten: %q is not [host:]port", clipOption(v))
			}
		}
		if port != "*" && !validPort(port, 1) {
			return fmt.Errorf("key option permitlisten: %q is not [host:]port (the port may be *)", clipOption(v))
		}
		ko.PermitListen = append(ko.PermitListen, net.JoinHostPort(host, port))
	case "expiry-time":
		t, err := parseExpiryTime(v)
		if err != nil {
			return fmt.Errorf("key option expiry-time: %w", err)
		}
		// As sshd: of several, the earliest counts.
		if ko.ExpiryTime.IsZero() || t.Before(ko.ExpiryTime) {
			ko.ExpiryTime = t
		}
	}
	return nil
}

// dequoteOption returns the value of an option as sshd reads it: in double
// quotes, with \" standing for a quote and every other byte as it is.
func dequoteOption(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		return "", errors.New("value must be in double quotes")
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch {
		case v[i] == '"':
			if i != len(v)-1 {
				return "", errors.New("text after the closing quote")
			}
			return b.String(), nil
		case v[i] == '\\' && i+1 < len(v) && v[i+1] == '"':
			i++
		}
		b.WriteByte(v[i])
	}
	return "", errors.New("missing closing quote")
}

// splitOptionHostPort splits host:port, [v6]:port or host/port as sshd's
// permitopen and permitlisten parsing (hpdelim) does.
func splitOptionHostPort(v string) (host, port string, err error) {
	if strings.HasPrefix(v, "[") {
		end := strings.Index(v, "]")
		if end < 0 || end+1 >= len(v) || (v[end+1] != ':' && v[end+1] != '/') {
			return "", "", errors.New("malformed [host]:port")
		}
		return v[1:end], v[end+2:], nil
	}
	i := strings.IndexAny(v, ":/")
	if i < 0 {
		return "", "", errors.New("no port")
	}
	if strings.ContainsAny(v[i+1:], ":/") {
		return "", "", errors.New("more than one separator")
	}
	return v[:i], v[i+1:], nil
}

// checkFromPattern checks one from= pattern: a host or address pattern
// with * and ?, an address/masklen, each optionally negated with '!'.
func checkFromPattern(p string) error {
	p = strings.TrimPrefix(p, "!")
	if p == "" {
		return errors.New("empty pattern")
	}
	if strings.Contains(p, "/") {
		if _, _, err := net.ParseCIDR(p); err != nil {
			return fmt.Errorf("%q is not an address/masklen", clipOption(p))
		}
	}
	return nil
}

// parseExpiryTime parses an expiry-time= value as sshd does:
// YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, in local time unless it ends in
// Z (UTC).
func parseExpiryTime(v string) (time.Time, error) {
	loc := time.Local
	if s, ok := strings.CutSuffix(v, "Z"); ok {
		v, loc = s, time.UTC
	} else if s, ok := strings.CutSuffix(v, "z"); ok {
		v, loc = s, time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(v)]
	if _, err := strconv.ParseUint(v, 10, 64); !ok || err != nil {
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", clipOption(v))
	}
	t, err := time.ParseInLocation(layout, v, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a valid date and time", clipOption(v))
	}
	return t, nil
}

// clipOption shortens option text quoted in an error and escapes control
// characters in it, so that one error stays one readable line.
func clipOption(s string) string {
	const max = 64
	cut := len(s) > max
	if cut {
		s = strings.ToValidUTF8(s[:max], "")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		q := strconv.QuoteToGraphic(s)
		s = q[1 : len(q)-1]
	}
	if cut {
		s += "…"
	}
	return s
}
