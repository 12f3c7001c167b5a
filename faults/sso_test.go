package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/config"
	"bastion/internal/testidp"
)

// SSO logins (issue 14) with a real x/crypto client doing
// keyboard-interactive against the real test IdP; OpenSSH's are e2e's.

var ssoUsers = []testidp.User{
	{Username: "carol", Email: "carol@example.com", EmailVerified: true, Groups: []string{"dev"}},
	{Username: "dave", Email: "dave@example.com", EmailVerified: true, Groups: []string{"guests"}},
	// alice is also a configured user.
	{Username: "alice", Email: "alice@example.com", EmailVerified: true, Groups: []string{"ops"}},
}

// ssoBastion is a bastion with sso against idp; more is appended to the
// sso section.
func (e *env) ssoBastion(idp *testidp.IdP, more string, opt bastionOptions) *bastion {
	opt.extra = fmt.Sprintf("sso:\n  issuer: %s\n  client_id: bastion\n  bindings_file: %s\n  session_ttl: 1h\n%s",
		idp.Issuer(), filepath.Join(e.dir, "sso-bindings.json"), more)
	return e.startBastion(opt)
}

// ssoClient is the outcome of one connection of an SSO person.
type ssoClient struct {
	client *ssh.Client
	// banner is what the bastion sent as banners; prompts the
	// keyboard-interactive instructions.
	banner, prompts syncBuffer
}

// dialSSO connects with key; with interactive, keyboard-interactive too
// (answering the zero-prompt challenge at once, as OpenSSH does). next, if
// set, is offered after a partial success instead.
func (b *bastion) dialSSO(t *testing.T, key ssh.Signer, interactive bool, next ssh.AuthMethod) (*ssoClient, error) {
	t.Helper()
	return b.dialSSOFrom(t, "", key, interactive, next)
}

// dialSSOFrom is dialSSO from the loopback address from ("" for any).
func (b *bastion) dialSSOFrom(t *testing.T, from string, key ssh.Signer, interactive bool, next ssh.AuthMethod) (*ssoClient, error) {
	t.Helper()
	c := &ssoClient{}
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", b.addr)
	if err != nil {
		return c, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	cfg := &ssh.ClientConfig{
		User:            "carol",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(b.hostKey),
		BannerCallback: func(msg string) error {
			c.banner.Write([]byte(msg))
			return nil
		},
	}
	if interactive {
		cfg.Auth = append(cfg.Auth, ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
			c.prompts.Write([]byte(instruction + "\n"))
			if len(questions) != 0 {
				return nil, fmt.Errorf("challenge with %d prompts, want none", len(questions))
			}
			return nil, nil
		}))
	}
	if next != nil {
		offered := false
		cfg.AuthCallback = func(ctx *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
			if len(ctx.PartialSuccessMethods) > 0 && !offered {
				offered = true
				return next, nil
			}
			return nil, nil
		}
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, b.addr, cfg)
	if err != nil {
		nc.Close()
		return c, err
	}
	nc.SetDeadline(time.Time{})
	c.client = ssh.NewClient(conn, chans, reqs)
	t.Cleanup(func() { c.client.Close() })
	return c, nil
}

// approveNext approves, as username, the next code the IdP hands out, in
// the background; wait returns the code.
func approveNext(t *testing.T, idp *testidp.IdP, username string, deny bool) (wait func() string) {
	var wg sync.WaitGroup
	var code string
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var err error
		if code, err = idp.WaitPending(ctx); err != nil {
			t.Error(err)
			return
		}
		if deny {
			err = idp.Deny(code)
		} else {
			err = idp.Approve(code, username)
		}
		if err != nil {
			t.Error(err)
		}
	})
	return func() string { wg.Wait(); return code }
}

// own runs an own-session command and returns its output.
func own(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []byte
	within(t, cmd, endTimeout, func() { out, err = s.CombinedOutput(cmd) })
	return string(out)
}

// events returns the audit events of type typ.
func (b *bastion) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for line := range strings.SplitSeq(b.audit.String(), "\n") {
		var ev audit.Event
		if line == "" || json.Unmarshal([]byte(line), &ev) != nil || ev.Type != typ {
			continue
		}
		out = append(out, ev)
	}
	return out
}

