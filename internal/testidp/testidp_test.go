package testidp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

var (
	alice = User{Username: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"dev", "ops"}}
	bob   = User{Username: "bob", Email: "bob@example.org"}
)

// rp is a relying party as the bastion is one: discovery with go-oidc,
// the device flow with x/oauth2, the ID token verified by go-oidc.
type rp struct {
	ctx         context.Context
	client      *http.Client
	deviceCodes map[string]string // user code → device code
	conf        *oauth2.Config
	verifier    *oidc.IDTokenVerifier
}

func newRP(t *testing.T, idp *IdP, clientID, secret string) *rp {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx = oidc.ClientContext(ctx, hc)
	p, err := oidc.NewProvider(ctx, idp.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if p.Endpoint().DeviceAuthURL != idp.Issuer()+"/device_authorization" {
		t.Fatalf("got device authorization endpoint %q, want %q", p.Endpoint().DeviceAuthURL, idp.Issuer()+"/device_authorization")
	}
	return &rp{
		ctx:         ctx,
		client:      hc,
		deviceCodes: map[string]string{},
		conf: &oauth2.Config{
			ClientID:     clientID,
			ClientSecret: secret,
			Endpoint:     p.Endpoint(),
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile", "groups"},
		},
		verifier: p.Verifier(&oidc.Config{ClientID: "bastion"}),
	}
}

type claims struct {
	Subject           string   `json:"sub"`
	PreferredUsername string   `json:"preferred_username"`
	Email             string   `json:"email"`
	EmailVerified     *bool    `json:"email_verified"`
	Groups            []string `json:"groups"`
}

// login runs the device flow to the end: decide is called with the user
// code the IdP holds pending, and the ID token is verified.
func (c *rp) login(t *testing.T, idp *IdP, decide func(code string) error) (*oidc.IDToken, error) {
	t.Helper()
	da, err := c.conf.DeviceAuth(c.ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	c.deviceCodes[da.UserCode] = da.DeviceCode
	if da.VerificationURI != idp.Issuer()+"/device" {
		t.Errorf("got verification_uri %q, want %q", da.VerificationURI, idp.Issuer()+"/device")
	}
	pending, err := idp.WaitPending(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pending != da.UserCode {
		t.Fatalf("got pending code %q, want %q", pending, da.UserCode)
	}
	done := make(chan error, 1)
	go func() { done <- decide(da.UserCode) }()
	tok, err := c.conf.DeviceAccessToken(c.ctx, da)
	if derr := <-done; derr != nil {
		t.Fatalf("deciding at the IdP: %v", derr)
	}
	if err != nil {
		return nil, err
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		t.Fatal("token response has no id_token")
	}
	return c.verifier.Verify(c.ctx, raw)
}

func TestApproveVerifiesWithGroups(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{Users: []User{alice, bob}})
	c := newRP(t, idp, "bastion", "")

	for _, tc := range []struct {
		user       User
		wantGroups []string
		verified   bool
	}{
		{alice, []string{"dev", "ops"}, true},
		{bob, []string{}, false},
	} {
		t.Run(tc.user.Username, func(t *testing.T) {
			id, err := c.login(t, idp, func(code string) error { return idp.Approve(code, tc.user.Username) })
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			var cl claims
			if err := id.Claims(&cl); err != nil {
				t.Fatal(err)
			}
			if cl.Subject != subjectOf(tc.user.Username) || id.Subject != cl.Subject {
				t.Errorf("got sub %q, want %q", cl.Subject, subjectOf(tc.user.Username))
			}
			if cl.PreferredUsername != tc.user.Username {
				t.Errorf("got preferred_username %q, want %q", cl.PreferredUsername, tc.user.Username)
			}
			if cl.Email != tc.user.Email {
				t.Errorf("got email %q, want %q", cl.Email, tc.user.Email)
			}
			if cl.EmailVerified == nil || *cl.EmailVerified != tc.verified {
				t.Errorf("got email_verified %v, want %v", cl.EmailVerified, tc.verified)
			}
			if cl.Groups == nil || !slices.Equal(cl.Groups, tc.wantGroups) {
				t.Errorf("got groups %#v, want %#v", cl.Groups, tc.wantGroups)
			}
			if !slices.Equal(id.Audience, []string{"bastion"}) {
				t.Errorf("got aud %v, want [bastion]", id.Audience)
			}
		})
	}
}

func TestIDTokenTTLAndExplicitSubject(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{IDTokenTTL: 90 * time.Second})
	idp.AddUser(User{Username: "carol", Subject: "carol-sub"})
	c := newRP(t, idp, "bastion", "")
	before := time.Now()
	id, err := c.login(t, idp, func(code string) error { return idp.Approve(code, "carol") })
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if id.Subject != "carol-sub" {
		t.Errorf("got sub %q, want carol-sub", id.Subject)
	}
	if lo, hi := before.Add(89*time.Second), time.Now().Add(91*time.Second); id.Expiry.Before(lo) || id.Expiry.After(hi) {
		t.Errorf("got exp %s, want within [%s, %s]", id.Expiry, lo, hi)
	}
}

func TestDenyAndExpiryGiveRFC8628Errors(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{Users: []User{alice}, DeviceCodeTTL: 2 * time.Second})
	c := newRP(t, idp, "bastion", "")

	t.Run("denied", func(t *testing.T) {
		_, err := c.login(t, idp, idp.Deny)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
			t.Fatalf("got %v, want the oauth2 error access_denied", err)
		}
	})

	t.Run("expired", func(t *testing.T) {
		var code string
		// x/oauth2 stops polling at the expiry it was told.
		_, err := c.login(t, idp, func(uc string) error { code = uc; return nil })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the client to give up at the expiry", err)
		}
		// The token endpoint itself says expired_token once the server's
		// expiry has passed too.
		if got := c.pollUntilNotPending(t, code); got != "expired_token" {
			t.Errorf("got error %q, want expired_token", got)
		}
		if err := idp.Approve(code, "alice"); err == nil || !strings.Contains(err.Error(), "code expired") {
			t.Errorf("approving an expired code: got %v, want it refused as expired", err)
		}
	})
}

