// Package auth decides who a person is and what they may do. It makes
// decisions only: no I/O, no network. Its one clock is
// Authenticator.Clock, time.Now when unset.
package auth

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/config"
)

// Identity is an authenticated person. It comes from the key or certificate
// they presented, never from the user name they typed.
type Identity struct {
	// User is the bastion user name from config.yaml.
	User string
	// Groups are the user's groups from config.yaml.
	Groups []string
	// KeyFingerprint is the SHA256 fingerprint of the key (for a
	// certificate, of the certificate's key).
	KeyFingerprint string
	// CertKeyID and CertSerial describe the certificate, if one was used.
	CertKeyID  string
	CertSerial uint64
	// CAFingerprint is the fingerprint of the CA that signed the
	// certificate, if one was used.
	CAFingerprint string
	// Restrictions are what the certificate, or the options of the key's
	// line, take away from what the policy grants.
	Restrictions Restrictions
	// NoTouchRequired reports that the key's line has no-touch-required:
	// a security key's signature need not assert user presence. (A
	// certificate's no-touch-required extension is read by x/crypto
	// itself.)
	NoTouchRequired bool
	// SSO is the identity provider's account behind a key bound by an
	// SSO login; nil for configured keys and certificates.
	SSO *SSO
}

// SSO is what an OpenID provider said about a person at their login: it
// is immutable once in an Identity.
type SSO struct {
	// Issuer and Subject name the account (the ID token's iss and sub).
	Issuer, Subject string
	// Email is the email claim, if any.
	Email string
	// Groups are the claimed groups (Identity.Groups adds a configured
	// user's groups when sso.merge_configured_users lets them merge).
	Groups []string
	// Expires is when the key's binding ends.
	Expires time.Time
}

// Method returns how the identity was proven, in audit and whoami words:
// "sso", "user_certificate" or "publickey".
func (id Identity) Method() string {
	switch {
	case id.SSO != nil:
		return "sso"
	case id.CertKeyID != "":
		return "user_certificate"
	}
	return "publickey"
}

// Authentication errors that callers branch on (for metrics and audit).
var (
	// ErrUnknownKey reports that a key belongs to no configured user.
	ErrUnknownKey = errors.New("key belongs to no configured user")
	// ErrRevoked reports a key, certificate or CA on the revoked list.
	ErrRevoked = errors.New("key is revoked")
	// ErrBadCertificate reports a certificate from a trusted CA that is
	// not valid now, for this principal or from this address.
	ErrBadCertificate = errors.New("certificate not accepted")
	// ErrKeyOptions reports a configured key whose line's options
	// (from=, expiry-time=) refuse this login.
	ErrKeyOptions = errors.New("key options refuse this login")
	// ErrMergeRefused reports an SSO login whose claimed name is a
	// configured user's, without sso.merge_configured_users.
	ErrMergeRefused = errors.New("the claimed name is a configured user's")
	// ErrSSOOff reports an SSO binding while sso is not configured.
	ErrSSOOff = errors.New("sso is not configured")
)

// FailureReason returns a short, fixed label for an Authenticate error:
// "unknown_key", "revoked", "bad_certificate", "key_options" or "other".
func FailureReason(err error) string {
	switch {
	case errors.Is(err, ErrKeyOptions):
		return "key_options"
	case errors.Is(err, ErrRevoked):
		return "revoked"
	case errors.Is(err, ErrBadCertificate):
		return "bad_certificate"
	case errors.Is(err, ErrUnknownKey):
		return "unknown_key"
	}
	return "other"
}

// Authenticator maps presented keys and certificates to identities. It is
// built from one config and never changes; a reload builds a new one.
type Authenticator struct {
	// Clock returns the time for expiry-time= and certificate validity;
	// if nil, time.Now.
	Clock func() time.Time

	keys    map[string]keyEntry // by ssh.PublicKey.Marshal()
	byFP    map[string]keyEntry // by SHA256 fingerprint
	users   map[string]*config.User
	cas     []ssh.PublicKey
	revoked map[string]bool // SHA256 fingerprints
	// owners maps key and CA fingerprints to the users and CAs they admit
	// ("" for a CA), for Admits.
	owners map[string]string
	// sso is the sso section, nil without one (Bound, Current, Admits).
	sso *config.SSO
}

