package proxy

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestBannerErrorHidesPartialSuccess pins the x/crypto behaviour sso.go
// is built around: a PartialSuccessError wrapped in a BannerError sends
// the banner but is a plain failure (x/crypto type-asserts the error, it
// does not unwrap it), so the banner of a key held partial has to be sent
// on its own; and VerifiedPublicKeyCallback sees the key that signed.
func TestBannerErrorHidesPartialSuccess(t *testing.T) {
	hostKey, key := testSigner(t), testSigner(t)
	for _, wrap := range []bool{true, false} {
		name := "partial success alone"
		if wrap {
			name = "wrapped in a banner error"
		}
		t.Run(name, func(t *testing.T) {
			var verified ssh.PublicKey
			kiCalled := false
			cfg := &ssh.ServerConfig{
				PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
					return &ssh.Permissions{}, nil
				},
				VerifiedPublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
					verified = k
					var err error = &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
						KeyboardInteractiveCallback: func(ssh.ConnMetadata, ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
							kiCalled = true
							return &ssh.Permissions{}, nil
						},
					}}
					if wrap {
						err = &ssh.BannerError{Err: err, Message: "banner\r\n"}
					}
					return nil, err
				},
			}
			cfg.AddHostKey(hostKey)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cc, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			sc, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			deadline := time.Now().Add(10 * time.Second)
			sc.SetDeadline(deadline)
			cc.SetDeadline(deadline)
			var wg sync.WaitGroup
			var serr error
			wg.Go(func() {
				var c *ssh.ServerConn
				c, _, _, serr = ssh.NewServerConn(sc, cfg)
				if c != nil {
					c.Close()
				}
				sc.Close()
			})
			var banner strings.Builder
			c, _, _, err := ssh.NewClientConn(cc, "pipe", &ssh.ClientConfig{
				User:            "x",
				HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey()),
				Auth: []ssh.AuthMethod{ssh.PublicKeys(key), ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
					return nil, nil
				})},
				BannerCallback: func(m string) error { banner.WriteString(m); return nil },
			})
			if c != nil {
				c.Close()
			}
			cc.Close()
			wg.Wait()
			if verified == nil || string(verified.Marshal()) != string(key.PublicKey().Marshal()) {
				t.Errorf("VerifiedPublicKeyCallback saw %v, want the key that signed", verified)
			}
			if wrap {
				if err == nil || kiCalled || !strings.Contains(banner.String(), "banner") {
					t.Errorf("wrapped: login %v, keyboard-interactive called %v, banner %q; want a failure with the banner and no next step", err, kiCalled, banner.String())
				}
				var authErr *ssh.ServerAuthError
				if !errors.As(serr, &authErr) {
					t.Errorf("server: got %v, want a ServerAuthError", serr)
				}
				return
			}
			if err != nil || !kiCalled {
				t.Errorf("alone: login %v, keyboard-interactive called %v; want the partial success's next step to log in", err, kiCalled)
			}
		})
	}
}
