package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"bastion/internal/secfile"
)

// SSO configures logins through an OpenID provider (issue 14): a key no
// user lists is bound to an identity from the provider by an OAuth 2.0
// device authorization grant (RFC 8628) shown as a keyboard-interactive
// prompt, for SessionTTL.
type SSO struct {
	// Issuer is the provider's issuer URL, the base of its discovery
	// document (/.well-known/openid-configuration). https, or http to a
	// loopback host (tests).
	Issuer string `yaml:"issuer"`
	// ClientID is the bastion's client at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret, if the provider wants one
	// for the device flow; mode 0600 or stricter, as a private key.
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes requested; default DefaultSSOScopes.
	Scopes []string `yaml:"scopes"`
	// UsernameClaim is the ID token claim that becomes the bastion user
	// name; default preferred_username (email is the other usual one).
	UsernameClaim string `yaml:"username_claim"`
	// GroupsClaim is the claim whose strings become the policy groups;
	// default groups.
	GroupsClaim string `yaml:"groups_claim"`
	// SessionTTL is how long a key stays bound after a login; default 12h.
	SessionTTL Duration `yaml:"session_ttl"`
	// AllowedDomains, if set, admits only identities whose email claim is
	// in one of these domains, and whose email_verified is not false.
	AllowedDomains []string `yaml:"allowed_domains"`
	// MergeConfiguredUsers lets a claimed name equal to a configured
	// user log in as that user, with both sets of groups; otherwise such
	// a login is refused.
	MergeConfiguredUsers bool `yaml:"merge_configured_users"`
	// BindingsFile is where bindings are kept without fleet; default
	// sso-bindings.json in the folder of host_key.
	BindingsFile string `yaml:"bindings_file"`
	// MaxPending bounds the logins waiting for their approval at once;
	// default 32. MaxPendingPerSource bounds those of one source
	// address; default 4.
	MaxPending          int `yaml:"max_pending"`
	MaxPendingPerSource int `yaml:"max_pending_per_source"`
	// MaxBindings bounds the bindings the file keeps; default 10000.
	MaxBindings int `yaml:"max_bindings"`
}

// SSO defaults.
const (
	DefaultSSOUsernameClaim       = "preferred_username"
	DefaultSSOGroupsClaim         = "groups"
	DefaultSSOSessionTTL          = 12 * time.Hour
	DefaultSSOMaxPending          = 32
	DefaultSSOMaxPendingPerSource = 4
	DefaultSSOMaxBindings         = 10000
	// DefaultSSOBindingsFile is the bindings file's name next to host_key.
	DefaultSSOBindingsFile = "sso-bindings.json"
)

// DefaultSSOScopes are the scopes requested when sso.scopes is not set.
var DefaultSSOScopes = []string{"openid", "email", "profile", "groups"}

// ssoDefaults fills in the defaults of sso; set holds the keys the file
// sets. It runs after paths are resolved (the bindings file's default
// sits next to the resolved host_key).
func ssoDefaults(c *Config, set map[string]bool) {
	s := c.SSO
	if s == nil {
		return
	}
	if !set["sso.scopes"] {
		s.Scopes = slices.Clone(DefaultSSOScopes)
	}
	if s.UsernameClaim == "" {
		s.UsernameClaim = DefaultSSOUsernameClaim
	}
	if s.GroupsClaim == "" {
		s.GroupsClaim = DefaultSSOGroupsClaim
	}
	if !set["sso.session_ttl"] {
		s.SessionTTL = Duration(DefaultSSOSessionTTL)
	}
	if !set["sso.max_pending"] {
		s.MaxPending = DefaultSSOMaxPending
	}
	if !set["sso.max_pending_per_source"] {
		s.MaxPendingPerSource = DefaultSSOMaxPendingPerSource
	}
	if !set["sso.max_bindings"] {
		s.MaxBindings = DefaultSSOMaxBindings
	}
	if s.BindingsFile == "" && c.Fleet == nil && c.HostKey != "" && !IsAWSKeyRef(c.HostKey) {
		s.BindingsFile = filepath.Join(filepath.Dir(c.HostKey), DefaultSSOBindingsFile)
	}
}

