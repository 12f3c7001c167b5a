package proxy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"bastion/audit"
)

// Own-session commands about who the person is (issue 14).
const (
	cmdWhoami = "whoami"
	cmdLogin  = "login"
	cmdLogout = "logout"
)

// whoamiCommand prints who the bastion thinks the person is: user,
// groups, how they proved it and, for an SSO login, when the binding ends.
func (c *conn) whoamiCommand(w io.Writer, nl string) int {
	id := c.srv.currentRules().Auth.Current(c.identity)
	groups := "-"
	if len(id.Groups) > 0 {
		groups = printable(strings.Join(id.Groups, ", "))
	}
	fmt.Fprintf(w, "user: %s%sgroups: %s%s", printable(id.User), nl, groups, nl)
	switch {
	case id.SSO != nil:
		fmt.Fprintf(w, "via: sso %s subject %s%s", printable(id.SSO.Issuer), printable(id.SSO.Subject), nl)
		fmt.Fprintf(w, "expires: %s (in %s)%s", id.SSO.Expires.UTC().Format(time.RFC3339), until(id.SSO.Expires), nl)
	case id.CertKeyID != "":
		fmt.Fprintf(w, "via: certificate %s%s", printable(id.CertKeyID), nl)
	default:
		fmt.Fprintf(w, "via: key %s%s", id.KeyFingerprint, nl)
	}
	return 0
}

// until says how long from now t is, in minutes.
func until(t time.Time) string {
	d := time.Until(t).Truncate(time.Minute)
	if d <= 0 {
		return "0m"
	}
	return strings.TrimSuffix(d.String(), "0s")
}

// loginCommand reports the SSO login the connection made or used: the
// login itself happens at authentication, before any command runs.
func (c *conn) loginCommand(w io.Writer, nl string) int {
	id := c.identity
	if id.SSO == nil {
		fmt.Fprintf(w, "%s is a configured user and needs no login%s", printable(id.User), nl)
		return 0
	}
	fmt.Fprintf(w, "logged in as %s until %s%s", printable(id.User), id.SSO.Expires.UTC().Format(time.RFC3339), nl)
	return 0
}

// logoutCommand drops the binding of the key the connection used, so
// that the next connection with it logs in again.
func (c *conn) logoutCommand(w, stderr io.Writer, nl string) int {
	id := c.identity
	r := c.srv.currentRules()
	if id.SSO == nil || r.SSO == nil {
		fmt.Fprintf(stderr, "bastion: %s logged in with a configured key or certificate; there is nothing to log out%s", printable(id.User), nl)
		return 1
	}
	ctx, cancel := context.WithTimeout(c.ctx, ssoLookupTimeout)
	defer cancel()
	if err := r.SSO.Store.DeleteBinding(ctx, id.KeyFingerprint); err != nil {
		c.log.Warn("sso_logout_failed", zap.Error(err))
		c.srv.ssoStoreFailed("sso_binding_delete", err)
		fmt.Fprintf(stderr, "bastion: the login could not be dropped; try again later%s", nl)
		return 1
	}
	c.audit(audit.Event{Type: audit.TypeSSOLogout})
	fmt.Fprintf(w, "logged out %s (key %s)%s", printable(id.User), id.KeyFingerprint, nl)
	return 0
}
