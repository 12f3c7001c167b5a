package auth

import "fmt"

// Grants decides whether any policy that lets id reach t grants
// capability there, whatever the OS user. The proxy asks it before a
// provider call whose answer names the OS user (an RDP forward learns the
// Windows user from Lightsail), so that a person without the capability
// causes no AWS call; Authorize, with the OS user, stays the decision.
func (p *Policy) Grants(id Identity, t Target, capability string) Decision {
	reach := false
	for _, rule := range p.rules {
		if !matchesIdentity(rule, id) || !matchesTarget(rule.Targets, t) {
			continue
		}
		reach = true
		if grants(rule, capability) {
			return Decision{Allow: true}
		}
	}
	if !reach {
		return Decision{Reason: fmt.Sprintf("no policy lets %s reach %s", id.User, t.Name)}
	}
	return Decision{Reason: fmt.Sprintf("no policy lets %s use %s on %s", id.User, capName(capability), t.Name)}
}
