package lightsail

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lightsail"
	"github.com/aws/aws-sdk-go-v2/service/lightsail/types"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/upstream"
	"bastion/upstream/awsutil"
)

// hostKeySource completes "upstream host key does not match …".
const hostKeySource = "the host keys AWS reported for this Lightsail instance"

// accessDetails is a parsed GetInstanceAccessDetails answer. It is
// immutable once built, so cached values are shared without locking.
type accessDetails struct {
	signer    ssh.Signer
	username  string
	ip        string
	ipv6      []string
	hostKeys  []ssh.PublicKey
	expires   time.Time
	requestID string
	// handedOut is set, under Provider.mu, once a Credentials call has
	// used these details, so that a Prefetch that shared the call does
	// not keep them for another.
	handedOut bool
}

// Credentials returns the temporary certificate credentials Lightsail
// issues for t. Lightsail issues them for one user only: any other osUser
// fails with an *upstream.Error wrapping upstream.ErrUserMismatch. Answers
// are cached per instance until a minute before they expire, and concurrent
// requests for one instance share one call.
func (p *Provider) Credentials(ctx context.Context, t upstream.Target, osUser string) (*upstream.Credentials, error) {
	name, err := p.instanceName(t, "getting credentials")
	if err != nil {
		return nil, err
	}

	// A recent GetInstance tells the user without issuing a key pair.
	if in, ok := p.cachedInstance(cacheKey{t.Region, name}); ok && in != nil && in.username != "" && in.username != osUser {
		return nil, userMismatch(t, osUser, in.username)
	}

	ad, err := p.accessDetails(ctx, t.Region, name)
	if err != nil {
		return nil, err
	}
	if osUser != ad.username {
		return nil, userMismatch(t, osUser, ad.username)
	}

	host, err := p.host(ctx, t, name, ad)
	if err != nil {
		return nil, err
	}
	return &upstream.Credentials{
		Addr:              net.JoinHostPort(host, strconv.Itoa(p.cfg.Port)),
		User:              ad.username,
		Signer:            ad.signer,
		HostKeyCallback:   upstream.PinnedHostKeys(t.String(), hostKeySource, ad.hostKeys...),
		HostKeyAlgorithms: upstream.HostKeyAlgorithms(ad.hostKeys...),
		HostKeySource:     "lightsail",
		Expires:           ad.expires,
		RequestID:         ad.requestID,
	}, nil
}

// instanceName returns the Lightsail instance name of t, after checking
// that t is a Lightsail target in a configured region; doing names the
// call in errors.
func (p *Provider) instanceName(t upstream.Target, doing string) (string, error) {
	if t.Provider != upstream.ProviderLightsail {
		return "", fmt.Errorf("lightsail: target %s belongs to provider %q", t, t.Provider)
	}
	if p.clients[t.Region] == nil {
		return "", &upstream.Error{
			Public: "Lightsail region " + t.Region + " is not configured",
			Err:    fmt.Errorf("%s for %s: region %q not configured", doing, t, t.Region),
		}
	}
	name := t.ID
	if name == "" {
		name = t.Name
	}
	if !validName.MatchString(name) {
		return "", fmt.Errorf("lightsail: target %s has no valid instance name", t)
	}
	return name, nil
}

// userMismatch is the error for an OS user Lightsail does not issue
// credentials for.
func userMismatch(t upstream.Target, osUser, admitted string) error {
	return &upstream.Error{
		Public: "this Lightsail instance admits only " + admitted,
		Err:    fmt.Errorf("logging in to %s as %s: %w", t, osUser, upstream.ErrUserMismatch),
	}
}

// host returns the address to dial for the configured address choice.
func (p *Provider) host(ctx context.Context, t upstream.Target, name string, ad *accessDetails) (string, error) {
	if p.cfg.Address == AddressPrivate {
		in, err := p.instance(ctx, t.Region, name)
		if err != nil {
			return "", err
		}
		if in == nil {
			return "", &upstream.Error{
				Public: "this Lightsail instance no longer exists",
				Err:    fmt.Errorf("getting credentials for %s: %w", t, upstream.ErrNotFound),
			}
		}
		if in.privateIP == "" {
			return "", &upstream.Error{
				Public: "this Lightsail instance has no private IP address",
				Err:    fmt.Errorf("getting credentials for %s: no private ip address", t),
			}
		}
		return in.privateIP, nil
	}
	switch {
	case ad.ip != "":
		return ad.ip, nil
	case len(ad.ipv6) > 0:
		return ad.ipv6[0], nil
	}
	return "", &upstream.Error{
		Public: "this Lightsail instance has no public IP address",
		Err:    fmt.Errorf("getting credentials for %s: no ip address in access details", t),
	}
}

