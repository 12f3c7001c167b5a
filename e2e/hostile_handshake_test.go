package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// handshakeWorld is a bastion that offers AES-CTR besides AES-GCM (so that
// a MAC is negotiated when a client asks for CTR), with admin_listen, in
// front of a stock sshd as web-1.
func handshakeWorld(t *testing.T) *auditWorld {
	return newAuditWorld(t, "", "ciphers: [aes128-gcm@openssh.com, aes256-gcm@openssh.com, aes128-ctr, aes256-ctr]\n")
}

// TestHostileHandshakeSHA1MAC: hmac-sha1 and hmac-sha1-96 are offered on
// no leg. A real ssh asking for them with a non-AEAD cipher is refused on
// the outer leg and on the inner (ProxyJump) leg; an sshd that allows only
// them is refused on the upstream leg; the defaults, and an sshd with a
// CTR cipher and SHA-2 MACs, still connect.
func TestHostileHandshakeSHA1MAC(t *testing.T) {
	const macSeries = `bastion_handshake_failures_total{reason="no_common_mac"}`
	w := handshakeWorld(t)
	if r := w.bob.ssh(t, nil, "-J", "bastion", w.me+"@web-1", "echo defaults-ok"); r.Code != 0 || r.Stdout != "defaults-ok\n" {
		t.Fatalf("default algorithms: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	for _, mac := range []string{"hmac-sha1", "hmac-sha1-96"} {
		t.Run("outer_"+mac, func(t *testing.T) {
			before := scrape(t, w.admin)[macSeries]
			r := w.bob.ssh(t, nil, "-c", "aes128-ctr", "-o", "MACs="+mac, "bastion", "list")
			if r.Code == 0 || !strings.Contains(r.Stderr, "no matching MAC found") {
				t.Fatalf("outer leg with MACs=%s: exit %d, stderr %q; want a refusal (no matching MAC found)", mac, r.Code, r.Stderr)
			}
			waitFor(t, macSeries+" to count the refusal", 30*time.Second, func() bool { return scrape(t, w.admin)[macSeries] > before })
		})
		t.Run("inner_"+mac, func(t *testing.T) {
			r := w.bob.ssh(t, nil, "-c", "aes128-ctr", "-o", "MACs="+mac, "-J", "bastion", w.me+"@web-1", "echo inner")
			// The jump connection (ssh -W) does not take -c and -o: the
			// refusal comes from the inner server, which ssh sees on a
			// pipe ("UNKNOWN port 65535"), not from the outer one.
			if r.Code == 0 || !strings.Contains(r.Stderr, "no matching MAC found") || !strings.Contains(r.Stderr, "UNKNOWN port") {
				t.Fatalf("inner leg with MACs=%s: exit %d, stdout %q, stderr %q; want the inner server's refusal (no matching MAC found)", mac, r.Code, r.Stdout, r.Stderr)
			}
		})
	}
	// Each outer refusal is counted (above). An inner one is counted when
	// the client's KEXINIT reaches the bastion before ssh -W tears the
	// jump channel down, which under load it may not.
	t.Logf("%s = %v after two outer and two inner refusals", macSeries, scrape(t, w.admin)[macSeries])
	if r := w.bob.ssh(t, nil, "-c", "aes128-ctr", "-o", "MACs=hmac-sha2-256", "-J", "bastion", w.me+"@web-1", "echo sha2-ok"); r.Code != 0 || r.Stdout != "sha2-ok\n" {
		t.Fatalf("inner leg with aes128-ctr and hmac-sha2-256: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}

	// The upstream leg, against sshds that force a MAC.
	upKey := newKey(t, t.TempDir(), "mac_upstream_key")
	sha1Only := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}, Extra: []string{"Ciphers aes128-ctr", "MACs hmac-sha1,hmac-sha1-96"}})
	sha2 := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}, Extra: []string{"Ciphers aes128-ctr", "MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-256"}})
	person := newKey(t, t.TempDir(), "carol")
	b := startBastion(t, fmt.Sprintf(`users:
  - {name: carol, keys: [%q], groups: [dev]}
providers:
  static:
    - {name: sha1-only, address: %q, user: %s, private_key: %q, host_key: %q}
    - {name: sha2-ctr, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
`, person.AuthorizedKey(), sha1Only.Addr, w.me, upKey.Private, sha1Only.HostKey.AuthorizedKey(),
		sha2.Addr, w.me, upKey.Private, sha2.HostKey.AuthorizedKey()))
	c := newClient(t, b, "carol", person)
	if r := c.ssh(t, nil, "-J", "bastion", w.me+"@sha1-only", "echo sha1-upstream"); r.Code == 0 {
		t.Errorf("upstream sshd with only hmac-sha1: got in (%q); want the bastion to offer no SHA-1 MAC", r.Stdout)
	}
	if r := c.ssh(t, nil, "-J", "bastion", w.me+"@sha2-ctr", "echo sha2-upstream"); r.Code != 0 || r.Stdout != "sha2-upstream\n" {
		t.Errorf("upstream sshd with aes128-ctr and SHA-2 MACs: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestHostileHandshakeNoCommonAlgorithms: a client that shares no key
// exchange, cipher, MAC or host key algorithm with the bastion leaves a
// trace: the connection_closed event says why (with the algorithm lists,
// clipped, in error), bastion_handshake_failures_total counts the reason,
// and an info line in the log names it.
func TestHostileHandshakeNoCommonAlgorithms(t *testing.T) {
	w := handshakeWorld(t)
	cases := []struct {
		reason string
		args   []string
	}{
		{"no_common_kex", []string{"-o", "KexAlgorithms=diffie-hellman-group14-sha1"}},
		{"no_common_cipher", []string{"-c", "aes256-cbc"}},
		{"no_common_mac", []string{"-c", "aes128-ctr", "-o", "MACs=hmac-md5"}},
		{"no_common_host_key", []string{"-o", "HostKeyAlgorithms=ecdsa-sha2-nistp256"}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			series := fmt.Sprintf(`bastion_handshake_failures_total{reason=%q}`, tc.reason)
			before := scrape(t, w.admin)[series]
			r := w.bob.ssh(t, nil, append(tc.args, "bastion", "list")...)
			if r.Code == 0 {
				t.Fatalf("ssh %v: exit 0, want a failed handshake", tc.args)
			}
			wantReason := "handshake_failed: " + strings.ReplaceAll(tc.reason, "_", " ")
			var ev map[string]any
			waitFor(t, "connection_closed with reason "+wantReason, 30*time.Second, func() bool {
				for _, line := range w.b.AuditLines(t) {
					var e map[string]any
					if json.Unmarshal([]byte(line), &e) == nil && e["type"] == "connection_closed" && e["reason"] == wantReason {
						ev = e
						return true
					}
				}
				return false
			})
			t.Logf("connection_closed: reason %q, error %q", ev["reason"], ev["error"])
			if msg, _ := ev["error"].(string); !strings.Contains(msg, "no common algorithm") || len(msg) > 300 {
				t.Errorf("connection_closed error: got %q, want the negotiation error, clipped", msg)
			}
			waitFor(t, series+" to move", 30*time.Second, func() bool { return scrape(t, w.admin)[series] > before })
			waitFor(t, "an info log line with reason "+tc.reason, 30*time.Second, func() bool {
				for _, line := range strings.Split(w.b.proc.out.String(), "\n") {
					if strings.Contains(line, `"level":"info"`) && strings.Contains(line, `"msg":"handshake_failed"`) &&
						strings.Contains(line, `"reason":"`+tc.reason+`"`) {
						return true
					}
				}
				return false
			})
		})
	}
}
