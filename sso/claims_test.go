package sso

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func claimsOf(t *testing.T, v map[string]any) map[string]json.RawMessage {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMapClaims(t *testing.T) {
	many := make([]string, 200)
	for i := range many {
		many[i] = fmt.Sprintf("g%d", i)
	}
	tests := []struct {
		name       string
		m          Mapping
		claims     map[string]any
		wantLabel  string
		wantUser   string
		wantGroups []string
	}{
		{name: "preferred username and groups", m: Mapping{UsernameClaim: "preferred_username", GroupsClaim: "groups"},
			claims: map[string]any{"preferred_username": "alice", "groups": []string{"dev", "ops", "dev"}}, wantUser: "alice", wantGroups: []string{"dev", "ops"}},
		{name: "email as the name", m: Mapping{UsernameClaim: "email", GroupsClaim: "groups"},
			claims: map[string]any{"email": "alice@example.com"}, wantUser: "alice@example.com"},
		{name: "one group as a string", m: Mapping{UsernameClaim: "u", GroupsClaim: "roles"},
			claims: map[string]any{"u": "bob", "roles": "admins"}, wantUser: "bob", wantGroups: []string{"admins"}},
		{name: "groups bounded", m: Mapping{UsernameClaim: "u", GroupsClaim: "groups"},
			claims: map[string]any{"u": "bob", "groups": many}, wantUser: "bob", wantGroups: many[:MaxGroups]},
		{name: "bad groups dropped", m: Mapping{UsernameClaim: "u", GroupsClaim: "groups"},
			claims: map[string]any{"u": "bob", "groups": []string{"", "a,b", "ok", strings.Repeat("x", 200), "bell\a"}}, wantUser: "bob", wantGroups: []string{"ok"}},
		{name: "groups not strings", m: Mapping{UsernameClaim: "u", GroupsClaim: "groups"},
			claims: map[string]any{"u": "bob", "groups": map[string]int{"a": 1}}, wantUser: "bob"},
		{name: "no username", m: Mapping{UsernameClaim: "preferred_username"},
			claims: map[string]any{"email": "a@example.com"}, wantLabel: LabelNoUsername},
		{name: "username not a string", m: Mapping{UsernameClaim: "preferred_username"},
			claims: map[string]any{"preferred_username": 42}, wantLabel: LabelNoUsername},
		{name: "username with a blank", m: Mapping{UsernameClaim: "preferred_username"},
			claims: map[string]any{"preferred_username": "alice smith"}, wantLabel: LabelNoUsername},
		{name: "username too long", m: Mapping{UsernameClaim: "preferred_username"},
			claims: map[string]any{"preferred_username": strings.Repeat("a", 65)}, wantLabel: LabelNoUsername},
		{name: "username with the direct separator", m: Mapping{UsernameClaim: "preferred_username"},
			claims: map[string]any{"preferred_username": "a+web-1"}, wantLabel: LabelNoUsername},
		{name: "allowed domain", m: Mapping{UsernameClaim: "preferred_username", AllowedDomains: []string{"example.com"}},
			claims: map[string]any{"preferred_username": "alice", "email": "alice@EXAMPLE.com", "email_verified": true}, wantUser: "alice"},
		{name: "other domain", m: Mapping{UsernameClaim: "preferred_username", AllowedDomains: []string{"example.com"}},
			claims: map[string]any{"preferred_username": "alice", "email": "alice@evil.example"}, wantLabel: LabelDomain},
		{name: "subdomain is another domain", m: Mapping{UsernameClaim: "preferred_username", AllowedDomains: []string{"example.com"}},
			claims: map[string]any{"preferred_username": "alice", "email": "alice@x.example.com"}, wantLabel: LabelDomain},
		{name: "email not verified", m: Mapping{UsernameClaim: "preferred_username", AllowedDomains: []string{"example.com"}},
			claims: map[string]any{"preferred_username": "alice", "email": "alice@example.com", "email_verified": false}, wantLabel: LabelDomain},
		{name: "email not verified as a string", m: Mapping{UsernameClaim: "preferred_username", AllowedDomains: []string{"example.com"}},
			claims: map[string]any{"preferred_username": "alice", "email": "alice@example.com", "email_verified": "false"}, wantLabel: LabelDomain},
		{name: "no email with allowed domains", m: Mapping{UsernameClaim: "preferred_username", AllowedDomains: []string{"example.com"}},
			claims: map[string]any{"preferred_username": "alice"}, wantLabel: LabelDomain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.m.mapClaims("https://idp", "sub-1", claimsOf(t, tc.claims))
			if tc.wantLabel != "" {
				var r *Refusal
				if !errors.As(err, &r) || r.Label != tc.wantLabel {
					t.Fatalf("got %v, want a refusal %q", err, tc.wantLabel)
				}
				if msg := r.Message(); !strings.HasPrefix(msg, "bastion: login refused: ") || strings.ContainsAny(msg, "\r\n") {
					t.Errorf("message %q: want one line starting with bastion: login refused:", msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Username != tc.wantUser || !slices.Equal(a.Groups, tc.wantGroups) || a.Subject != "sub-1" || a.Issuer != "https://idp" {
				t.Errorf("got %+v, want user %q groups %q", a, tc.wantUser, tc.wantGroups)
			}
		})
	}
}

func TestRefusalMessages(t *testing.T) {
	tests := []struct {
		r    Refusal
		want string
	}{
		{Refusal{Label: LabelDenied}, "bastion: login refused: the identity provider denied the request"},
		{Refusal{Label: LabelExpired}, "bastion: login refused: the code expired before it was approved"},
		{Refusal{Label: LabelInvalidToken, Reason: "wrong audience"}, "bastion: login refused: the identity provider's token was not valid (wrong audience)"},
		{Refusal{Label: LabelUnreachable}, "bastion: login refused: cannot reach the identity provider; try again later"},
		{Refusal{Label: LabelDomain, Reason: "the email domain x is not allowed here"}, "bastion: login refused: the email domain x is not allowed here"},
	}
	for _, tc := range tests {
		if got := tc.r.Message(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.r.Label, got, tc.want)
		}
	}
	if got := LabelOf(errors.New("x")); got != LabelUnreachable {
		t.Errorf("LabelOf(plain error): got %q, want %q", got, LabelUnreachable)
	}
}
