package auth

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"bastion/config"
	"bastion/upstream/provider"
)

// Target is what a policy matches a connection's destination against.
type Target struct {
	// Provider is "lightsail", "ec2" or "static".
	Provider string
	// Name is the instance name (EC2: the Name tag, or the id).
	Name string
	// ID is the instance id (EC2) or the name.
	ID string
	// Region is the AWS region, empty for static targets.
	Region string
	// Tags are the instance's tags.
	Tags map[string]string
}

// Request is one question to the policy: may Identity reach Target as OSUser
// and use Capability there (towards Dest, for port forwarding)?
type Request struct {
	Identity   Identity
	Target     Target
	OSUser     string
	Capability string
	// Dest is the host:port of a port forward, for CapPortForwarding.
	Dest string
}

// Decision is the policy's answer.
type Decision struct {
	Allow bool
	// Reason says why access was denied, as a sentence fragment for the
	// person ("no policy lets alice log in to web-1 as root").
	Reason string
}

// defaultCaps are the session capabilities every matching policy grants
// unless it denies them.
var defaultCaps = []string{config.CapShell, config.CapExec, config.CapSFTP, config.CapSCP}

// Policy is the compiled set of policies of one config. It is immutable.
type Policy struct {
	rules []config.Policy
}

// NewPolicy compiles the policies of cfg.
func NewPolicy(cfg *config.Config) *Policy {
	return &Policy{rules: slices.Clone(cfg.Policies)}
}

// Authorize decides r. It is deny by default: access needs a policy that
// names the user or one of their groups, matches the target and the OS user,
// and grants the capability. Grants of several matching policies add up.
func (p *Policy) Authorize(r Request) Decision {
	targetOK, userOK := false, false
	for _, rule := range p.rules {
		if !matchesIdentity(rule, r.Identity) || !matchesTarget(rule.Targets, r.Target) {
			continue
		}
		targetOK = true
		if !matchesAny(rule.OSUsers, r.OSUser) {
			continue
		}
		userOK = true
		if r.Capability == "" {
			return Decision{Allow: true}
		}
		if !grants(rule, r.Capability) {
			continue
		}
		if r.Capability == config.CapPortForwarding && r.Dest != "" && len(rule.ForwardTo) > 0 && !matchesAny(rule.ForwardTo, r.Dest) {
			continue
		}
		return Decision{Allow: true}
	}
	who, where := r.Identity.User, r.Target.Name
	switch {
	case !targetOK:
		return Decision{Reason: fmt.Sprintf("no policy lets %s reach %s", who, where)}
	case !userOK:
		return Decision{Reason: fmt.Sprintf("no policy lets %s log in to %s as %s", who, where, r.OSUser)}
	case r.Dest != "":
		return Decision{Reason: fmt.Sprintf("no policy lets %s use %s to %s on %s", who, capName(r.Capability), r.Dest, where)}
	}
	return Decision{Reason: fmt.Sprintf("no policy lets %s use %s on %s", who, capName(r.Capability), where)}
}

// Records reports whether sessions of kind (config.RecordPTY,
// config.RecordExec) must be recorded on t: whether a policy that matches
// t lists kind in its record, whoever the person is.
func (p *Policy) Records(t Target, kind string) bool {
	for _, rule := range p.rules {
		if slices.Contains(rule.Record, kind) && matchesTarget(rule.Targets, t) {
			return true
		}
	}
	return false
}

// capName turns a capability into words for messages.
func capName(c string) string {
	return strings.ReplaceAll(c, "_", " ")
}

func grants(rule config.Policy, capability string) bool {
	if slices.Contains(rule.Deny, capability) {
		return false
	}
	return slices.Contains(defaultCaps, capability) || slices.Contains(rule.Allow, capability)
}

func matchesIdentity(rule config.Policy, id Identity) bool {
	if matchesAny(rule.Users, id.User) {
		return true
	}
	for _, g := range id.Groups {
		if slices.Contains(rule.Groups, g) {
			return true
		}
	}
	return false
}

// matchesTarget reports whether any pattern matches t. A pattern is
// "[provider:][region:]glob" matched against the name or id, or
// "[provider:]tag:KEY=GLOB" matched against a tag.
func matchesTarget(patterns []string, t Target) bool {
	for _, pat := range patterns {
		if matchTarget(pat, t) {
			return true
		}
	}
	return false
}

func matchTarget(pat string, t Target) bool {
	for _, prov := range provider.Names() {
		if rest, ok := strings.CutPrefix(pat, prov+":"); ok {
			if t.Provider != prov {
				return false
			}
			pat = rest
			break
		}
	}
	if kv, ok := strings.CutPrefix(pat, "tag:"); ok {
		key, val, _ := strings.Cut(kv, "=")
		v, has := t.Tags[key]
		return has && glob(val, v)
	}
	if region, rest, ok := strings.Cut(pat, ":"); ok {
		if !glob(region, t.Region) {
			return false
		}
		pat = rest
	}
	return glob(pat, t.Name) || (t.ID != "" && glob(pat, t.ID))
}

func matchesAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

// glob matches s against a shell pattern; a malformed pattern matches
// nothing (config validation rejects them).
func glob(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// Reachable decides whether any policy lets id reach t at all, whatever the
// OS user. The proxy asks it before it knows the OS user, so that a person
// who may not reach a target is told so before the inner handshake.
func (p *Policy) Reachable(id Identity, t Target) Decision {
	for _, rule := range p.rules {
		if matchesIdentity(rule, id) && matchesTarget(rule.Targets, t) {
			return Decision{Allow: true}
		}
	}
	return Decision{Reason: fmt.Sprintf("no policy lets %s reach %s", id.User, t.Name)}
}

// OSUsers returns the OS user patterns ("ec2-user", "*") that the policies
// letting id reach t allow, in policy order, each once. It serves the
// target listing; Authorize stays the decision.
func (p *Policy) OSUsers(id Identity, t Target) []string {
	var out []string
	for _, rule := range p.rules {
		if !matchesIdentity(rule, id) || !matchesTarget(rule.Targets, t) {
			continue
		}
		for _, u := range rule.OSUsers {
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}
