package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// RDPProvider is a Provider that serves Windows instances' Remote Desktop:
// the proxy forwards to an instance's RDP port only through one.
type RDPProvider interface {
	// RDP returns what reaching t's Remote Desktop needs: its address,
	// the certificate its RDP server must present, and its credentials.
	// A target that is not a Windows instance fails with an *Error.
	RDP(ctx context.Context, t Target) (*RDPAccess, error)
	// ForgetRDP drops cached RDP details of t, so that the next RDP call
	// asks again (after the instance presented another certificate).
	ForgetRDP(t Target)
}

// RDPAccess is a Windows instance's Remote Desktop access. Password is a
// secret: never log it, never write it to disk.
type RDPAccess struct {
	// Addr is the host:port of the instance's RDP server.
	Addr string
	// Dial, if set, opens the transport to the instance in place of a TCP
	// connection to Addr, as Credentials.Dial.
	Dial func(ctx context.Context) (net.Conn, error)
	// Username is the Windows user the credentials are for.
	Username string
	// Password is the user's password; empty if it is not known (see
	// PasswordPending and KeyPairName).
	Password string
	// PasswordPending reports that the instance has no password yet
	// (Lightsail sets it up to 15 minutes after the instance is created).
	PasswordPending bool
	// KeyPairName names the instance's key pair when it is not the
	// provider's default one: with Password empty and PasswordPending
	// false, its private key is needed to decrypt the password.
	KeyPairName string
	// Certificates are the RDP certificates the provider reported for the
	// instance; the server must present one of them.
	Certificates []RDPCertificate
	// RequestID is the AWS request id of the call that returned them.
	RequestID string
}

// RDPCertificate is an RDP server certificate a provider reported.
type RDPCertificate struct {
	// SHA256 is the SHA-256 digest of the certificate (DER).
	SHA256 [sha256.Size]byte
	// NotValidBefore and NotValidAfter bound its validity; zero if not
	// reported.
	NotValidBefore, NotValidAfter time.Time
}

// Fingerprint returns the certificate's SHA-256 fingerprint as RDP
// clients show it: colon-separated hex pairs, upper case.
func (c RDPCertificate) Fingerprint() string { return ColonHex(c.SHA256[:]) }

// ColonHex renders b as "AB:CD:…".
func ColonHex(b []byte) string {
	var sb strings.Builder
	for i, v := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(strings.ToUpper(hex.EncodeToString([]byte{v})))
	}
	return sb.String()
}

// ParseColonHex parses a fingerprint as Lightsail reports it ("ab:cd:…",
// either case, colons optional) into its bytes.
func ParseColonHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil {
		return nil, fmt.Errorf("parsing fingerprint: %w", err)
	}
	return b, nil
}

// Errors of VerifyRDPCertificate, which callers branch on.
var (
	// ErrRDPNoCertificate reports that the provider reported no RDP
	// certificate for the instance.
	ErrRDPNoCertificate = errors.New("no RDP certificate reported for this instance")
	// ErrRDPCertificateMismatch reports that the server presented a
	// certificate other than the reported ones.
	ErrRDPCertificateMismatch = errors.New("RDP certificate does not match the one reported")
	// ErrRDPCertificateExpired reports that the reported certificate the
	// server presented is past its notValidAfter.
	ErrRDPCertificateExpired = errors.New("RDP certificate has expired")
)

// VerifyRDPCertificate checks the DER certificate der that an instance's
// RDP server presented against the reported ones at time now: one of them
// must have its SHA-256 digest, and that one must not have expired.
func (a *RDPAccess) VerifyRDPCertificate(der []byte, now time.Time) (RDPCertificate, error) {
	if len(a.Certificates) == 0 {
		return RDPCertificate{}, ErrRDPNoCertificate
	}
	sum := sha256.Sum256(der)
	for _, c := range a.Certificates {
		if subtle.ConstantTimeCompare(sum[:], c.SHA256[:]) != 1 {
			continue
		}
		if !c.NotValidAfter.IsZero() && !now.Before(c.NotValidAfter) {
			return c, fmt.Errorf("%w (not valid after %s)", ErrRDPCertificateExpired, c.NotValidAfter.UTC().Format(time.RFC3339))
		}
		return c, nil
	}
	return RDPCertificate{SHA256: sum}, ErrRDPCertificateMismatch
}

// Current returns the reported certificates that have not expired at now.
func (a *RDPAccess) Current(now time.Time) []RDPCertificate {
	var out []RDPCertificate
	for _, c := range a.Certificates {
		if c.NotValidAfter.IsZero() || now.Before(c.NotValidAfter) {
			out = append(out, c)
		}
	}
	return out
}