// NewAuthenticator indexes the users and trusted CAs of cfg.
func NewAuthenticator(cfg *config.Config) *Authenticator {
	a := &Authenticator{
		keys:    map[string]keyEntry{},
		byFP:    map[string]keyEntry{},
		users:   map[string]*config.User{},
		cas:     cfg.TrustedUserCAs,
		revoked: map[string]bool{},
		owners:  map[string]string{},
		sso:     cfg.SSO,
	}
	for _, ca := range cfg.TrustedUserCAs {
		a.owners[ssh.FingerprintSHA256(ca)] = ""
	}
	for _, fp := range cfg.RevokedFingerprints {
		a.revoked[fp] = true
	}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		a.users[u.Name] = u
		for j, k := range u.PublicKeys {
			e := keyEntry{user: u}
			if j < len(u.KeyOptions) {
				e.opts = u.KeyOptions[j]
			}
			// As sshd, the first line of a key is the one that counts.
			if _, dup := a.keys[string(k.Marshal())]; !dup {
				a.keys[string(k.Marshal())] = e
				a.byFP[ssh.FingerprintSHA256(k)] = e
			}
			a.owners[ssh.FingerprintSHA256(k)] = u.Name
		}
	}
	return a
}

// keyEntry is one configured key: its user and its line's options.
type keyEntry struct {
	user *config.User
	opts config.KeyOptions
}

func (a *Authenticator) now() time.Time {
	if a.Clock != nil {
		return a.Clock()
	}
	return time.Now()
}

// Authenticate returns the identity that key proves, if the key is a
// configured user's or a user certificate signed by a trusted CA whose
// principal names a configured user. remote is checked against the
// certificate's source-address critical option.
func (a *Authenticator) Authenticate(key ssh.PublicKey, remote net.Addr) (Identity, error) {
	if a.revoked[ssh.FingerprintSHA256(key)] {
		return Identity{}, ErrRevoked
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		if a.revoked[ssh.FingerprintSHA256(cert.Key)] || a.revoked[ssh.FingerprintSHA256(cert.SignatureKey)] {
			return Identity{}, ErrRevoked
		}
		return a.authenticateCert(cert, remote)
	}
	e, ok := a.keys[string(key.Marshal())]
	if !ok {
		return Identity{}, ErrUnknownKey
	}
	if exp := e.opts.ExpiryTime; !exp.IsZero() && !a.now().Before(exp) {
		return Identity{}, fmt.Errorf("key of %s expired at %s (expiry-time): %w", e.user.Name, exp.Format(time.RFC3339), ErrKeyOptions)
	}
	if e.opts.From != nil {
		if err := checkFrom(e.opts.From, remote); err != nil {
			return Identity{}, fmt.Errorf("key of %s: %w: %w", e.user.Name, ErrKeyOptions, err)
		}
	}
	return Identity{User: e.user.Name, Groups: e.user.Groups, KeyFingerprint: ssh.FingerprintSHA256(key),
		Restrictions: keyRestrictions(e.opts), NoTouchRequired: e.opts.NoTouchRequired}, nil
}

// Current returns id as the config a was built from sees it: the user's
// groups now and, for a plain key still listed for the user, its line's
// restrictions now. A certificate's restrictions are the certificate's and
// do not change. Whether the person is still admitted at all is Admits'
// decision.
func (a *Authenticator) Current(id Identity) Identity {
	if id.SSO != nil {
		id.Groups = a.ssoGroups(id.User, id.SSO.Groups)
		return id
	}
	if u, ok := a.users[id.User]; ok {
		id.Groups = u.Groups
	} else {
		id.Groups = nil
	}
	if id.CAFingerprint == "" {
		if e, ok := a.byFP[id.KeyFingerprint]; ok && e.user.Name == id.User {
			id.Restrictions = keyRestrictions(e.opts)
		}
	}
	return id
}

// Admits reports whether a person authenticated earlier as id would still
// be admitted: the user is still configured, the key (or the CA that signed
// the certificate) still listed, and neither revoked; for a key bound by an
// SSO login, the binding as Bound accepts it and not expired.
func (a *Authenticator) Admits(id Identity) bool {
	if id.SSO != nil {
		// Past its binding's end a key is not admitted: no new links
		// on an old connection, as for a certificate that expired.
		_, err := a.Bound(id.KeyFingerprint, id.User, *id.SSO)
		return err == nil && a.now().Before(id.SSO.Expires)
	}
	if _, ok := a.users[id.User]; !ok || a.revoked[id.KeyFingerprint] {
		return false
	}
	if id.CAFingerprint != "" {
		owner, ok := a.owners[id.CAFingerprint]
		return ok && owner == "" && !a.revoked[id.CAFingerprint]
	}
	return a.owners[id.KeyFingerprint] == id.User
}

