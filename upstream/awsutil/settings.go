package awsutil

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"bastion/upstream/provider"
)

// Settings are the configuration every AWS provider shares: the regions it
// searches, the address and port it dials, how long it caches lookups, how
// long one AWS call may take, its clock and its logger. Each provider's
// Config has these fields; its constructor hands them to Settle.
//
// Defaults: the values live in the provider's provider.Descriptor. The
// config package applies them to keys the file leaves out, so a Config
// built from a file arrives complete; Settle applies the same values to
// zero fields for callers that build a Config by hand (tests, examples).
// Neither layer spells a default out itself.
type Settings struct {
	// Regions are the AWS regions searched, in order; if empty, every
	// region that has a client, sorted.
	Regions []string
	// Address is one of the provider's address choices; if empty, the
	// descriptor's DefaultAddress.
	Address string
	// Port is the instances' SSH port; if zero, the descriptor's
	// DefaultPort.
	Port int
	// ResolveCache is how long lookups are reused; if zero, the
	// descriptor's DefaultResolveCache; negative disables caching.
	ResolveCache time.Duration
	// CallTimeout bounds each AWS call; if zero or negative,
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// Now returns the current time; if nil, time.Now.
	Now func() time.Time
	// Logger receives one line per AWS call; if nil, nothing is logged.
	Logger *zap.Logger
}

// Settle fills in s's zero fields for the provider kind d and checks them.
// pkg prefixes errors (the Go package name, as callers have always seen
// it); addresses are the address choices, the default first; hasClient
// reports whether a configured region has its clients, and clientMissing
// says which when one has not. The returned logger is s.Logger (or a no-op
// logger) with the provider's name attached.
func Settle[C any](s *Settings, pkg string, d provider.Descriptor, addresses [2]string, clients map[string]C, hasClient func(C) bool, clientMissing string) (*zap.Logger, error) {
	if len(s.Regions) == 0 {
		s.Regions = slices.Sorted(maps.Keys(clients))
	}
	if len(s.Regions) == 0 {
		return nil, errors.New(pkg + ": no regions configured")
	}
	for _, r := range s.Regions {
		if !hasClient(clients[r]) {
			return nil, fmt.Errorf("%s: %s %q", pkg, clientMissing, r)
		}
	}
	switch s.Address {
	case "":
		s.Address = d.DefaultAddress
	case addresses[0], addresses[1]:
	default:
		return nil, fmt.Errorf("%s: address %q is neither %q nor %q", pkg, s.Address, addresses[0], addresses[1])
	}
	if s.Port == 0 {
		s.Port = d.DefaultPort
	}
	if s.Port < 1 || s.Port > 65535 {
		return nil, fmt.Errorf("%s: port %d out of range", pkg, s.Port)
	}
	if s.ResolveCache == 0 {
		s.ResolveCache = d.DefaultResolveCache
	}
	if s.CallTimeout <= 0 {
		s.CallTimeout = DefaultCallTimeout
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	log := s.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return log.With(zap.String("provider", d.Name)), nil
}
