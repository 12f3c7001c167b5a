// Package sso logs people in through an OpenID provider with the OAuth 2.0
// Device Authorization Grant (RFC 8628), maps the verified ID token's
// claims to a bastion identity, and keeps the bindings of SSH keys to those
// identities (a file, or the fleet's DynamoDB table). The proxy shows the
// device code as a keyboard-interactive prompt (issue 14).
//
// ID tokens are verified by github.com/coreos/go-oidc (issuer, audience,
// expiry with its clock-skew allowance, signature through the provider's
// JWKS); the device grant's polling (interval, slow_down, expiry) is
// golang.org/x/oauth2's. Every HTTP call has a deadline and every response
// body a size limit.
package sso

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Bounds on what the provider can make the bastion wait for or read.
const (
	// DefaultHTTPTimeout bounds one HTTP exchange with the provider.
	DefaultHTTPTimeout = 10 * time.Second
	// MaxBody bounds one response body from the provider.
	MaxBody = 1 << 20
	// MaxLoginWait caps how long one login waits for its approval,
	// whatever expiry the provider gives the code.
	MaxLoginWait = 10 * time.Minute
	// discoveryRetry is how long a failed discovery is remembered before
	// the next login tries again.
	discoveryRetry = 2 * time.Second
)

// Client talks to one OpenID provider. Discovery is lazy: the first login
// fetches the provider's metadata and it is cached; a failure is retried by
// a later login, so a bastion starts and serves configured users while the
// provider is down. The zero value is not usable; set the fields, then use
// it from any goroutine.
type Client struct {
	// Issuer is the provider's issuer URL.
	Issuer string
	// ClientID and ClientSecret are the bastion's client; ClientSecret is
	// "" for a public client. The secret is never logged.
	ClientID     string
	ClientSecret string
	// Scopes are requested with the device authorization.
	Scopes []string
	// HTTP is the client for every request to the provider. If nil, one
	// with DefaultHTTPTimeout, the system's roots, and bodies limited to
	// MaxBody.
	HTTP *http.Client
	// Now is the clock for the ID token's expiry; if nil, time.Now.
	Now func() time.Time

	mu sync.Mutex // protects the fields below
	// disc is the cached discovery; nil until one succeeds.
	disc *discovery
	// failedAt and failErr are the last failed discovery.
	failedAt time.Time
	failErr  error
	httpOnce sync.Once
	http     *http.Client
}

// discovery is what the provider's metadata gives a login.
type discovery struct {
	endpoint oauth2.Endpoint
	verifier *oidc.IDTokenVerifier
	once     sync.Once
	cfg      *oauth2.Config
}

// Device is a device authorization in progress: what the person must do,
// and what the bastion polls with.
type Device struct {
	// VerificationURI is where the person goes; VerificationURIComplete,
	// if the provider gives one, carries the code too.
	VerificationURI         string
	VerificationURIComplete string
	// UserCode is the code the person enters.
	UserCode string
	// Expiry is when the code expires.
	Expiry time.Time

	resp *oauth2.DeviceAuthResponse
	cfg  *oauth2.Config
	disc *discovery
}

// Prompt returns the instruction shown to the person: where to go and the
// code to enter.
func (d *Device) Prompt() string {
	s := fmt.Sprintf("bastion: to log in, open %s and enter the code %s", d.VerificationURI, d.UserCode)
	if d.VerificationURIComplete != "" {
		s += fmt.Sprintf(" (or open %s)", d.VerificationURIComplete)
	}
	return s + "\nbastion: waiting for the approval..."
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) client() *http.Client {
	c.httpOnce.Do(func() {
		c.http = c.HTTP
		if c.http == nil {
			c.http = NewHTTPClient(DefaultHTTPTimeout)
		}
	})
	return c.http
}

// NewHTTPClient returns a client for an OpenID provider: every exchange
// bounded by timeout, dials and TLS handshakes by less, the system's roots,
// no proxy from the environment beyond the standard one, and every
// response body cut off (with an error) after MaxBody bytes.
func NewHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: timeout / 2}).DialContext
	t.TLSHandshakeTimeout = timeout / 2
	t.ResponseHeaderTimeout = timeout
	t.MaxResponseHeaderBytes = 64 << 10
	return &http.Client{Timeout: timeout, Transport: limitTransport{t}}
}

// limitTransport limits every response body to MaxBody bytes: go-oidc
// reads discovery and JWKS bodies whole.
type limitTransport struct{ rt http.RoundTripper }

func (l limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: MaxBody}
	return resp, nil
}

// errBodyTooLarge is a provider's response longer than MaxBody.
var errBodyTooLarge = fmt.Errorf("response body longer than %d bytes", MaxBody)

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// discover returns the provider's metadata, fetching it if no earlier
// call succeeded (at most once per discoveryRetry after a failure).
func (c *Client) discover(ctx context.Context) (*discovery, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.disc != nil {
		return c.disc, nil
	}
	if c.failErr != nil && c.now().Sub(c.failedAt) < discoveryRetry {
		return nil, c.failErr
	}
	// The lock is held across the fetch: logins arriving meanwhile wait
	// for this one rather than each fetching; the fetch is bounded by
	// the client's timeout.
	hctx := oidc.ClientContext(ctx, c.client())
	p, err := oidc.NewProvider(hctx, c.Issuer)
	if err != nil {
		c.failedAt, c.failErr = c.now(), unreachable(fmt.Errorf("discovering %s: %w", c.Issuer, err))
		return nil, c.failErr
	}
	ep := p.Endpoint()
	if ep.DeviceAuthURL == "" || ep.TokenURL == "" {
		c.failedAt, c.failErr = c.now(), unreachable(fmt.Errorf("discovering %s: no device_authorization_endpoint or token_endpoint", c.Issuer))
		return nil, c.failErr
	}
	// The key set fetches with a context of its own: one without
	// cancellation, carrying the bounded client.
	ksctx := oidc.ClientContext(context.Background(), c.client())
	c.disc = &discovery{endpoint: ep, verifier: p.VerifierContext(ksctx, &oidc.Config{ClientID: c.ClientID, Now: c.Now})}
	c.failErr = nil
	return c.disc, nil
}

