package proxy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/metrics"
)

func TestClassifyHandshake(t *testing.T) {
	neg := func(what string) error {
		return fmt.Errorf("ssh: handshake failed: %w", &ssh.AlgorithmNegotiationError{What: what, SupportedAlgorithms: []string{"a"}, RequestedAlgorithms: []string{"b"}})
	}
	cases := []struct {
		name     string
		err      error
		rejected int
		want     string
	}{
		{"kex", neg("key exchange"), 0, metrics.HandshakeNoCommonKex},
		{"host key", neg("host key"), 0, metrics.HandshakeNoCommonHostKey},
		{"cipher", neg("client to server cipher"), 0, metrics.HandshakeNoCommonCipher},
		{"mac", neg("server to client MAC"), 0, metrics.HandshakeNoCommonMAC},
		{"compression", neg("client to server compression"), 0, metrics.HandshakeOther},
		{"timeout", fmt.Errorf("read tcp: %w", os.ErrDeadlineExceeded), 0, metrics.HandshakeTimeout},
		{"eof", io.EOF, 0, metrics.HandshakeClosed},
		{"auth", &ssh.ServerAuthError{Errors: []error{errors.New("no")}}, 0, metrics.HandshakeAuthFailed},
		{"rejected then gone", io.EOF, 2, metrics.HandshakeAuthFailed},
		{"gone before auth", &ssh.ServerAuthError{}, 0, metrics.HandshakeClosed},
		{"parse", errors.New("ssh: parse error in message type 20"), 0, metrics.HandshakeProtocolError},
		{"version", errors.New("ssh: overflow reading version string"), 0, metrics.HandshakeProtocolError},
		{"other", errors.New("something else"), 0, metrics.HandshakeOther},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyHandshake(tc.err, tc.rejected).reason; got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	if got, want := classifyHandshake(neg("client to server cipher"), 0).Error(), "handshake_failed: no common cipher"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
}

func TestHandshakeLogRate(t *testing.T) {
	var h handshakeLog
	now := time.Unix(1000, 0)
	if ok, _ := h.allow("no_common_kex", now); !ok {
		t.Fatal("first line: got suppressed, want written")
	}
	for i := 0; i < 5; i++ {
		if ok, _ := h.allow("no_common_kex", now.Add(time.Duration(i)*100*time.Millisecond)); ok {
			t.Fatalf("line %d within the interval: got written, want suppressed", i+2)
		}
	}
	if ok, _ := h.allow("timeout", now); !ok {
		t.Error("another reason: got suppressed, want written")
	}
	ok, n := h.allow("no_common_kex", now.Add(time.Second))
	if !ok || n != 5 {
		t.Errorf("after the interval: got %v with %d suppressed, want written with 5", ok, n)
	}
}