// prefetchTTL is how long access details fetched ahead by Prefetch wait for
// the Credentials call they were fetched for.
const prefetchTTL = 15 * time.Second

// prefetch is access details fetched ahead, with when.
type prefetch struct {
	ad *accessDetails
	at time.Time
}

// Prefetch starts GetInstanceAccessDetails for t (Lightsail issues the
// credentials for the instance's one user, whoever asks), so that the
// Credentials call that follows the person's inner handshake joins the call
// in flight or, if it comes later, finds the answer kept for it. Errors are
// left for that call to meet.
func (p *Provider) Prefetch(ctx context.Context, t upstream.Target) {
	name := t.ID
	if name == "" {
		name = t.Name
	}
	if t.Provider != upstream.ProviderLightsail || p.clients[t.Region] == nil || !validName.MatchString(name) {
		return
	}
	k := cacheKey{t.Region, name}
	if p.cachedAccess(k) != nil {
		return
	}
	ad, err := p.sharedAccess(ctx, t.Region, name)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.access[k] != ad && !ad.handedOut {
		// Too close to expiry to cache, and not yet used: keep it for
		// the Credentials call it was fetched for.
		p.prefetched[k] = prefetch{ad: ad, at: p.cfg.Now()}
	}
}

// prefetchMinLife is the least validity prefetched details must have left
// to be used: enough for the upstream handshake.
const prefetchMinLife = 10 * time.Second

// takePrefetched returns, once, access details that Prefetch fetched for k
// recently and that stay valid long enough.
func (p *Provider) takePrefetched(k cacheKey) *accessDetails {
	p.mu.Lock()
	defer p.mu.Unlock()
	pf, ok := p.prefetched[k]
	if !ok {
		return nil
	}
	delete(p.prefetched, k)
	now := p.cfg.Now()
	if now.Sub(pf.at) > prefetchTTL || !now.Add(prefetchMinLife).Before(pf.ad.expires) {
		return nil
	}
	pf.ad.handedOut = true
	return pf.ad
}

