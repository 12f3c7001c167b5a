// Package testidp is a real OpenID provider for the tests: zitadel/oidc's
// OP (discovery, JWKS, device authorization and token endpoints are the
// OP's own) over its example in-memory storage, with a verification page a
// test drives as a person's browser would, hostile token modes and an
// "unreachable" switch. It serves plain http on 127.0.0.1 only.
//
// It must never be linked into the bastion binary; only tests import it.
package testidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person the IdP knows.
type User struct {
	Username      string // preferred_username, also the login at the "browser" form
	Email         string
	EmailVerified bool
	Groups        []string
	Subject       string // default: derived from Username, stable
}

// Options configure the IdP. Zero values take the documented defaults.
type Options struct {
	ClientID      string // default "bastion"
	ClientSecret  string // "" = public client (auth method none)
	Users         []User
	DeviceCodeTTL time.Duration // default 5m; tests set a few seconds for "expired code"
	Interval      time.Duration // polling interval the IdP announces, whole seconds; default 1s
	IDTokenTTL    time.Duration // default 1h
}

// Mode says how ID tokens come out of the token endpoint.
type Mode int32

const (
	// Normal tokens are the OP's own.
	Normal Mode = iota
	// WrongAudience tokens are issued to another client (aud and azp).
	WrongAudience
	// UnknownKey tokens are signed by a key not in the JWKS, with a key ID
	// of the same format as the OP's.
	UnknownKey
	// Expired tokens have exp in the past.
	Expired
)

// otherAudience is the client WrongAudience tokens are issued to.
const otherAudience = "another-client"

// formPath is the verification page (verification_uri).
const formPath = "/device"

// IdP is a running OpenID provider.
type IdP struct {
	issuer    string
	tokenPath string
	store     *store
	srv       *http.Server
	served    chan struct{} // closed when srv.Serve has returned
	browser   *http.Client  // Approve and Deny post the form with it

	// unknownKey signs UnknownKey tokens; it is in no JWKS.
	unknownKey   *rsa.PrivateKey
	unknownKeyID string

	mode atomic.Int32
	down atomic.Bool

	mu       sync.Mutex // protects requests, active, stopped
	requests map[string]int
	active   int  // requests being handled
	stopped  bool // Stop was called: no new request is handled
	idle     *sync.Cond
}

// Start serves the IdP on 127.0.0.1 (a listener on port 0 it makes itself)
// and stops it in t.Cleanup.
func Start(t testing.TB, o Options) *IdP {
	t.Helper()
	i, err := start(o)
	if err != nil {
		t.Fatalf("starting the test IdP: %v", err)
	}
	t.Cleanup(i.Stop)
	return i
}

func start(o Options) (*IdP, error) {
	if o.ClientID == "" {
		o.ClientID = "bastion"
	}
	if o.DeviceCodeTTL == 0 {
		o.DeviceCodeTTL = 5 * time.Minute
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	if o.IDTokenTTL == 0 {
		o.IDTokenTTL = time.Hour
	}
	// The OP announces whole seconds; 0 would mean "the default of 5s" to
	// every client (RFC 8628 §3.2).
	if o.Interval < time.Second {
		return nil, fmt.Errorf("interval %s: the IdP announces whole seconds, at least 1s", o.Interval)
	}
	if o.DeviceCodeTTL < time.Second {
		return nil, fmt.Errorf("device code TTL %s: the IdP announces whole seconds, at least 1s", o.DeviceCodeTTL)
	}

	u := &users{bySub: map[string]User{}}
	for _, usr := range o.Users {
		u.add(usr)
	}
	st := newStore(o, u)

	unknown, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating the unknown key: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	issuer := "http://" + ln.Addr().String()

	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		ln.Close()
		return nil, fmt.Errorf("generating the OP's crypto key: %w", err)
	}
	quiet := slog.New(slog.DiscardHandler)
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:       cryptoKey,
		CodeMethodS256:  true,
		AuthMethodPost:  true,
		SupportedClaims: slices.Concat(op.DefaultSupportedClaims, []string{claimGroups}),
		SupportedScopes: slices.Concat(op.DefaultSupportedScopes, []string{scopeGroups}),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     o.DeviceCodeTTL,
			PollInterval: o.Interval,
			UserFormPath: formPath,
			UserCode:     op.UserCodeBase20,
		},
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure(), op.WithLogger(quiet))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("creating the OP: %w", err)
	}
	tokenURL, err := url.Parse(provider.TokenEndpoint().Absolute(issuer))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("parsing the token endpoint: %w", err)
	}

	i := &IdP{
		issuer:       issuer,
		tokenPath:    tokenURL.Path,
		store:        st,
		served:       make(chan struct{}),
		browser:      &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
		unknownKey:   unknown,
		unknownKeyID: uuid.NewString(),
		requests:     map[string]int{},
	}
	i.idle = sync.NewCond(&i.mu)

	mux := http.NewServeMux()
	mux.HandleFunc(formPath, i.serveForm)
	mux.Handle(i.tokenPath, i.rewriteTokens(provider))
	mux.Handle("/", provider)
	i.srv = &http.Server{
		Handler:           i.front(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(i.served)
		i.srv.Serve(ln)
	}()
	return i, nil
}