// pollUntilNotPending polls the token endpoint by hand for the device
// code of userCode's authorization and returns the first error code that
// is not authorization_pending.
func (c *rp) pollUntilNotPending(t *testing.T, userCode string) string {
	t.Helper()
	deviceCode := c.deviceCodes[userCode]
	if deviceCode == "" {
		t.Fatalf("no device code for %s", userCode)
	}
	for {
		form := url.Values{"client_id": {c.conf.ClientID}, "grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}}
		req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.conf.Endpoint.TokenURL, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatalf("polling: %v", err)
		}
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decoding the token response: %v", err)
		}
		if body.Error != "authorization_pending" {
			return body.Error
		}
		select {
		case <-c.ctx.Done():
			t.Fatal(c.ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestHostileModesFailVerification(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{Users: []User{alice}})
	c := newRP(t, idp, "bastion", "")
	approve := func(code string) error { return idp.Approve(code, "alice") }
	for _, tc := range []struct {
		name string
		mode Mode
		ok   func(error) bool
	}{
		{"normal", Normal, func(err error) bool { return err == nil }},
		{"wrong audience", WrongAudience, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "expected audience")
		}},
		{"unknown key", UnknownKey, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "failed to verify signature")
		}},
		{"expired", Expired, func(err error) bool {
			var te *oidc.TokenExpiredError
			return errors.As(err, &te)
		}},
		{"normal again", Normal, func(err error) bool { return err == nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp.SetMode(tc.mode)
			_, err := c.login(t, idp, approve)
			if !tc.ok(err) {
				t.Errorf("verifying: got %v", err)
			}
		})
	}
}

func TestConfidentialClient(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{ClientID: "bastion", ClientSecret: "s3cret", Users: []User{alice}})
	good := newRP(t, idp, "bastion", "s3cret")
	if _, err := good.login(t, idp, func(code string) error { return idp.Approve(code, "alice") }); err != nil {
		t.Fatalf("login with the secret: %v", err)
	}
	post := newRP(t, idp, "bastion", "s3cret")
	post.conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	if _, err := post.login(t, idp, func(code string) error { return idp.Approve(code, "alice") }); err != nil {
		t.Fatalf("login with the secret in the form (client_secret_post): %v", err)
	}
	for _, tc := range []struct{ name, id, secret string }{
		{"wrong secret", "bastion", "nope"},
		{"no secret", "bastion", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := newRP(t, idp, tc.id, tc.secret)
			// x/oauth2 sends no secret to the device authorization
			// endpoint, and the OP answers pending to anyone who holds
			// the device code: the client is authenticated when the
			// token is issued.
			da, err := bad.conf.DeviceAuth(bad.ctx)
			if err != nil {
				t.Fatalf("device authorization: %v", err)
			}
			if err := idp.Approve(da.UserCode, "alice"); err != nil {
				t.Fatal(err)
			}
			if tok, err := bad.conf.DeviceAccessToken(bad.ctx, da); err == nil {
				t.Errorf("got a token %v, want an error", tok)
			}
		})
	}
	t.Run("unknown client", func(t *testing.T) {
		bad := newRP(t, idp, "stranger", "")
		da, err := bad.conf.DeviceAuth(bad.ctx)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
			t.Errorf("device authorization: got %+v, %v, want invalid_client", da, err)
		}
	})
}

