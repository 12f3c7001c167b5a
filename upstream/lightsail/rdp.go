package lightsail

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lightsail/types"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/internal/secfile"
	"bastion/upstream"
	"bastion/upstream/awsutil"
)

// DefaultRDPPort is the Remote Desktop port of Windows instances.
const DefaultRDPPort = 3389

// rdpCacheTTL is how long a GetInstanceAccessDetails(protocol rdp) answer
// without expiresAt is reused. An answer whose password is not ready yet
// is not reused.
const rdpCacheTTL = 5 * time.Minute

// defaultKeyPair is the key pair of instances created without one: their
// password comes in plain text.
const defaultKeyPair = "LightsailDefaultKeyPair"

// algorithmX509 is the algorithm of the RDP certificates among hostKeys.
const algorithmX509 = "x509-cert"

// rdpCache holds RDP details by instance. Its zero value is ready.
type rdpCache struct {
	mu      sync.Mutex // protects entries
	entries map[cacheKey]rdpEntry
}

// rdpEntry is a cached RDP answer. access is shared and never changed.
type rdpEntry struct {
	access  *rdpDetails
	expires time.Time
}

// rdpDetails is a parsed GetInstanceAccessDetails(protocol rdp) answer.
type rdpDetails struct {
	username        string
	password        string
	pending         bool
	keyPairName     string
	ip              string
	ipv6            []string
	certs           []upstream.RDPCertificate
	requestID       string
	expires         time.Time
	passwordMissing bool
}

// RDP returns the Remote Desktop access of the Windows instance t, from
// GetInstanceAccessDetails with protocol rdp: its address on the
// configured RDP port, the RDP certificates Lightsail reports, and the
// Administrator credentials. A password that Lightsail returns encrypted
// (an instance created with a custom key pair) is decrypted with the key of
// Config.RDPKeyPairs; without one, KeyPairName says which is needed.
// Answers are cached like SSH credentials (until expiresAt, or
// rdpCacheTTL), and concurrent requests for one instance share one call.
func (p *Provider) RDP(ctx context.Context, t upstream.Target) (*upstream.RDPAccess, error) {
	name, err := p.instanceName(t, "getting rdp access")
	if err != nil {
		return nil, err
	}
	k := cacheKey{t.Region, name}
	d := p.cachedRDP(k)
	if d == nil {
		v, err := awsutil.Shared(ctx, &p.flight, "GetInstanceAccessDetails/rdp\x00"+t.Region+"\x00"+name, func(ctx context.Context) (any, error) {
			if d := p.cachedRDP(k); d != nil {
				return d, nil
			}
			d, err := p.getRDPDetails(ctx, t.Region, name)
			if err != nil {
				return nil, err
			}
			if !d.pending && !d.passwordMissing {
				exp := p.cfg.Now().Add(rdpCacheTTL)
				if !d.expires.IsZero() {
					exp = d.expires.Add(-refreshBefore)
				}
				p.rdp.mu.Lock()
				if p.rdp.entries == nil {
					p.rdp.entries = make(map[cacheKey]rdpEntry)
				}
				p.rdp.entries[k] = rdpEntry{access: d, expires: exp}
				p.rdp.mu.Unlock()
			}
			return d, nil
		})
		if err != nil {
			return nil, err
		}
		d = v.(*rdpDetails)
	}
	host, err := p.host(ctx, t, name, &accessDetails{ip: d.ip, ipv6: d.ipv6})
	if err != nil {
		return nil, err
	}
	return &upstream.RDPAccess{
		Addr:            net.JoinHostPort(host, strconv.Itoa(p.rdpPort())),
		Username:        d.username,
		Password:        d.password,
		PasswordPending: d.pending,
		KeyPairName:     d.keyPairName,
		Certificates:    append([]upstream.RDPCertificate(nil), d.certs...),
		RequestID:       d.requestID,
	}, nil
}

// ForgetRDP drops the cached RDP details of t.
func (p *Provider) ForgetRDP(t upstream.Target) {
	name := t.ID
	if name == "" {
		name = t.Name
	}
	p.rdp.mu.Lock()
	defer p.rdp.mu.Unlock()
	delete(p.rdp.entries, cacheKey{t.Region, name})
}

// rdpPort returns the configured RDP port.
func (p *Provider) rdpPort() int {
	if p.cfg.RDPPort > 0 {
		return p.cfg.RDPPort
	}
	return DefaultRDPPort
}

// cachedRDP returns the unexpired cached RDP details of k, or nil.
func (p *Provider) cachedRDP(k cacheKey) *rdpDetails {
	p.rdp.mu.Lock()
	defer p.rdp.mu.Unlock()
	e, ok := p.rdp.entries[k]
	if !ok {
		return nil
	}
	if !p.cfg.Now().Before(e.expires) {
		delete(p.rdp.entries, k)
		return nil
	}
	return e.access
}

