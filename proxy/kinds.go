package proxy

import (
	"path"

	"bastion/auth"
	"bastion/upstream/provider"
)

// msgNotRecorded refuses a login to a kind whose sessions are always
// recorded (the serial console) on a bastion that records nothing.
const msgNotRecorded = "sessions to this target are always recorded, and this bastion has no audit.recordings; refusing"

// kindRefusal returns why a login that the policy allowed (base, with no
// capability) must still be refused because of its target's kind, or "":
// a kind with a capability (provider.Descriptor.Capability, such as
// serial_console) needs a policy that grants it, decided by policy now,
// and a kind whose sessions are always recorded needs a recordings folder.
func (c *conn) kindRefusal(policy *auth.Policy, base auth.Request) string {
	if dec := kindDecision(policy, base); !dec.Allow {
		return dec.Reason
	}
	if alwaysRecorded(base.Target.Provider) && c.srv.Recording.Dir == "" {
		return msgNotRecorded
	}
	return ""
}

// kindDecision decides, for a request the policy allowed, the capability
// its target's kind needs (serial_console) by the policy in force now, so
// that a reload that takes it away reaches the sessions and requests of a
// live link too.
func kindDecision(policy *auth.Policy, r auth.Request) auth.Decision {
	d, ok := provider.Lookup(r.Target.Provider)
	if !ok || d.Capability == "" || r.Capability == d.Capability {
		return auth.Decision{Allow: true}
	}
	r.Capability, r.Dest = d.Capability, ""
	return policy.Authorize(r)
}

// alwaysRecorded reports whether every session to targets of the named
// provider kind is recorded.
func alwaysRecorded(kind string) bool {
	d, ok := provider.Lookup(kind)
	return ok && d.Recorded
}

// listable reports whether the listing shows t to id: a target of a kind
// with a capability only to a person some policy grants it to there.
func listable(policy *auth.Policy, id auth.Identity, t auth.Target) bool {
	d, ok := provider.Lookup(t.Provider)
	if !ok || d.Capability == "" {
		return true
	}
	return policy.Grants(id, t, d.Capability).Allow
}

// listedUsers returns the OS users the listing shows for a target of kind
// whose policies allow the patterns: the kind's own users that a pattern
// matches, for a kind with fixed ones (the serial console's port0), else
// the patterns themselves.
func listedUsers(kind string, patterns []string) []string {
	d, ok := provider.Lookup(kind)
	if !ok || len(d.OSUsers) == 0 {
		return patterns
	}
	var out []string
	for _, u := range d.OSUsers {
		for _, p := range patterns {
			if ok, err := path.Match(p, u); err == nil && ok {
				out = append(out, u)
				break
			}
		}
	}
	return out
}
