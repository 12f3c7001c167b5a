package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testClock is a clock that tests move by hand.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

func newTestCertCache(t *testing.T) (*certCache, *testClock) {
	c := newCertCache(testSigner(t), testSigner(t))
	clk := &testClock{t: time.Unix(1_800_000_000, 0)}
	c.now = clk.now
	return c, clk
}

func mustSigner(t *testing.T, c *certCache, name string) *ssh.Certificate {
	t.Helper()
	s, err := c.signer(name)
	if err != nil {
		t.Fatal(err)
	}
	cert := s.PublicKey().(*ssh.Certificate)
	if len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != name {
		t.Fatalf("certificate for %q: principals %q, want just the name", name, cert.ValidPrincipals)
	}
	return cert
}

func TestCertCacheReuses(t *testing.T) {
	c, clk := newTestCertCache(t)
	first := mustSigner(t, c, "web-1")
	clk.t = clk.t.Add(30 * time.Minute)
	if again := mustSigner(t, c, "web-1"); again.Nonce == nil || string(again.Nonce) != string(first.Nonce) {
		t.Errorf("second request within the hour: got a new certificate, want the cached one")
	}
	if _, _, signed := c.stats(); signed != 1 {
		t.Errorf("signed: got %d, want 1", signed)
	}
}

func TestCertCacheBounds(t *testing.T) {
	tests := []struct {
		name  string
		names func(i int) string
		n     int
	}{
		{"short names", func(i int) string { return fmt.Sprintf("web-%d", i) }, 3 * certCacheEntries},
		// 253-byte names: the byte bound holds before the count bound.
		{"longest names", func(i int) string {
			p := fmt.Sprintf("n%d-", i)
			return p + strings.Repeat("a", 253-len(p))
		}, 3 * certCacheEntries},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, clk := newTestCertCache(t)
			for i := range tc.n {
				mustSigner(t, c, tc.names(i))
				clk.t = clk.t.Add(time.Millisecond)
				entries, size, _ := c.stats()
				if entries > certCacheEntries || size > certCacheBytes {
					t.Fatalf("after %d names: %d entries, %d bytes; want at most %d and %d", i+1, entries, size, certCacheEntries, certCacheBytes)
				}
			}
			entries, size, signed := c.stats()
			t.Logf("%d names: %d entries, %d bytes cached, %d signed", tc.n, entries, size, signed)
			if signed != tc.n {
				t.Errorf("signed: got %d, want %d", signed, tc.n)
			}
			// The most recent name is still cached; the first was evicted.
			if _, ok := c.byName[tc.names(tc.n-1)]; !ok {
				t.Errorf("the most recently used name is not cached")
			}
			if _, ok := c.byName[tc.names(0)]; ok {
				t.Errorf("the least recently used name is still cached")
			}
		})
	}
}

func TestCertCacheLRU(t *testing.T) {
	c, clk := newTestCertCache(t)
	mustSigner(t, c, "keep")
	for i := range certCacheEntries + 10 {
		// "keep" is used between every other name: it stays.
		mustSigner(t, c, fmt.Sprintf("web-%d", i))
		mustSigner(t, c, "keep")
		clk.t = clk.t.Add(time.Millisecond)
	}
	if _, ok := c.byName["keep"]; !ok {
		t.Fatal("a name used all along was evicted")
	}
	if _, _, signed := c.stats(); signed != certCacheEntries+11 {
		t.Errorf("signed: got %d, want %d (keep once, each other name once)", signed, certCacheEntries+11)
	}
}

func TestCertCacheAge(t *testing.T) {
	c, clk := newTestCertCache(t)
	mustSigner(t, c, "idle")
	mustSigner(t, c, "busy")
	// Used every 30 minutes for a day: renewed once it is within
	// certRenewBefore of expiry, and never dropped for idleness.
	var renewed int
	last := mustSigner(t, c, "busy")
	for range 2 * 24 {
		clk.t = clk.t.Add(30 * time.Minute)
		cert := mustSigner(t, c, "busy")
		if string(cert.Nonce) != string(last.Nonce) {
			renewed++
			if left := time.Unix(int64(last.ValidBefore), 0).Sub(clk.t); left > certRenewBefore {
				t.Errorf("renewed with %s left, want only within %s of expiry", left, certRenewBefore)
			}
		}
		if left := time.Unix(int64(cert.ValidBefore), 0).Sub(clk.t); left <= certRenewBefore {
			t.Errorf("presented a certificate with %s left", left)
		}
		last = cert
	}
	if renewed != 1 {
		t.Errorf("renewals over a day: got %d, want 1", renewed)
	}
	if _, ok := c.byName["idle"]; ok {
		t.Errorf("a name unused for a day is still cached")
	}
	if entries, _, _ := c.stats(); entries != 1 {
		t.Errorf("entries: got %d, want 1 (busy)", entries)
	}
}