// front counts requests, answers 503 while the IdP is down, and tracks the
// requests in flight so that Stop can wait for them.
func (i *IdP) front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.mu.Lock()
		i.requests[r.URL.Path]++
		if i.stopped {
			i.mu.Unlock()
			http.Error(w, "stopped", http.StatusServiceUnavailable)
			return
		}
		i.active++
		i.mu.Unlock()
		defer func() {
			i.mu.Lock()
			i.active--
			i.idle.Broadcast()
			i.mu.Unlock()
		}()
		if i.down.Load() {
			http.Error(w, "the identity provider is down", http.StatusServiceUnavailable)
			return
		}
		if err := postToBasic(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// postToBasic turns client_secret_post credentials into the Basic
// authorization the OP's device flow reads (its client authentication
// there knows only client_secret_basic and JWT assertions), so that the
// IdP accepts both methods as most IdPs do.
func postToBasic(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost || r.Header.Get("Authorization") != "" {
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("bad form: %w", err)
	}
	secret := r.PostForm.Get("client_secret")
	if secret == "" {
		return nil
	}
	r.SetBasicAuth(url.QueryEscape(r.PostForm.Get("client_id")), url.QueryEscape(secret))
	r.PostForm.Del("client_secret")
	r.Form.Del("client_secret")
	return nil
}

// Issuer returns the issuer URL, "http://127.0.0.1:PORT".
func (i *IdP) Issuer() string { return i.issuer }

// AddUser adds (or replaces, by subject) a user.
func (i *IdP) AddUser(u User) { i.store.users.add(u) }

// SetMode switches how ID tokens come out of the token endpoint from now
// on.
func (i *IdP) SetMode(m Mode) { i.mode.Store(int32(m)) }

// SetDown(true) makes every endpoint answer 503, as an unreachable IdP
// behind a load balancer would; SetDown(false) brings it back.
func (i *IdP) SetDown(down bool) { i.down.Store(down) }

// Requests counts the HTTP requests the IdP received for path (down or
// not), e.g. "/device_authorization".
func (i *IdP) Requests(path string) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.requests[path]
}

// WaitPending waits (deadline from ctx) until a device authorization with
// a user code not yet approved, denied or expired exists and returns its
// user code (the oldest such).
func (i *IdP) WaitPending(ctx context.Context) (string, error) {
	for {
		code, ok, changed := i.store.pending()
		if ok {
			return code, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for a pending device authorization: %w", context.Cause(ctx))
		}
	}
}

// Approve approves userCode as username, posting the verification page's
// form as the person's browser would.
func (i *IdP) Approve(userCode, username string) error {
	return i.post(url.Values{"user_code": {userCode}, "username": {username}, "action": {"approve"}})
}

// Deny denies userCode, posting the verification page's form.
func (i *IdP) Deny(userCode string) error {
	return i.post(url.Values{"user_code": {userCode}, "action": {"deny"}})
}

func (i *IdP) post(form url.Values) error {
	resp, err := i.browser.PostForm(i.issuer+formPath, form)
	if err != nil {
		return fmt.Errorf("posting the device form: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("posting the device form: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Stop stops the IdP for good: new requests are refused, the listener and
// connections are closed, and Stop returns when no handler runs any more.
// It is safe to call more than once.
func (i *IdP) Stop() {
	i.mu.Lock()
	i.stopped = true
	i.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := i.srv.Shutdown(ctx); err != nil {
		i.srv.Close()
	}
	<-i.served
	i.mu.Lock()
	for i.active > 0 {
		i.idle.Wait()
	}
	i.mu.Unlock()
	i.browser.CloseIdleConnections()
}