// TestSSOLogin: an unknown key logs in through the IdP (the prompt shows
// the URI and code, the bastion polls), a second connection with the key
// is silent, whoami shows the identity, logout drops the binding, and a
// client without keyboard-interactive is then told to log in, without a
// hang.
func TestSSOLogin(t *testing.T) {
	e := newEnv(t)
	idp := testidp.Start(t, testidp.Options{Users: ssoUsers})
	b := e.ssoBastion(idp, "", bastionOptions{})
	key := newKey(t, e.dir, "carol").Signer
	fp := ssh.FingerprintSHA256(key.PublicKey())

	wait := approveNext(t, idp, "carol", false)
	c, err := b.dialSSO(t, key, true, nil)
	code := wait()
	if err != nil {
		t.Fatalf("sso login: %v (banner %q)", err, c.banner.String())
	}
	if p := c.prompts.String(); !strings.Contains(p, "open "+idp.Issuer()+"/device and enter the code "+code) {
		t.Errorf("prompt %q: want the verification URI and the code %s", p, code)
	}
	who := own(t, c.client, "whoami")
	for _, want := range []string{"user: carol\n", "groups: dev\n", "via: sso " + idp.Issuer() + " subject ", "expires: "} {
		if !strings.Contains(who, want) {
			t.Errorf("whoami: got %q, want %q in it", who, want)
		}
	}
	if got := own(t, c.client, "login"); !strings.HasPrefix(got, "logged in as carol until ") {
		t.Errorf("login: got %q", got)
	}
	if got := own(t, c.client, "help"); !strings.Contains(got, "whoami") || !strings.Contains(got, "logout") {
		t.Errorf("help: got %q, want whoami and logout listed", got)
	}
	logins := b.events(t, audit.TypeSSOLogin)
	if len(logins) != 1 || logins[0].User != "carol" || logins[0].Groups != "dev" || logins[0].Subject == "" ||
		logins[0].KeyFingerprint != fp || logins[0].Issuer != idp.Issuer() || logins[0].Expires == nil {
		t.Fatalf("sso_login events: got %+v, want one for carol", logins)
	}
	subject := logins[0].Subject
	n := 0
	for _, ev := range b.events(t, audit.TypeAuthFailure) {
		if ev.KeyFingerprint == fp {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d auth_failure events for the key logging in, want 1 (held partial, once)", n)
	}

	// Silent: publickey only, as scp, rsync and BatchMode.
	starts := idp.Requests("/device_authorization")
	c2, err := b.dialSSO(t, key, false, nil)
	if err != nil {
		t.Fatalf("second connection of a bound key: %v (banner %q)", err, c2.banner.String())
	}
	if n := idp.Requests("/device_authorization"); n != starts {
		t.Errorf("a bound key's connection started %d device authorizations, want none", n-starts)
	}
	if who := own(t, c2.client, "whoami"); !strings.Contains(who, "user: carol") {
		t.Errorf("whoami of the bound key: got %q", who)
	}
	for _, ev := range b.events(t, audit.TypeAuthSuccess) {
		if ev.User == "carol" && (ev.Method != "sso" || ev.Subject != subject) {
			t.Errorf("auth_success of carol: method %q subject %q, want sso and %q", ev.Method, ev.Subject, subject)
		}
	}

	if got, want := own(t, c2.client, "logout"), "logged out carol (key "+fp+")\n"; got != want {
		t.Errorf("logout: got %q, want %q", got, want)
	}
	if ev := b.events(t, audit.TypeSSOLogout); len(ev) != 1 || ev[0].Subject != subject || ev[0].User != "carol" || ev[0].KeyFingerprint != fp {
		t.Errorf("sso_logout events: got %+v", ev)
	}
	var c3 *ssoClient
	within(t, "a batch client after logout", endTimeout, func() { c3, err = b.dialSSO(t, key, false, nil) })
	if err == nil {
		t.Fatal("after logout: a publickey-only login succeeded, want it refused")
	}
	if got := c3.banner.String(); !strings.Contains(got, "bastion: this key is not logged in; run 'ssh <bastion> login' once, interactively") {
		t.Errorf("batch client's banner: got %q", got)
	}
}

// TestSSOPolicyAndKeys: claimed groups decide policy; a configured key
// offered after the partial success logs in fully without the IdP; a
// bound key keeps working while the IdP is down, when new logins are
// refused with a reason; revoked_keys refuses a bound key after a reload.
func TestSSOPolicyAndKeys(t *testing.T) {
	e := newEnv(t)
	s := e.startSim()
	idp := testidp.Start(t, testidp.Options{Users: ssoUsers})
	b := e.ssoBastion(idp, "", bastionOptions{statics: []staticTarget{{name: "web", addr: s.inst.Addr(), hostKey: s.inst.HostKey()}}})

	jump := func(c *ssh.Client) (string, error) {
		ch, err := c.Dial("tcp", "web:22")
		if err != nil {
			return err.Error(), err
		}
		var banner syncBuffer
		conn, chans, reqs, err := ssh.NewClientConn(ch, "web:22", &ssh.ClientConfig{User: e.me, HostKeyCallback: b.hostCertChecker().CheckHostKey,
			BannerCallback: func(m string) error { banner.Write([]byte(m)); return nil }})
		if err != nil {
			ch.Close()
			return banner.String(), err
		}
		ic := ssh.NewClient(conn, chans, reqs)
		defer ic.Close()
		s, err := ic.NewSession()
		if err != nil {
			return "", err
		}
		defer s.Close()
		var out []byte
		within(t, "echo ok", endTimeout, func() { out, err = s.Output("echo ok") })
		return string(out), err
	}

	carol := newKey(t, e.dir, "carol").Signer
	wait := approveNext(t, idp, "carol", false)
	c, err := b.dialSSO(t, carol, true, nil)
	wait()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := jump(c.client); err != nil || out != "ok\n" {
		t.Errorf("carol (group dev) through the bastion: got %q, %v; want ok", out, err)
	}

	dave := newKey(t, e.dir, "dave").Signer
	wait = approveNext(t, idp, "dave", false)
	c, err = b.dialSSO(t, dave, true, nil)
	wait()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := jump(c.client); err == nil || !strings.Contains(out, "no policy lets dave reach web") {
		t.Errorf("dave (group guests): got %q, %v; want refused by policy", out, err)
	}

	// A configured key after the partial success of an unknown one.
	stranger := newKey(t, e.dir, "stranger").Signer
	starts := idp.Requests("/device_authorization")
	c, err = b.dialSSO(t, stranger, false, ssh.PublicKeys(e.person.Signer))
	if err != nil {
		t.Fatalf("configured key after a partial success: %v", err)
	}
	if who := own(t, c.client, "whoami"); !strings.Contains(who, "user: alice") || !strings.Contains(who, "via: key "+ssh.FingerprintSHA256(e.person.Signer.PublicKey())) {
		t.Errorf("whoami: got %q, want alice by her key", who)
	}
	if n := idp.Requests("/device_authorization"); n != starts {
		t.Errorf("the configured key's login started %d device authorizations, want none", n-starts)
	}

	// The IdP down: the bound key works, a new login is refused.
	idp.SetDown(true)
	if _, err := b.dialSSO(t, carol, false, nil); err != nil {
		t.Errorf("bound key while the IdP is down: %v", err)
	}
	c, err = b.dialSSO(t, stranger, true, nil)
	if err == nil || !strings.Contains(c.banner.String(), "bastion: login refused: cannot reach the identity provider; try again later") {
		t.Errorf("new login while the IdP is down: %v, banner %q", err, c.banner.String())
	}
	idp.SetDown(false)

	// revoked_keys, by a reload.
	cfg, err := config.Parse([]byte(fmt.Sprintf("host_key: %s\nhost_ca_key: %s\npolicies: [{groups: [dev], targets: [\"*\"], os_users: [\"*\"]}]\nrevoked_keys: [%q]\nsso:\n  issuer: %s\n  client_id: bastion\n  bindings_file: %s\n",
		filepath.Join(e.dir, "host_ed25519"), filepath.Join(e.dir, "host_ca_ed25519"), ssh.FingerprintSHA256(carol.PublicKey()), idp.Issuer(), filepath.Join(e.dir, "sso-bindings.json"))), "")
	if err != nil {
		t.Fatal(err)
	}
	b.built.Reload(cfg)
	starts = idp.Requests("/device_authorization")
	if _, err := b.dialSSO(t, carol, true, nil); err == nil {
		t.Error("a bound key on revoked_keys logged in")
	}
	if n := idp.Requests("/device_authorization"); n != starts {
		t.Errorf("a revoked key was offered an SSO login (%d device authorizations)", n-starts)
	}
}

// TestSSORefusals: each refusal reaches the person as one banner line and
// an sso_denied event with its label, and the client is not offered a
// second login on the connection.
func TestSSORefusals(t *testing.T) {
	e := newEnv(t)
	idp := testidp.Start(t, testidp.Options{Users: ssoUsers})
	b := e.ssoBastion(idp, "  max_pending_per_source: 1\n", bastionOptions{})

	for _, tc := range []struct {
		name, user, label, banner string
		deny                      bool
		mode                      testidp.Mode
	}{
		{name: "denied", user: "carol", deny: true, label: "denied", banner: "bastion: login refused: the identity provider denied the request\r\n"},
		{name: "merge refused", user: "alice", label: "merge_refused", banner: "bastion: login refused: alice is a configured user's name"},
		{name: "wrong audience", user: "carol", mode: testidp.WrongAudience, label: "invalid_token", banner: "bastion: login refused: the identity provider's token was not valid (wrong audience)"},
		{name: "unknown key", user: "carol", mode: testidp.UnknownKey, label: "invalid_token", banner: "bastion: login refused: the identity provider's token was not valid (bad signature)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp.SetMode(tc.mode)
			defer idp.SetMode(testidp.Normal)
			key := newKey(t, e.dir, strings.ReplaceAll(tc.name, " ", "-")).Signer
			before := idp.Requests("/device_authorization")
			wait := approveNext(t, idp, tc.user, tc.deny)
			c, err := b.dialSSO(t, key, true, nil)
			wait()
			if err == nil {
				t.Fatal("login succeeded, want it refused")
			}
			if got := c.banner.String(); !strings.Contains(got, tc.banner) {
				t.Errorf("banner: got %q, want %q", got, tc.banner)
			}
			if n := idp.Requests("/device_authorization") - before; n != 1 {
				t.Errorf("%d device authorizations for one connection, want 1", n)
			}
			fp := ssh.FingerprintSHA256(key.PublicKey())
			found := false
			for _, ev := range b.events(t, audit.TypeSSODenied) {
				if ev.KeyFingerprint == fp {
					found = ev.Reason == tc.label && ev.Issuer == idp.Issuer()
				}
			}
			if !found {
				t.Errorf("no sso_denied event with reason %q for the key", tc.label)
			}
		})
	}

	t.Run("pending limit per source", func(t *testing.T) {
		first := newKey(t, e.dir, "first").Signer
		second := newKey(t, e.dir, "second").Signer
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var firstErr error
		wg.Go(func() { _, firstErr = b.dialSSO(t, first, true, nil) })
		code, err := idp.WaitPending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.dialSSO(t, second, true, nil)
		if err == nil || !strings.Contains(c.banner.String(), "bastion: login refused: too many logins from your address are waiting for approval") {
			t.Errorf("second login from one address while one waits: %v, banner %q", err, c.banner.String())
		}
		if err := idp.Approve(code, "carol"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if firstErr != nil {
			t.Errorf("the waiting login: %v", firstErr)
		}
		if !strings.Contains(b.audit.String(), `"reason":"limit"`) {
			t.Error("no sso_denied event with reason limit")
		}
	})

	t.Run("abandoned", func(t *testing.T) {
		// The client answers the prompt, then goes away while the bastion
		// waits for the approval: the login ends (and frees its slot)
		// without waiting for the code to expire.
		key := newKey(t, e.dir, "abandoned").Signer
		fp := ssh.FingerprintSHA256(key.PublicKey())
		nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		go ssh.NewClientConn(nc, b.addr, &ssh.ClientConfig{User: "carol", HostKeyCallback: ssh.FixedHostKey(b.hostKey),
			Auth: []ssh.AuthMethod{ssh.PublicKeys(key), ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil })}})
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		code, err := idp.WaitPending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		waitFor(t, "the abandoned login's sso_denied", settleTimeout, func() bool {
			for _, ev := range b.events(t, audit.TypeSSODenied) {
				if ev.KeyFingerprint == fp && ev.Reason == "expired" {
					return true
				}
			}
			return false
		})
		// The abandoned code is still pending at the IdP: out of the way.
		if err := idp.Deny(code); err != nil {
			t.Fatal(err)
		}
		other := newKey(t, e.dir, "after-abandoned").Signer
		wait := approveNext(t, idp, "carol", false)
		_, err = b.dialSSO(t, other, true, nil)
		wait()
		if err != nil {
			t.Errorf("a login from the same address after the abandoned one: %v", err)
		}
	})
}

