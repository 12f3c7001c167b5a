package sso_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"bastion/internal/testidp"
	"bastion/sso"
)

var alice = testidp.User{Username: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"dev", "ops"}}

func service(idp *testidp.IdP, secret string) *sso.Service {
	return &sso.Service{
		Client:  &sso.Client{Issuer: idp.Issuer(), ClientID: "bastion", ClientSecret: secret, Scopes: []string{"openid", "email", "profile", "groups"}},
		Mapping: sso.Mapping{UsernameClaim: "preferred_username", GroupsClaim: "groups"},
	}
}

// login starts a login with svc, has the person act on it with act (given
// the user code), and returns what Finish returns.
func login(t *testing.T, idp *testidp.IdP, svc *sso.Service, act func(code string) error) (sso.Account, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dev, err := svc.Start(ctx)
	if err != nil {
		return sso.Account{}, err
	}
	if !strings.Contains(dev.Prompt(), "open "+dev.VerificationURI+" and enter the code "+dev.UserCode) {
		t.Errorf("prompt %q: want the URI and the code", dev.Prompt())
	}
	code, err := idp.WaitPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code != dev.UserCode {
		t.Fatalf("pending code %q, want the device's %q", code, dev.UserCode)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if act != nil {
		wg.Go(func() {
			if err := act(code); err != nil {
				t.Errorf("acting on the code: %v", err)
			}
		})
	}
	return svc.Finish(ctx, dev)
}

func wantLabel(t *testing.T, err error, label, reason string) {
	t.Helper()
	var r *sso.Refusal
	if !errors.As(err, &r) || r.Label != label {
		t.Fatalf("got %v, want a refusal %q", err, label)
	}
	if reason != "" && !strings.Contains(r.Message(), reason) {
		t.Errorf("message %q: want %q in it", r.Message(), reason)
	}
}

func TestLoginApproved(t *testing.T) {
	for _, secret := range []string{"", "s3cret"} {
		name := "public client"
		if secret != "" {
			name = "confidential client"
		}
		t.Run(name, func(t *testing.T) {
			idp := testidp.Start(t, testidp.Options{Users: []testidp.User{alice}, ClientSecret: secret})
			svc := service(idp, secret)
			a, err := login(t, idp, svc, func(code string) error { return idp.Approve(code, "alice") })
			if err != nil {
				t.Fatal(err)
			}
			if a.Username != "alice" || !slices.Equal(a.Groups, []string{"dev", "ops"}) || a.Subject == "" || a.Issuer != idp.Issuer() || a.Email != "alice@example.com" {
				t.Errorf("got %+v, want alice with [dev ops]", a)
			}
		})
	}
}

func TestLoginRefused(t *testing.T) {
	idp := testidp.Start(t, testidp.Options{Users: []testidp.User{alice}})
	svc := service(idp, "")
	approve := func(code string) error { return idp.Approve(code, "alice") }

	t.Run("denied", func(t *testing.T) {
		_, err := login(t, idp, svc, idp.Deny)
		wantLabel(t, err, sso.LabelDenied, "denied the request")
	})
	for _, tc := range []struct {
		name   string
		mode   testidp.Mode
		reason string
	}{
		{"wrong audience", testidp.WrongAudience, "(wrong audience)"},
		{"unknown key", testidp.UnknownKey, "(bad signature)"},
		{"expired token", testidp.Expired, "(expired)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp.SetMode(tc.mode)
			defer idp.SetMode(testidp.Normal)
			_, err := login(t, idp, svc, approve)
			wantLabel(t, err, sso.LabelInvalidToken, tc.reason)
		})
	}
	t.Run("domain", func(t *testing.T) {
		d := service(idp, "")
		d.Mapping.AllowedDomains = []string{"corp.example"}
		_, err := login(t, idp, d, approve)
		wantLabel(t, err, sso.LabelDomain, "example.com is not allowed")
	})
	t.Run("no username", func(t *testing.T) {
		d := service(idp, "")
		d.Mapping.UsernameClaim = "employee_number"
		_, err := login(t, idp, d, approve)
		wantLabel(t, err, sso.LabelNoUsername, "employee_number")
	})
}

func TestLoginCodeExpires(t *testing.T) {
	idp := testidp.Start(t, testidp.Options{Users: []testidp.User{alice}, DeviceCodeTTL: 2 * time.Second})
	_, err := login(t, idp, service(idp, ""), nil)
	wantLabel(t, err, sso.LabelExpired, "expired before it was approved")
}

// TestDiscoveryLazyAndRetried: a provider down when the first login comes
// is an "unreachable" refusal, asked once per retry interval, and a later
// login succeeds once it is back.
func TestDiscoveryLazyAndRetried(t *testing.T) {
	idp := testidp.Start(t, testidp.Options{Users: []testidp.User{alice}})
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	svc := service(idp, "")
	svc.Client.Now = clock
	const disc = "/.well-known/openid-configuration"
	if n := idp.Requests(disc); n != 0 {
		t.Fatalf("discovery asked %d times before any login, want 0 (lazy)", n)
	}
	idp.SetDown(true)
	for range 3 {
		_, err := svc.Start(t.Context())
		wantLabel(t, err, sso.LabelUnreachable, "cannot reach the identity provider")
	}
	if n := idp.Requests(disc); n != 1 {
		t.Errorf("discovery asked %d times by 3 logins within the retry interval, want 1", n)
	}
	idp.SetDown(false)
	mu.Lock()
	now = now.Add(3 * time.Second)
	mu.Unlock()
	if _, err := login(t, idp, svc, func(code string) error { return idp.Approve(code, "alice") }); err != nil {
		t.Fatalf("login once the provider is back: %v", err)
	}
	if _, err := login(t, idp, svc, func(code string) error { return idp.Approve(code, "alice") }); err != nil {
		t.Fatal(err)
	}
	if n := idp.Requests(disc); n != 2 {
		t.Errorf("discovery asked %d times, want 2 (cached once it succeeded)", n)
	}
}

// TestHostileProvider: a provider that sends a huge body or never answers
// cannot make a login read without bound or wait without end.
func TestHostileProvider(t *testing.T) {
	serve := func(t *testing.T, h http.HandlerFunc) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(l) }()
		t.Cleanup(func() { srv.Close(); <-done })
		return "http://" + l.Addr().String()
	}
	t.Run("huge body", func(t *testing.T) {
		url := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			chunk := []byte(`{"issuer":"` + strings.Repeat("x", 64<<10))
			for range 1024 { // 64 MiB unless the client stops reading
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
		c := &sso.Client{Issuer: url, ClientID: "bastion"}
		_, err := c.Start(t.Context())
		wantLabel(t, err, sso.LabelUnreachable, "")
		if !strings.Contains(err.Error(), "longer than") {
			t.Errorf("got %v, want the body limit named", err)
		}
	})
	t.Run("hangs", func(t *testing.T) {
		release := make(chan struct{})
		url := serve(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		c := &sso.Client{Issuer: url, ClientID: "bastion", HTTP: sso.NewHTTPClient(300 * time.Millisecond)}
		_, err := c.Start(t.Context())
		wantLabel(t, err, sso.LabelUnreachable, "")
	})
}