// getRDPDetails calls GetInstanceAccessDetails with protocol rdp and
// parses the answer.
func (p *Provider) getRDPDetails(ctx context.Context, region, name string) (*rdpDetails, error) {
	call := p.call("GetInstanceAccessDetails", region, name)
	call.Fields = append(call.Fields, zap.String("protocol", "rdp"))
	call.ExpectedCodes = []string{"InvalidInputException"}
	v, reqID, err := p.accessDetailsCall(ctx, call, region, name, types.InstanceAccessProtocolRdp)
	if awsutil.IsErrorCode(err, "InvalidInputException") {
		// What Lightsail answers for a Linux instance.
		return nil, &upstream.Error{
			Public:    "Lightsail has no Remote Desktop for this instance (not a Windows instance)",
			RequestID: reqID,
			Err:       fmt.Errorf("getting rdp access details of %s in %s: %w", name, region, err),
		}
	}
	if err != nil {
		return nil, err
	}
	d, err := p.parseRDPDetails(v, region, name)
	if err != nil {
		return nil, &upstream.Error{
			Public:    "Lightsail GetInstanceAccessDetails returned unusable RDP access details",
			RequestID: reqID,
			Err:       fmt.Errorf("parsing rdp access details of %s in %s: %w", name, region, err),
		}
	}
	d.requestID = reqID
	return d, nil
}

// parseRDPDetails turns the SDK's answer into RDP details, decrypting the
// password if it came encrypted and its key pair is configured. It never
// puts the password or key material in errors or logs.
func (p *Provider) parseRDPDetails(v *types.InstanceAccessDetails, region, name string) (*rdpDetails, error) {
	if v == nil {
		return nil, errors.New("no access details")
	}
	d := &rdpDetails{
		username: aws.ToString(v.Username),
		password: aws.ToString(v.Password),
		ip:       aws.ToString(v.IpAddress),
		ipv6:     v.Ipv6Addresses,
	}
	if d.username == "" {
		return nil, errors.New("no username")
	}
	if v.ExpiresAt != nil {
		d.expires = *v.ExpiresAt
	}
	for _, hk := range v.HostKeys {
		if aws.ToString(hk.Algorithm) != algorithmX509 {
			continue
		}
		c, err := parseRDPCertificate(hk)
		if err != nil {
			p.log.Warn("skipping unparsable rdp certificate",
				zap.String("instance", name), zap.String("region", region), zap.Error(err))
			continue
		}
		d.certs = append(d.certs, c)
	}
	if d.password != "" {
		return d, nil
	}
	var ciphertext string
	if pd := v.PasswordData; pd != nil {
		ciphertext, d.keyPairName = aws.ToString(pd.Ciphertext), aws.ToString(pd.KeyPairName)
	}
	if ciphertext == "" || d.keyPairName == "" || d.keyPairName == defaultKeyPair {
		d.pending = true
		return d, nil
	}
	file, ok := p.cfg.RDPKeyPairs[d.keyPairName]
	if !ok {
		d.passwordMissing = true
		return d, nil
	}
	pw, err := decryptPassword(file, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("decrypting the password with key pair %q: %w", d.keyPairName, err)
	}
	d.password = pw
	return d, nil
}

// parseRDPCertificate reads an x509-cert host key: its SHA-256 fingerprint
// (colon hex) or, if Lightsail left that out, the digest of the
// certificate in publicKey (base64 DER), and its validity.
func parseRDPCertificate(hk types.HostKeyAttributes) (upstream.RDPCertificate, error) {
	var c upstream.RDPCertificate
	if fp := aws.ToString(hk.FingerprintSHA256); fp != "" {
		b, err := upstream.ParseColonHex(fp)
		if err != nil {
			return c, err
		}
		if len(b) != sha256.Size {
			return c, fmt.Errorf("fingerprintSHA256 has %d bytes, not %d", len(b), sha256.Size)
		}
		copy(c.SHA256[:], b)
	} else {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(aws.ToString(hk.PublicKey)))
		if err != nil || len(der) == 0 {
			return c, errors.New("no fingerprintSHA256 and no certificate in publicKey")
		}
		c.SHA256 = sha256.Sum256(der)
	}
	if hk.NotValidBefore != nil {
		c.NotValidBefore = *hk.NotValidBefore
	}
	if hk.NotValidAfter != nil {
		c.NotValidAfter = *hk.NotValidAfter
	}
	return c, nil
}

// decryptPassword decrypts a Windows password as EC2 GetPasswordData
// encrypts it: base64 of RSA PKCS #1 v1.5 with the key pair's public key.
// The key file is read for each use and not kept.
func decryptPassword(file, ciphertext string) (string, error) {
	data, err := secfile.ReadPrivateKey(file)
	if err != nil {
		return "", fmt.Errorf("reading key pair file: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	clear(data)
	if err != nil {
		return "", fmt.Errorf("parsing key pair file %s: %w", file, err)
	}
	key, ok := raw.(*rsa.PrivateKey)
	if !ok {
		return "", fmt.Errorf("key pair file %s is not an RSA key", file)
	}
	ct, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ciphertext))
	if err != nil {
		return "", fmt.Errorf("decoding ciphertext: %w", err)
	}
	pt, err := rsa.DecryptPKCS1v15(nil, key, ct)
	if err != nil {
		return "", errors.New("the key pair's key does not decrypt the password")
	}
	return string(pt), nil
}

// Interface guard.
var _ upstream.RDPProvider = (*Provider)(nil)