// oauth returns the OAuth client of d. A public client sends its
// client_id in the request body (RFC 6749 §2.3); a confidential one's
// style is detected once, then remembered by the config, which d keeps.
func (c *Client) oauth(d *discovery) *oauth2.Config {
	d.once.Do(func() {
		ep := d.endpoint
		if c.ClientSecret == "" {
			ep.AuthStyle = oauth2.AuthStyleInParams
		}
		d.cfg = &oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, Endpoint: ep, Scopes: c.Scopes}
	})
	return d.cfg
}

// Start begins a device authorization (RFC 8628 §3.1).
func (c *Client) Start(ctx context.Context) (*Device, error) {
	d, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	cfg := c.oauth(d)
	var opts []oauth2.AuthCodeOption
	if c.ClientSecret != "" {
		// x/oauth2 sends only client_id with the device authorization
		// request; a confidential client authenticates there too
		// (RFC 8628 §3.1, RFC 6749 §2.3.1).
		opts = append(opts, oauth2.SetAuthURLParam("client_secret", c.ClientSecret))
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	resp, err := cfg.DeviceAuth(context.WithValue(ctx, oauth2.HTTPClient, c.client()), opts...)
	if err != nil {
		return nil, classifyOAuth(fmt.Errorf("starting the device authorization: %w", err))
	}
	if resp.DeviceCode == "" || resp.UserCode == "" || resp.VerificationURI == "" {
		return nil, &Refusal{Label: LabelInvalidToken, Reason: "no device code", Err: errors.New("device authorization without device_code, user_code or verification_uri")}
	}
	if !printable(resp.UserCode, 64) || !printable(resp.VerificationURI, 512) || !printable(resp.VerificationURIComplete, 1024) {
		return nil, &Refusal{Label: LabelInvalidToken, Reason: "malformed device code", Err: errors.New("device authorization with a control character or an oversized field")}
	}
	now := c.now()
	if resp.Expiry.IsZero() || resp.Expiry.Sub(now) > MaxLoginWait {
		resp.Expiry = now.Add(MaxLoginWait)
	}
	return &Device{VerificationURI: resp.VerificationURI, VerificationURIComplete: resp.VerificationURIComplete,
		UserCode: resp.UserCode, Expiry: resp.Expiry, resp: resp, cfg: cfg, disc: d}, nil
}

// Wait polls the token endpoint until the person approves or denies, the
// code expires or ctx ends (RFC 8628 §3.4, §3.5), then verifies the ID
// token and returns it.
func (c *Client) Wait(parent context.Context, d *Device) (*oidc.IDToken, error) {
	ctx, cancel := context.WithDeadline(parent, d.Expiry)
	defer cancel()
	// The code's expiry is ctx's deadline alone: x/oauth2 would set one
	// of its own at the same instant, and which of the two fired first
	// would decide whether the refusal says "expired".
	resp := *d.resp
	resp.Expiry = time.Time{}
	tok, err := d.cfg.DeviceAccessToken(context.WithValue(ctx, oauth2.HTTPClient, c.client()), &resp)
	if err != nil {
		// ctx differs from parent only by the code's expiry.
		if ctx.Err() != nil && parent.Err() == nil {
			return nil, &Refusal{Label: LabelExpired, Err: err}
		}
		return nil, classifyOAuth(fmt.Errorf("polling the token endpoint: %w", err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, &Refusal{Label: LabelInvalidToken, Reason: "no ID token", Err: errors.New("token response without id_token")}
	}
	vctx, vcancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer vcancel()
	idt, err := d.disc.verifier.Verify(vctx, raw)
	if err != nil {
		return nil, &Refusal{Label: LabelInvalidToken, Reason: tokenReason(err), Err: err}
	}
	return idt, nil
}

// tokenReason names, in a few words, why go-oidc refused an ID token.
func tokenReason(err error) string {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return "expired"
	case strings.Contains(msg, "audience"):
		return "wrong audience"
	case strings.Contains(msg, "issued by a different provider"), strings.Contains(msg, "issuer"):
		return "wrong issuer"
	case strings.Contains(msg, "signature"):
		return "bad signature"
	case strings.Contains(msg, "malformed"):
		return "malformed"
	}
	return "not verified"
}

// classifyOAuth turns an error of x/oauth2 into a Refusal: the provider
// denied, the code expired, or the provider could not be reached or
// answered nonsense.
func classifyOAuth(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch re.ErrorCode {
		case "access_denied":
			return &Refusal{Label: LabelDenied, Err: err}
		case "expired_token":
			return &Refusal{Label: LabelExpired, Err: err}
		case "":
			return unreachable(err)
		}
		return &Refusal{Label: LabelInvalidToken, Reason: "provider error " + safe(re.ErrorCode, 40), Err: err}
	}
	// Timeouts, refused connections, bodies over MaxBody, nonsense.
	return unreachable(err)
}

func unreachable(err error) error { return &Refusal{Label: LabelUnreachable, Err: err} }

// printable reports whether s is at most max bytes of printable ASCII.
func printable(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// clip cuts s to n bytes.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
