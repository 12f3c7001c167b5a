package siminstance

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// Errors returned by the Authorize helpers. Callers may match them with
// errors.Is; the client only ever learns that the key was refused.
var (
	// ErrNotCertificate means TrustCA was shown a plain key.
	ErrNotCertificate = errors.New("siminstance: key is not a certificate")
	// ErrKeyNotListed means AcceptKeys did not find the key in the list.
	ErrKeyNotListed = errors.New("siminstance: key not listed for user")
	// ErrNoSuchUser means the login named an OS user the instance does
	// not have (Options.Users).
	ErrNoSuchUser = errors.New("siminstance: no such user")
)

// TrustCA returns an Authorize function that admits what sshd admits with
// TrustedUserCAKeys set to ca alone: an *ssh.Certificate of type user, signed
// by ca, valid now, with user among its principals (a certificate without
// principals is refused, as sshd does). A "source-address" critical option is
// enforced by the Instance against the client address; any other critical
// option, "force-command" included, is refused.
func TrustCA(ca ssh.PublicKey) func(user string, key ssh.PublicKey) error {
	caBytes := ca.Marshal()
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool {
			return bytes.Equal(auth.Marshal(), caBytes)
		},
		SupportedCriticalOptions: []string{sourceAddressOption},
	}
	return func(user string, key ssh.PublicKey) error {
		cert, ok := key.(*ssh.Certificate)
		if !ok {
			return ErrNotCertificate
		}
		if cert.CertType != ssh.UserCert {
			return fmt.Errorf("siminstance: certificate has type %d, want user", cert.CertType)
		}
		if !checker.IsUserAuthority(cert.SignatureKey) {
			return errors.New("siminstance: certificate not signed by the trusted CA")
		}
		// CertChecker treats an empty principal list as "any"; sshd
		// refuses such user certificates.
		if len(cert.ValidPrincipals) == 0 {
			return errors.New("siminstance: certificate has no principals")
		}
		if err := checker.CheckCert(user, cert); err != nil {
			return fmt.Errorf("siminstance: checking certificate: %w", err)
		}
		return nil
	}
}

// AcceptKeys returns an Authorize function that admits a key only if it is
// among list(user) at the moment of login, like EC2 Instance Connect's
// AuthorizedKeysCommand. Keys are compared whole, so a certificate matches
// only itself, never the plain key it certifies. list is called on every
// attempt and must be safe for concurrent use.
func AcceptKeys(list func(user string) []ssh.PublicKey) func(user string, key ssh.PublicKey) error {
	return func(user string, key ssh.PublicKey) error {
		want := key.Marshal()
		for _, k := range list(user) {
			if k != nil && bytes.Equal(k.Marshal(), want) {
				return nil
			}
		}
		return ErrKeyNotListed
	}
}
