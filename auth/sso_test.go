package auth

import (
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/config"
)

// TestBound checks the identities of SSO bindings: claimed groups, the
// merge rule for a configured name, revocation, and what a reload changes.
func TestBound(t *testing.T) {
	key, revoked := newSigner(t), newSigner(t)
	fp, revokedFP := ssh.FingerprintSHA256(key.PublicKey()), ssh.FingerprintSHA256(revoked.PublicKey())
	base := func(merge bool) *config.Config {
		return &config.Config{
			Users:               []config.User{{Name: "alice", Groups: []string{"dev"}}},
			RevokedFingerprints: []string{revokedFP},
			SSO:                 &config.SSO{Issuer: "https://idp", MergeConfiguredUsers: merge},
		}
	}
	s := SSO{Issuer: "https://idp", Subject: "sub-carol", Groups: []string{"ops"}, Expires: time.Now().Add(time.Hour)}
	a := NewAuthenticator(base(false))

	id, err := a.Bound(fp, "carol", s)
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "carol" || !slices.Equal(id.Groups, []string{"ops"}) || id.SSO.Subject != "sub-carol" || id.Method() != "sso" {
		t.Errorf("carol: got %+v", id)
	}
	if !a.Admits(id) || !slices.Equal(a.Current(id).Groups, []string{"ops"}) {
		t.Errorf("carol: Admits %v, Current groups %v; want admitted with [ops]", a.Admits(id), a.Current(id).Groups)
	}

	if _, err := a.Bound(fp, "alice", s); !errors.Is(err, ErrMergeRefused) {
		t.Errorf("claimed name of a configured user: got %v, want ErrMergeRefused", err)
	}
	if _, err := a.Bound(revokedFP, "carol", s); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked key: got %v, want ErrRevoked", err)
	}
	other := s
	other.Issuer = "https://elsewhere"
	if _, err := a.Bound(fp, "carol", other); !errors.Is(err, ErrSSOOff) {
		t.Errorf("another issuer: got %v, want ErrSSOOff", err)
	}

	m := NewAuthenticator(base(true))
	merged, err := m.Bound(fp, "alice", s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(merged.Groups, []string{"ops", "dev"}) {
		t.Errorf("merged groups: got %v, want [ops dev]", merged.Groups)
	}

	// Reloads: sso removed, the key revoked, merging turned off.
	off := base(false)
	off.SSO = nil
	if NewAuthenticator(off).Admits(id) {
		t.Error("sso removed: binding still admitted")
	}
	rev := base(false)
	rev.RevokedFingerprints = append(rev.RevokedFingerprints, fp)
	if NewAuthenticator(rev).Admits(id) {
		t.Error("key revoked: binding still admitted")
	}
	if a.Admits(merged) {
		t.Error("merging turned off: merged identity still admitted")
	}
	expired := id
	gone := *id.SSO
	gone.Expires = time.Now().Add(-time.Second)
	expired.SSO = &gone
	if a.Admits(expired) {
		t.Error("binding past its end still admitted")
	}
	// A bound key is still no configured key.
	if _, err := a.Authenticate(key.PublicKey(), nil); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Authenticate of a bound key: got %v, want ErrUnknownKey", err)
	}
}