func TestDeviceForm(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{Users: []User{alice}})
	c := newRP(t, idp, "bastion", "")
	da, err := c.conf.DeviceAuth(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(da.VerificationURIComplete)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `value="`+da.UserCode+`"`) {
		t.Errorf("GET %s: got %s %q, want the form with the code", da.VerificationURIComplete, resp.Status, page)
	}
	for _, tc := range []struct {
		name string
		form url.Values
		want int
	}{
		{"unknown user", url.Values{"user_code": {da.UserCode}, "username": {"mallory"}, "action": {"approve"}}, http.StatusForbidden},
		{"unknown code", url.Values{"user_code": {"ZZZZ-ZZZZ"}, "action": {"deny"}}, http.StatusNotFound},
		{"no action", url.Values{"user_code": {da.UserCode}}, http.StatusBadRequest},
		{"huge", url.Values{"user_code": {strings.Repeat("A", 1<<20)}, "action": {"deny"}}, http.StatusBadRequest},
		{"approve", url.Values{"user_code": {strings.ToLower(da.UserCode)}, "username": {"alice"}, "action": {"approve"}}, http.StatusOK},
		{"twice", url.Values{"user_code": {da.UserCode}, "action": {"deny"}}, http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.PostForm(idp.Issuer()+"/device", tc.form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("got %s, want %d", resp.Status, tc.want)
			}
		})
	}
	if got := idp.Requests("/device"); got != 7 {
		t.Errorf("got %d requests to /device, want 7", got)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestSetDown(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{Users: []User{alice}})
	c := newRP(t, idp, "bastion", "")
	idp.SetDown(true)
	if _, err := c.conf.DeviceAuth(c.ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("device authorization while down: got %v, want a 503", err)
	}
	if _, err := oidc.NewProvider(c.ctx, idp.Issuer()); err == nil {
		t.Error("discovery while down: got no error")
	}
	if got := idp.Requests("/device_authorization"); got != 1 {
		t.Errorf("got %d device authorization requests, want 1", got)
	}
	idp.SetDown(false)
	if _, err := c.login(t, idp, func(code string) error { return idp.Approve(code, "alice") }); err != nil {
		t.Fatalf("login after the IdP came back: %v", err)
	}
}

func TestWaitPendingHonoursContext(t *testing.T) {
	t.Parallel()
	idp := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if code, err := idp.WaitPending(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %q, %v, want the deadline", code, err)
	}
}

func TestStartRefusesSubSecondInterval(t *testing.T) {
	t.Parallel()
	if i, err := start(Options{Interval: 100 * time.Millisecond}); err == nil {
		i.Stop()
		t.Error("got no error for a 100ms interval")
	}
}

// TestNotLinkedIntoBastion checks that the bastion binary links neither
// this package nor the OP it is built on.
func TestNotLinkedIntoBastion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "bastion/cmd/bastion").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/coreos/go-oidc/v3/oidc") {
		t.Errorf("go list -deps names no go-oidc: %q", out)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/zitadel/") || d == "bastion/internal/testidp" {
			t.Errorf("the bastion binary links %s", d)
		}
	}
}

// TestStopLeavesNoGoroutines runs a whole flow and checks that Stop ends
// everything the IdP started. It is the one test here without t.Parallel,
// so it runs before the parallel ones resume.
func TestStopLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("flow", func(t *testing.T) {
		idp := Start(t, Options{Users: []User{alice}})
		c := newRP(t, idp, "bastion", "")
		if _, err := c.login(t, idp, func(code string) error { return idp.Approve(code, "alice") }); err != nil {
			t.Fatal(err)
		}
		idp.Stop()
		if _, err := c.conf.DeviceAuth(c.ctx); err == nil {
			t.Error("device authorization after Stop: got no error")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("got %d goroutines after Stop, want at most %d:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