// TestSSORefusalThrottled: a refused SSO login is a failed authentication
// of its address for limits.failed_auth_per_minute, as a refused key is.
func TestSSORefusalThrottled(t *testing.T) {
	e := newEnv(t)
	idp := testidp.Start(t, testidp.Options{Users: ssoUsers})
	b := e.ssoBastion(idp, "", bastionOptions{limits: "failed_auth_per_minute: 1"})
	delays := func() float64 {
		mfs, err := b.built.Metrics.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "bastion_limit_hits_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "limit" && l.GetValue() == "failed_auth_delay" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	// Three refusals exceed the rate (the throttle allows one more than
	// it, less the decay), so the fourth connection waits. A failure is
	// recorded before the connection's connection_closed event.
	for i := range 4 {
		if i == 3 {
			waitFor(t, "three connections closed", settleTimeout, func() bool { return len(b.events(t, audit.TypeConnectionClosed)) == 3 })
		}
		key := newKey(t, e.dir, fmt.Sprintf("denied%d", i)).Signer
		wait := approveNext(t, idp, "carol", true)
		_, err := b.dialSSO(t, key, true, nil)
		wait()
		if err == nil {
			t.Fatal("a denied login succeeded")
		}
	}
	if got := delays(); got < 1 {
		t.Errorf("failed_auth_delay hits after four refused SSO logins with failed_auth_per_minute 1: got %v, want at least 1", got)
	}
}

// TestSSOPendingBounded: the logins waiting for approval are bounded in
// all (sso.max_pending), whichever addresses they come from.
func TestSSOPendingBounded(t *testing.T) {
	e := newEnv(t)
	idp := testidp.Start(t, testidp.Options{Users: ssoUsers})
	b := e.ssoBastion(idp, "  max_pending: 2\n  max_pending_per_source: 1\n", bastionOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, from := range []string{"127.0.0.2", "127.0.0.3"} {
		key := newKey(t, e.dir, fmt.Sprintf("waiting%d", i)).Signer
		wg.Go(func() { b.dialSSOFrom(t, from, key, true, nil) })
		waitFor(t, "the login to wait at the IdP", settleTimeout, func() bool { return idp.Requests("/device_authorization") == i+1 })
	}
	c, err := b.dialSSOFrom(t, "127.0.0.4", newKey(t, e.dir, "third").Signer, true, nil)
	if err == nil || !strings.Contains(c.banner.String(), "bastion: login refused: too many logins are waiting for approval; try again later") {
		t.Errorf("a third login while two wait: %v, banner %q", err, c.banner.String())
	}
	if n := idp.Requests("/device_authorization"); n != 2 {
		t.Errorf("%d device authorizations, want 2: a refused login must not reach the IdP", n)
	}
	// WaitPending gives the oldest code still pending: deny both.
	for range 2 {
		code, err := idp.WaitPending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := idp.Deny(code); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSSOBindingEndsOnLiveConnection: a connection that outlives its
// binding opens no new link; a new connection with the key is offered a
// login again.
func TestSSOBindingEndsOnLiveConnection(t *testing.T) {
	e := newEnv(t)
	s := e.startSim()
	idp := testidp.Start(t, testidp.Options{Users: ssoUsers})
	opt := bastionOptions{statics: []staticTarget{{name: "web", addr: s.inst.Addr(), hostKey: s.inst.HostKey()}}}
	opt.extra = fmt.Sprintf("sso:\n  issuer: %s\n  client_id: bastion\n  bindings_file: %s\n  session_ttl: 2s\n",
		idp.Issuer(), filepath.Join(e.dir, "sso-bindings.json"))
	b := e.startBastion(opt)
	key := newKey(t, e.dir, "carol").Signer
	wait := approveNext(t, idp, "carol", false)
	c, err := b.dialSSO(t, key, true, nil)
	wait()
	if err != nil {
		t.Fatal(err)
	}
	logins := b.events(t, audit.TypeSSOLogin)
	if len(logins) != 1 || logins[0].Expires == nil {
		t.Fatalf("sso_login events: %+v", logins)
	}
	waitFor(t, "the binding to end", settleTimeout, func() bool { return time.Now().After(*logins[0].Expires) })
	ch, err := c.client.Dial("tcp", "web:22")
	if err != nil {
		t.Fatal(err)
	}
	var banner syncBuffer
	within(t, "the inner login", endTimeout, func() {
		_, _, _, err = ssh.NewClientConn(ch, "web:22", &ssh.ClientConfig{User: e.me, HostKeyCallback: b.hostCertChecker().CheckHostKey,
			BannerCallback: func(m string) error { banner.Write([]byte(m)); return nil }})
	})
	ch.Close()
	if err == nil || !strings.Contains(banner.String(), "bastion: web: your SSO login ended at ") {
		t.Errorf("a link after the binding ended: got %v, banner %q; want refused with the end named", err, banner.String())
	}
	c2, err := b.dialSSO(t, key, false, nil)
	if err == nil || !strings.Contains(c2.banner.String(), "this key is not logged in") {
		t.Errorf("a new connection after the end: %v, banner %q; want a login asked for", err, c2.banner.String())
	}
}
