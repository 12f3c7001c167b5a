package sso

import (
	"context"
	"time"
)

// Service is what the proxy needs for SSO logins under one config: the
// provider, the claim mapping, the binding store and the bounds.
type Service struct {
	Client  *Client
	Mapping Mapping
	Store   Store
	// TTL is how long a login binds a key.
	TTL time.Duration
	// MaxPending and MaxPendingPerSource bound the logins waiting for
	// their approval, in all and from one source address.
	MaxPending, MaxPendingPerSource int
}

// Issuer returns the configured issuer.
func (s *Service) Issuer() string { return s.Client.Issuer }

// Start begins a login.
func (s *Service) Start(ctx context.Context) (*Device, error) { return s.Client.Start(ctx) }

// Finish waits for the person's approval of d and returns the account the
// verified ID token proves.
func (s *Service) Finish(ctx context.Context, d *Device) (Account, error) {
	tok, err := s.Client.Wait(ctx, d)
	if err != nil {
		return Account{}, err
	}
	return s.Mapping.Map(tok)
}
