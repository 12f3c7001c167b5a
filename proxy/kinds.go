package proxy

import (
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
	d, ok := provider.Lookup(base.Target.Provider)
	if !ok {
		return ""
	}
	if d.Capability != "" {
		r := base
		r.Capability = d.Capability
		if dec := policy.Authorize(r); !dec.Allow {
			return dec.Reason
		}
	}
	if d.Recorded && c.srv.Recording.Dir == "" {
		return msgNotRecorded
	}
	return ""
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
	return policy.Grants(id, t, d.Capability)
}