// accessDetails returns the instance's access details from the cache, a
// prefetch or GetInstanceAccessDetails, for a Credentials call.
func (p *Provider) accessDetails(ctx context.Context, region, name string) (*accessDetails, error) {
	k := cacheKey{region, name}
	if ad := p.cachedAccess(k); ad != nil {
		return ad, nil
	}
	if ad := p.takePrefetched(k); ad != nil {
		return ad, nil
	}
	ad, err := p.sharedAccess(ctx, region, name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ad.handedOut = true
	if pf, ok := p.prefetched[k]; ok && pf.ad == ad {
		delete(p.prefetched, k)
	}
	return ad, nil
}

// sharedAccess calls GetInstanceAccessDetails, sharing the call with
// concurrent callers for the same instance, and caches answers that are
// far enough from expiry.
func (p *Provider) sharedAccess(ctx context.Context, region, name string) (*accessDetails, error) {
	k := cacheKey{region, name}
	v, err := awsutil.Shared(ctx, &p.flight, "GetInstanceAccessDetails\x00"+region+"\x00"+name, func(ctx context.Context) (any, error) {
		if ad := p.cachedAccess(k); ad != nil {
			return ad, nil
		}
		ad, err := p.getAccessDetails(ctx, region, name)
		if err != nil {
			return nil, err
		}
		if p.cfg.Now().Before(ad.expires.Add(-refreshBefore)) {
			p.mu.Lock()
			p.access[k] = ad
			p.mu.Unlock()
		}
		return ad, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*accessDetails), nil
}

// cachedAccess returns cached access details for k that are not within
// refreshBefore of expiring, or nil.
func (p *Provider) cachedAccess(k cacheKey) *accessDetails {
	p.mu.Lock()
	defer p.mu.Unlock()
	ad := p.access[k]
	if ad == nil {
		return nil
	}
	if !p.cfg.Now().Before(ad.expires.Add(-refreshBefore)) {
		delete(p.access, k)
		return nil
	}
	return ad
}

// getAccessDetails calls GetInstanceAccessDetails and parses the answer.
func (p *Provider) getAccessDetails(ctx context.Context, region, name string) (*accessDetails, error) {
	v, reqID, err := p.accessDetailsCall(ctx, p.call("GetInstanceAccessDetails", region, name), region, name, types.InstanceAccessProtocolSsh)
	if err != nil {
		return nil, err
	}
	ad, err := p.parseAccessDetails(v, region, name)
	if err != nil {
		return nil, &upstream.Error{
			Public:    "Lightsail GetInstanceAccessDetails returned unusable credentials",
			RequestID: reqID,
			Err:       fmt.Errorf("parsing access details of %s in %s: %w", name, region, err),
		}
	}
	ad.requestID = reqID
	return ad, nil
}

// accessDetailsCall calls GetInstanceAccessDetails for one protocol through
// awsutil.Do, which gives it its deadline, retries and log line.
func (p *Provider) accessDetailsCall(ctx context.Context, call awsutil.Call, region, name string, protocol types.InstanceAccessProtocol) (*types.InstanceAccessDetails, string, error) {
	out, reqID, err := awsutil.Do(ctx, call, func(ctx context.Context) (*lightsail.GetInstanceAccessDetailsOutput, middleware.Metadata, error) {
		out, err := p.clients[region].GetInstanceAccessDetails(ctx, &lightsail.GetInstanceAccessDetailsInput{
			InstanceName: aws.String(name),
			Protocol:     protocol,
		})
		if err != nil {
			return nil, middleware.Metadata{}, err
		}
		return out, out.ResultMetadata, nil
	})
	if err != nil {
		return nil, reqID, err
	}
	return out.AccessDetails, reqID, nil
}

// parseAccessDetails turns the SDK's answer into a certificate signer, the
// accepted host keys and the expiry. It never puts key material in errors
// or logs.
func (p *Provider) parseAccessDetails(v *types.InstanceAccessDetails, region, name string) (*accessDetails, error) {
	if v == nil {
		return nil, errors.New("no access details")
	}
	ad := &accessDetails{
		username: aws.ToString(v.Username),
		ip:       aws.ToString(v.IpAddress),
		ipv6:     v.Ipv6Addresses,
	}
	if ad.username == "" {
		return nil, errors.New("no username")
	}
	if aws.ToString(v.PrivateKey) == "" || aws.ToString(v.CertKey) == "" {
		return nil, errors.New("no private key or certificate")
	}
	key, err := ssh.ParsePrivateKey([]byte(aws.ToString(v.PrivateKey)))
	if err != nil {
		// The parser's message does not quote the key.
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(aws.ToString(v.CertKey)))
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("certKey is a %s key, not a certificate", pub.Type())
	}
	if ad.signer, err = ssh.NewCertSigner(cert, key); err != nil {
		return nil, fmt.Errorf("pairing certificate and key: %w", err)
	}

	switch {
	case v.ExpiresAt != nil:
		ad.expires = *v.ExpiresAt
	case cert.ValidBefore != ssh.CertTimeInfinity:
		ad.expires = time.Unix(int64(cert.ValidBefore), 0)
	}

	for _, hk := range v.HostKeys {
		k, err := parseHostKey(hk)
		if err != nil {
			p.log.Warn("skipping unparsable host key",
				zap.String("instance", name), zap.String("region", region),
				zap.String("algorithm", aws.ToString(hk.Algorithm)), zap.Error(err))
			continue
		}
		if k != nil {
			ad.hostKeys = append(ad.hostKeys, k)
		}
	}
	if len(ad.hostKeys) == 0 {
		return nil, errors.New("no SSH host keys")
	}
	return ad, nil
}

// parseHostKey parses one reported host key; it returns nil for entries
// that are not SSH keys (RDP certificates). Lightsail reports the key as
// the base64 wire form next to its algorithm; the authorized_keys form
// ("ssh-ed25519 AAAA…") is accepted too.
func parseHostKey(hk types.HostKeyAttributes) (ssh.PublicKey, error) {
	algo := aws.ToString(hk.Algorithm)
	s := strings.TrimSpace(aws.ToString(hk.PublicKey))
	if algo == "x509-cert" || s == "" {
		return nil, nil
	}
	var (
		k   ssh.PublicKey
		err error
	)
	if strings.ContainsRune(s, ' ') {
		k, _, _, _, err = ssh.ParseAuthorizedKey([]byte(s))
	} else {
		var b []byte
		if b, err = base64.StdEncoding.DecodeString(s); err == nil {
			k, err = ssh.ParsePublicKey(b)
		}
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}
