package auth

// Grants reports whether some policy that lets id reach t grants
// capability there, for at least one of its OS users. It serves the
// target listing (a serial console is listed only to those who may open
// it); Authorize stays the decision.
func (p *Policy) Grants(id Identity, t Target, capability string) bool {
	for _, rule := range p.rules {
		if matchesIdentity(rule, id) && matchesTarget(rule.Targets, t) && len(rule.OSUsers) > 0 && grants(rule, capability) {
			return true
		}
	}
	return false
}
