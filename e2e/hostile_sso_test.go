package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/testidp"
)

// ssoStranger is one unknown key trying to log in.
type ssoStranger struct {
	source string // local address it dials from

	mu       sync.Mutex // protects the fields below
	prompted bool       // got the device-flow prompt
	banners  []string
	done     bool // strangerLogin returned err
	err      error
}

// TestHostileSSOPendingFlood: 200 unknown keys start logins at once from
// three source addresses. The bastion holds at most max_pending logins
// waiting for approval (and max_pending_per_source of one address), so
// the IdP sees at most that many device authorizations; every other key
// gets the limit refusal at once, and nobody hangs. Once the waiting ones
// go away, their slots are free again.
func TestHostileSSOPendingFlood(t *testing.T) {
	const (
		strangers = 200
		maxTotal  = 6
		perSource = 3
	)
	sources := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	// Codes live longer than the flood (a few seconds): the waiting logins
	// keep their slots throughout.
	const codeTTL = 15 * time.Second
	idp := testidp.Start(t, testidp.Options{Users: []testidp.User{ssoAlice}, DeviceCodeTTL: codeTTL})
	dir := t.TempDir()
	me := currentUser(t)
	b := startBastion(t, ssoBodyLimits(t, idp, me, dir,
		fmt.Sprintf("  session_ttl: 1h\n  max_pending: %d\n  max_pending_per_source: %d\n", maxTotal, perSource),
		// Room for the whole flood in the handshake: the SSO bound is
		// the one under test here.
		", max_unauthenticated: 1024", ""))

	results := make([]*ssoStranger, strangers)
	conns := make(chan net.Conn, strangers)
	promptedCh := make(chan int, strangers)
	var wg sync.WaitGroup
	for i := range strangers {
		results[i] = &ssoStranger{source: sources[i%len(sources)]}
		wg.Add(1)
		go func(s *ssoStranger, i int) {
			defer wg.Done()
			err := strangerLogin(b, s, fmt.Sprintf("stranger%d", i), conns, func() { promptedCh <- i })
			s.mu.Lock()
			s.done, s.err = true, err
			s.mu.Unlock()
		}(results[i], i)
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()

	// Every stranger without a slot is refused at once; those with one
	// wait at the IdP until we hang up.
	waitFor(t, "all strangers but the waiting ones to finish", 120*time.Second, func() bool {
		return settled(results) >= strangers
	})
	prompted := len(promptedCh)
	// Hang up the waiting ones: nobody may still be running after that.
	close(conns)
	for c := range conns {
		c.Close()
	}
	select {
	case <-allDone:
	case <-time.After(30 * time.Second):
		t.Fatal("strangers still running 30s after their connections were closed")
	}

	var refused int
	bySource := map[string]int{}
	for _, s := range results {
		if s.prompted {
			bySource[s.source]++
			continue
		}
		if s.err == nil {
			t.Errorf("a stranger from %s logged in", s.source)
		}
		if len(s.banners) != 2 || s.banners[0] != msgNotLoggedIn+"\r\n" || !strings.HasPrefix(s.banners[1], "bastion: login refused: too many logins") || !strings.HasSuffix(s.banners[1], "; try again later\r\n") {
			t.Errorf("a refused stranger from %s got banners %q, want the not-logged-in banner and the limit refusal", s.source, s.banners)
		} else {
			refused++
		}
	}
	if prompted < 1 || prompted > maxTotal {
		t.Errorf("got %d strangers prompted, want 1 to max_pending (%d)", prompted, maxTotal)
	}
	for src, n := range bySource {
		if n > perSource {
			t.Errorf("got %d strangers from %s prompted, want at most max_pending_per_source (%d)", n, src, perSource)
		}
	}
	if refused != strangers-prompted {
		t.Errorf("got %d limit refusals, want %d", refused, strangers-prompted)
	}
	if n := idp.Requests("/device_authorization"); n != prompted {
		t.Errorf("the IdP got %d device authorizations, want one per prompted stranger (%d), at most %d", n, prompted, maxTotal)
	}

	var limits int
	for _, ev := range auditEvents(t, b) {
		if str(ev, "type") == "sso_denied" && str(ev, "reason") == "limit" {
			limits++
		}
	}
	if limits != refused {
		t.Errorf("got %d sso_denied events with reason limit, want %d", limits, refused)
	}

	// The waiting strangers hung up: the bastion lets go of their logins
	// (sso_denied, expired) while their codes are still pending at the
	// IdP, so because they went away, not because the codes ran out.
	waitFor(t, "the bastion to drop the abandoned logins", 30*time.Second, func() bool {
		n := 0
		for _, ev := range auditEvents(t, b) {
			if str(ev, "type") == "sso_denied" && str(ev, "reason") == "expired" {
				n++
			}
		}
		return n >= prompted
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := idp.WaitPending(ctx); err != nil {
		t.Errorf("no code pending at the IdP any more when the bastion dropped the logins (%v): they were not dropped for the hang-up", err)
	}
	// Their slots are free again: a newcomer is prompted.
	waitFor(t, "a newcomer to be prompted after the flood", 30*time.Second, func() bool {
		return newcomerPrompted(t, b)
	})
}

// newcomerPrompted reports whether a fresh unknown key gets the prompt
// now; it hangs up either way.
func newcomerPrompted(t *testing.T, b *bastionProc) bool {
	s := &ssoStranger{source: "127.0.0.4"}
	conn := make(chan net.Conn, 1)
	got := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- strangerLogin(b, s, "newcomer", conn, func() { got <- struct{}{} }) }()
	select {
	case <-got:
		(<-conn).Close()
		<-done
		return true
	case <-done:
		return false
	case <-time.After(30 * time.Second):
		t.Fatal("a newcomer got neither the prompt nor a refusal in 30s")
		return false
	}
}

// settled counts the strangers that have an outcome or the prompt.
func settled(results []*ssoStranger) int {
	n := 0
	for _, s := range results {
		s.mu.Lock()
		if s.done || s.prompted {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// strangerLogin logs in as user with a fresh unknown key from s.source,
// answering keyboard-interactive; conns receives the connection (so that
// the test can hang up), and onPrompt is called when the device-flow
// prompt arrives.
func strangerLogin(b *bastionProc, s *ssoStranger, user string, conns chan<- net.Conn, onPrompt func()) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.source)}}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return err
	}
	conns <- nc
	nc.SetDeadline(time.Now().Add(90 * time.Second))
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{
			ssh.PublicKeys(signer),
			ssh.KeyboardInteractive(func(_, instruction string, questions []string, _ []bool) ([]string, error) {
				if promptRE.MatchString(instruction) {
					s.mu.Lock()
					s.prompted = true
					s.mu.Unlock()
					onPrompt()
				}
				return make([]string, len(questions)), nil
			}),
		},
		HostKeyCallback: ssh.FixedHostKey(b.HostKey),
		BannerCallback: func(msg string) error {
			s.mu.Lock()
			s.banners = append(s.banners, msg)
			s.mu.Unlock()
			return nil
		},
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, b.Addr, cfg)
	if err != nil {
		nc.Close()
		return err
	}
	ssh.NewClient(c, chans, reqs).Close()
	return nil
}
