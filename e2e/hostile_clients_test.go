package e2e

import (
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestHostileClientsInnerOtherUsersKey logs in on the inner ProxyJump leg
// with another user's key, as paramiko does with sock=: alice's outer
// connection, bob's key inside. The bastion refuses it, says so in the
// audit log with bob's key, and never connects upstream for it.
func TestHostileClientsInnerOtherUsersKey(t *testing.T) {
	w := newClWorld(t)
	r := w.paramiko(t, "jump", w.bobKey)
	if r.Code != 3 || !strings.Contains(r.Stdout, "AUTH_FAILED") {
		t.Fatalf("paramiko jump with bob's key inside alice's connection: got code %d\nstdout: %s\nstderr: %s\nwant the inner login refused", r.Code, r.Stdout, r.Stderr)
	}
	bobFP := ssh.FingerprintSHA256(w.bobKey.Signer.PublicKey())
	var refused bool
	for _, e := range readEvents(t, w.bastion) {
		switch {
		case e["type"] == "auth_failure" && e["key_fingerprint"] == bobFP && e["user"] == "alice" && e["typed"] == "web-1":
			refused = true
		case e["type"] == "upstream_connected" || e["type"] == "policy_allowed":
			js, _ := json.Marshal(e)
			t.Errorf("an inner login with another user's key got as far as %s", js)
		}
	}
	if !refused {
		t.Errorf("audit: no auth_failure for bob's key on alice's inner login; events:\n%s", strings.Join(w.bastion.AuditLines(t), "\n"))
	}
	// Alice's own key still works, in the same world.
	if r := w.paramiko(t, "jump", w.aliceKey); r.Code != 0 {
		t.Errorf("paramiko jump with alice's own key: got code %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestClientsBannerAbuse guards the identification read that chooses the
// cipher offer: a client whose version line never comes, never ends, is
// huge or is garbage is dropped within the handshake deadline, on the
// outer connection and on an inner ProxyJump channel, and the bastion
// serves the next person as usual. (The read is bounded to 255 bytes; the
// unit tests in proxy check that.)
func TestClientsBannerAbuse(t *testing.T) {
	w := newClWorld(t)
	huge := strings.Repeat("SSH-2.0-", 8192)
	cases := []struct {
		name string
		send func(io.Writer)
	}{
		{"silent", func(io.Writer) {}},
		{"huge", func(c io.Writer) { io.WriteString(c, huge) }},
		{"garbage", func(c io.Writer) { c.Write([]byte("\x00\xff\x01\x02garbage\r\n\x00\x00\x00\x0c")) }},
		{"drip", func(c io.Writer) {
			for range 40 {
				if _, err := io.WriteString(c, "S"); err != nil {
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		}},
	}
	// The handshake deadline is 5s (newClWorld); the inner leg's covers
	// the upstream steps too (2×5s + AWS backstop 12s + dial 5s).
	const outerBound, innerBound = 20 * time.Second, 50 * time.Second
	for _, tc := range cases {
		t.Run("outer/"+tc.name, func(t *testing.T) {
			t.Parallel()
			nc, err := net.Dial("tcp", w.bastion.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			start := time.Now()
			go tc.send(nc)
			nc.SetReadDeadline(time.Now().Add(outerBound + 10*time.Second))
			got, err := io.ReadAll(io.LimitReader(nc, 1<<20))
			if took := time.Since(start); took > outerBound {
				t.Errorf("connection held for %s (read %d bytes, %v), want closed within %s", took, len(got), err, outerBound)
			}
		})
		t.Run("inner/"+tc.name, func(t *testing.T) {
			t.Parallel()
			ch := w.openJumpChannel(t)
			defer ch.Close()
			start := time.Now()
			go tc.send(ch)
			done := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, io.LimitReader(ch, 1<<20))
				done <- n
			}()
			select {
			case <-done:
			case <-time.After(innerBound + 10*time.Second):
			}
			if took := time.Since(start); took > innerBound {
				t.Errorf("jump channel held for %s, want closed within %s", took, innerBound)
			}
		})
	}
	t.Cleanup(func() {
		r := w.alice.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "exit 5")
		if r.Code != 5 {
			t.Errorf("after the abuse: ssh -J got code %d, want 5; stderr: %s", r.Code, r.Stderr)
		}
	})
}

// openJumpChannel opens, as alice with x/crypto, the direct-tcpip channel
// to web-1:22 that ProxyJump would, and returns it raw.
func (w *clWorld) openJumpChannel(t *testing.T) ssh.Channel {
	t.Helper()
	cc, err := ssh.Dial("tcp", w.bastion.Addr, &ssh.ClientConfig{
		User:            "alice",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(w.aliceKey.Signer)},
		HostKeyCallback: ssh.FixedHostKey(w.bastion.HostKey),
		Timeout:         20 * time.Second,
	})
	if err != nil {
		t.Fatalf("dialling the bastion: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	payload := ssh.Marshal(struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}{"web-1", 22, "127.0.0.1", 0})
	ch, reqs, err := cc.OpenChannel("direct-tcpip", payload)
	if err != nil {
		t.Fatalf("opening the jump channel: %v", err)
	}
	go ssh.DiscardRequests(reqs)
	return ch
}
