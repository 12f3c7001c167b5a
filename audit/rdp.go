package audit

// Event types of Remote Desktop forwards (proxy/rdp.go).
const (
	// TypeRDPCertificateVerified: the instance's RDP server presented
	// the certificate the provider reported (host_key_fingerprint, its
	// SHA-256 in colon hex), before the forward was spliced.
	TypeRDPCertificateVerified = "rdp_certificate_verified"
	// TypeRDPCertificateRefused: the forward was refused because the
	// certificate did not match, had expired, was not reported, or the
	// server negotiated no TLS (reason; host_key_fingerprint, what the
	// server presented, when it presented one).
	TypeRDPCertificateRefused = "rdp_certificate_refused"
	// TypeRDPCredentialsIssued: `ssh bastion rdp NAME` handed out an
	// instance's Remote Desktop user name and password (never logged).
	TypeRDPCredentialsIssued = "rdp_credentials_issued"
)