// Bound returns the identity of the key with SHA256 fingerprint fp bound
// to user by an SSO login described by s, by the rules of a: refused if sso
// is off or names another issuer, if the key is revoked, or if user is a
// configured user's name and sso.merge_configured_users is not set (then
// the user's configured groups are added to the claimed ones). The
// binding's expiry is the caller's to check.
func (a *Authenticator) Bound(fp, user string, s SSO) (Identity, error) {
	switch {
	case a.sso == nil:
		return Identity{}, ErrSSOOff
	case s.Issuer != a.sso.Issuer:
		return Identity{}, fmt.Errorf("binding from issuer %q, not the configured one: %w", s.Issuer, ErrSSOOff)
	case a.revoked[fp]:
		return Identity{}, ErrRevoked
	}
	if _, ok := a.users[user]; ok && !a.sso.MergeConfiguredUsers {
		return Identity{}, fmt.Errorf("%s: %w", user, ErrMergeRefused)
	}
	s.Groups = slices.Clone(s.Groups)
	return Identity{User: user, Groups: a.ssoGroups(user, s.Groups), KeyFingerprint: fp, SSO: &s}, nil
}

// ssoGroups returns the claimed groups, with those of the configured user
// of that name when sso.merge_configured_users merges them, each once.
func (a *Authenticator) ssoGroups(user string, claimed []string) []string {
	out := slices.Clone(claimed)
	if u, ok := a.users[user]; ok && a.sso != nil && a.sso.MergeConfiguredUsers {
		for _, g := range u.Groups {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

func (a *Authenticator) authenticateCert(cert *ssh.Certificate, remote net.Addr) (Identity, error) {
	checker := &ssh.CertChecker{
		IsUserAuthority: func(k ssh.PublicKey) bool {
			return slices.ContainsFunc(a.cas, func(ca ssh.PublicKey) bool {
				return bytes.Equal(ca.Marshal(), k.Marshal())
			})
		},
		// force-command is enforced by the proxy on every session
		// channel (Restrictions.ForceCommand); source-address below.
		SupportedCriticalOptions: []string{"source-address", "force-command"},
		Clock:                    a.Clock,
	}
	if _, ok := cert.CriticalOptions["verify-required"]; ok {
		// x/crypto verifies the signature but does not show the server
		// its flags, so user verification cannot be checked: refuse
		// rather than accept the certificate without it.
		return Identity{}, fmt.Errorf("checking certificate %q: %w: verify-required cannot be checked: the SSH library does not expose the signature's user-verification flag", cert.KeyId, ErrBadCertificate)
	}
	for _, p := range cert.ValidPrincipals {
		u, ok := a.users[p]
		if !ok {
			continue
		}
		// Authenticate checks the CA, the validity window and the
		// principal; ConnMetadata supplies the principal.
		if _, err := checker.Authenticate(certMeta{user: p, remote: remote}, cert); err != nil {
			return Identity{}, fmt.Errorf("checking certificate %q: %w: %w", cert.KeyId, ErrBadCertificate, err)
		}
		// x/crypto's server enforces source-address only for Permissions
		// it is handed; the identity is carried differently, so check here.
		if err := checkSourceAddress(cert.CriticalOptions["source-address"], remote); err != nil {
			return Identity{}, fmt.Errorf("checking certificate %q: %w: %w", cert.KeyId, ErrBadCertificate, err)
		}
		return Identity{
			User:           u.Name,
			Groups:         u.Groups,
			KeyFingerprint: ssh.FingerprintSHA256(cert.Key),
			CertKeyID:      cert.KeyId,
			CertSerial:     cert.Serial,
			CAFingerprint:  ssh.FingerprintSHA256(cert.SignatureKey),
			Restrictions:   certRestrictions(cert),
		}, nil
	}
	return Identity{}, fmt.Errorf("certificate %q names no configured user: %w", cert.KeyId, ErrUnknownKey)
}

// checkSourceAddress checks remote against a certificate's source-address
// option: a comma-separated list of addresses and CIDR blocks. An empty
// option allows any address; a malformed entry refuses the certificate, as
// sshd does.
func checkSourceAddress(option string, remote net.Addr) error {
	if option == "" {
		return nil
	}
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return errors.New("source-address: remote address is not TCP")
	}
	match := false
	for _, s := range strings.Split(option, ",") {
		s = strings.TrimSpace(s)
		if _, n, err := net.ParseCIDR(s); err == nil {
			match = match || n.Contains(tcp.IP)
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("source-address: %q is not an address or address/masklen", s)
		}
		match = match || ip.Equal(tcp.IP)
	}
	if !match {
		return fmt.Errorf("source-address: %s is not in %q", tcp.IP, option)
	}
	return nil
}

// certMeta is the ssh.ConnMetadata that CertChecker.Authenticate reads: the
// principal to check and the address for source-address.
type certMeta struct {
	ssh.ConnMetadata
	user   string
	remote net.Addr
}

func (m certMeta) User() string          { return m.user }
func (m certMeta) RemoteAddr() net.Addr  { return m.remote }
func (m certMeta) SessionID() []byte     { return nil }
func (m certMeta) ClientVersion() []byte { return nil }
