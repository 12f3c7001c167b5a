package sso

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Bounds on what the claims may put into an identity.
const (
	// MaxUsernameLen bounds the claimed user name.
	MaxUsernameLen = 64
	// MaxGroups and MaxGroupLen bound the claimed groups: extra ones are
	// dropped, as are longer names.
	MaxGroups   = 64
	MaxGroupLen = 128
	// maxClaimLen bounds the subject and email kept.
	maxClaimLen = 256
)

// Mapping turns a verified ID token's claims into an Account.
type Mapping struct {
	// UsernameClaim and GroupsClaim name the claims of the user name and
	// the groups.
	UsernameClaim, GroupsClaim string
	// AllowedDomains, if set, admits only emails in these domains (with
	// email_verified not false).
	AllowedDomains []string
}

// Account is the person an ID token proves.
type Account struct {
	Issuer, Subject string
	// Username is the bastion user name (Mapping.UsernameClaim).
	Username string
	Email    string
	Groups   []string
}

// Map returns the account tok proves, or a Refusal (LabelNoUsername,
// LabelDomain).
func (m Mapping) Map(tok *oidc.IDToken) (Account, error) {
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return Account{}, &Refusal{Label: LabelInvalidToken, Reason: "malformed claims", Err: err}
	}
	return m.mapClaims(tok.Issuer, tok.Subject, claims)
}

func (m Mapping) mapClaims(issuer, subject string, claims map[string]json.RawMessage) (Account, error) {
	a := Account{Issuer: issuer, Subject: subject}
	if subject == "" || len(subject) > maxClaimLen || !utf8.ValidString(subject) {
		return Account{}, &Refusal{Label: LabelInvalidToken, Reason: "bad subject", Err: fmt.Errorf("subject of %d bytes", len(subject))}
	}
	a.Email, _ = stringClaim(claims, "email")
	verified := true
	if raw, ok := claims["email_verified"]; ok {
		// Some providers send it as a string.
		var b bool
		var s string
		switch {
		case json.Unmarshal(raw, &b) == nil:
			verified = b
		case json.Unmarshal(raw, &s) == nil:
			verified = s != "false"
		}
	}
	if len(m.AllowedDomains) > 0 {
		_, domain, ok := strings.Cut(a.Email, "@")
		switch {
		case !ok || a.Email == "":
			return Account{}, &Refusal{Label: LabelDomain, Reason: "the identity has no email address, which allowed_domains needs"}
		case !verified:
			return Account{}, &Refusal{Label: LabelDomain, Reason: "the identity's email address is not verified"}
		case !slices.ContainsFunc(m.AllowedDomains, func(d string) bool { return strings.EqualFold(d, domain) }):
			return Account{}, &Refusal{Label: LabelDomain, Reason: fmt.Sprintf("the email domain %s is not allowed here", safe(domain, 64))}
		}
	}
	if len(a.Email) > maxClaimLen {
		a.Email = ""
	}
	user, ok := stringClaim(claims, m.UsernameClaim)
	if !ok || !ValidUsername(user) {
		return Account{}, &Refusal{Label: LabelNoUsername,
			Reason: fmt.Sprintf("the identity provider gave no usable %s (the user name)", m.UsernameClaim)}
	}
	a.Username = user
	a.Groups = groupsClaim(claims[m.GroupsClaim])
	return a, nil
}

// ValidUsername reports whether s can be a bastion user name from a
// claim: 1 to MaxUsernameLen bytes of printable ASCII without blanks,
// quotes, backslashes, commas or '+' (the direct-mode separator), and not
// starting with '-'.
func ValidUsername(s string) bool {
	if s == "" || len(s) > MaxUsernameLen || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("\"'\\,+#/:", c) >= 0 {
			return false
		}
	}
	return true
}

// stringClaim returns the claim name as a string, if it is one.
func stringClaim(claims map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := claims[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// groupsClaim returns the groups of a claim that is a list of strings, or
// one string; names that are empty, too long or not printable are
// dropped, and at most MaxGroups are kept, each once.
func groupsClaim(raw json.RawMessage) []string {
	if raw == nil {
		return nil
	}
	var list []string
	if json.Unmarshal(raw, &list) != nil {
		var one string
		if json.Unmarshal(raw, &one) != nil {
			return nil
		}
		list = []string{one}
	}
	var out []string
	for _, g := range list {
		if g == "" || len(g) > MaxGroupLen || safe(g, MaxGroupLen) != g || strings.Contains(g, ",") || slices.Contains(out, g) {
			continue
		}
		out = append(out, g)
		if len(out) == MaxGroups {
			break
		}
	}
	return out
}

// safe returns s cut to n bytes with every byte that is not printable
// ASCII replaced by '?', for messages.
func safe(s string, n int) string {
	b := []byte(clip(s, n))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