// checkSSO validates sso.
func (c *checker) checkSSO(cfg *Config) {
	s := cfg.SSO
	if s == nil {
		return
	}
	c.checkIssuer(s.Issuer)
	switch {
	case s.ClientID == "":
		c.errorf("sso.client_id", "required")
	case len(s.ClientID) > 256 || strings.ContainsFunc(s.ClientID, func(r rune) bool { return r < 0x21 || r == 0x7f }):
		c.errorf("sso.client_id", "must be at most 256 bytes without blanks or control characters")
	}
	if !slices.Contains(s.Scopes, "openid") {
		c.errorf("sso.scopes", "must include openid (the login needs an ID token)")
	}
	for i, sc := range s.Scopes {
		if sc == "" || strings.ContainsFunc(sc, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '"' || r == '\\' }) {
			c.errorf(indexKey("sso.scopes", i), "%q is not a scope (RFC 6749 §3.3)", sc)
		}
	}
	for _, k := range []struct{ key, value string }{{"sso.username_claim", s.UsernameClaim}, {"sso.groups_claim", s.GroupsClaim}} {
		if len(k.value) > 128 || strings.ContainsFunc(k.value, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
			c.errorf(k.key, "must be a claim name of at most 128 bytes without blanks")
		}
	}
	switch d := s.SessionTTL.D(); {
	case d < time.Second || d > 30*24*time.Hour:
		c.errorf("sso.session_ttl", "%s is out of range; use 1s to 720h", s.SessionTTL)
	case d < time.Minute:
		c.warnf("sso.session_ttl", "%s is shorter than a minute: people will log in again on almost every connection", s.SessionTTL)
	}
	for i, d := range s.AllowedDomains {
		if d == "" || strings.ContainsAny(d, "@/ \t") || strings.HasPrefix(d, ".") {
			c.errorf(indexKey("sso.allowed_domains", i), "%q is not a domain name, such as example.com", d)
		}
	}
	if n := s.MaxPending; n < 1 {
		c.errorf("sso.max_pending", "%d is too small; use at least 1", n)
	}
	if n := s.MaxPendingPerSource; n < 1 || n > s.MaxPending {
		c.errorf("sso.max_pending_per_source", "%d is out of range; use 1 to sso.max_pending (%d)", n, s.MaxPending)
	}
	if n := s.MaxBindings; n < 1 {
		c.errorf("sso.max_bindings", "%d is too small; use at least 1", n)
	}
	// With fleet, bindings_file is not used (bindings are items of the
	// fleet table), as config.yaml.example says.
	if s.BindingsFile == "" && cfg.Fleet == nil {
		c.errorf("sso.bindings_file", "required when host_key is not a file and fleet is not configured")
	}
	if s.ClientSecretFile != "" && !c.skipFiles {
		secret, err := secfile.ReadPrivateKey(s.ClientSecretFile)
		switch {
		case err != nil:
			c.errorf("sso.client_secret_file", "%s", fileMessage(s.ClientSecretFile, err))
		case strings.TrimSpace(string(secret)) == "":
			c.errorf("sso.client_secret_file", "%s is empty", s.ClientSecretFile)
		}
	}
}

// checkIssuer checks sso.issuer: an absolute https URL without query or
// fragment, or http to a loopback host.
func (c *checker) checkIssuer(issuer string) {
	const key = "sso.issuer"
	if issuer == "" {
		c.errorf(key, "required (the OpenID provider's issuer URL, such as https://login.example.com)")
		return
	}
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		c.errorf(key, "%q is not an issuer URL, such as https://login.example.com", issuer)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			c.errorf(key, "%q uses http; an issuer must use https (http is allowed only to a loopback address)", issuer)
		}
	default:
		c.errorf(key, "%q is not an https URL", issuer)
	}
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ReadClientSecret returns the client secret of s, from ClientSecretFile
// (surrounding blanks trimmed), or "" for a public client.
func (s *SSO) ReadClientSecret() (string, error) {
	if s.ClientSecretFile == "" {
		return "", nil
	}
	data, err := secfile.ReadPrivateKey(s.ClientSecretFile)
	if err != nil {
		return "", fmt.Errorf("sso.client_secret_file: %w", err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("sso.client_secret_file: %s is empty", s.ClientSecretFile)
	}
	return secret, nil
}
