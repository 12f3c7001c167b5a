package assemble

import (
	"fmt"
	"slices"

	"bastion/config"
	"bastion/fleet"
	"bastion/sso"
)

// ssoState is what SSO keeps across reloads: the binding store (changing
// bindings_file or fleet needs a restart) and the provider's client, kept
// while the issuer, client and scopes stay the same (its discovery is
// cached).
type ssoState struct {
	store  sso.Store
	client *sso.Client
}

// newSSOStore opens the binding store: the fleet table with fleet, else
// the bindings file.
func newSSOStore(cfg *config.Config, fs *fleet.Store) (sso.Store, error) {
	if cfg.SSO == nil {
		return nil, nil
	}
	if fs != nil {
		return fs, nil
	}
	st, err := sso.OpenFileStore(cfg.SSO.BindingsFile, cfg.SSO.MaxBindings, nil)
	if err != nil {
		return nil, fmt.Errorf("sso.bindings_file: %w", err)
	}
	return st, nil
}

// service returns the SSO service of cfg, reusing the client when the
// provider's settings are unchanged; nil without sso (or without a store,
// when sso was added by a reload: that needs a restart).
func (st *ssoState) service(cfg *config.Config) (*sso.Service, error) {
	s := cfg.SSO
	if s == nil || st == nil || st.store == nil {
		return nil, nil
	}
	secret, err := s.ReadClientSecret()
	if err != nil {
		return nil, err
	}
	c := st.client
	if c == nil || c.Issuer != s.Issuer || c.ClientID != s.ClientID || c.ClientSecret != secret || !slices.Equal(c.Scopes, s.Scopes) {
		c = &sso.Client{Issuer: s.Issuer, ClientID: s.ClientID, ClientSecret: secret, Scopes: slices.Clone(s.Scopes)}
		st.client = c
	}
	return &sso.Service{
		Client:              c,
		Mapping:             sso.Mapping{UsernameClaim: s.UsernameClaim, GroupsClaim: s.GroupsClaim, AllowedDomains: s.AllowedDomains},
		Store:               st.store,
		TTL:                 s.SessionTTL.D(),
		MaxPending:          s.MaxPending,
		MaxPendingPerSource: s.MaxPendingPerSource,
	}, nil
}
