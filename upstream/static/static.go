// Package static is the provider for hosts outside AWS: a fixed address, a
// private key the bastion logs in with, and a host key pinned in the config
// or read from a known_hosts file.
package static

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"bastion/internal/secfile"
	"bastion/upstream"
)

// Host is one static target.
type Host struct {
	// Name is the target name people type.
	Name string
	// Address is the host:port to dial.
	Address string
	// User is the only OS user the bastion logs in as.
	User string
	// Signer is the bastion's key for this host.
	Signer ssh.Signer
	// HostKey pins the host's key. If nil, KnownHosts is used.
	HostKey ssh.PublicKey
	// KnownHosts is a known_hosts file holding the host's key under its
	// address.
	KnownHosts string
	// Tags are labels that policies can match.
	Tags map[string]string
}

// Provider serves a fixed list of hosts. It makes no network calls.
type Provider struct {
	hosts map[string]*hostEntry
}

type hostEntry struct {
	Host
	callback ssh.HostKeyCallback
	algos    []string
}

// New returns a provider for hosts. It reads the known_hosts files now, so
// that a broken file fails at start rather than at the first connection.
func New(hosts []Host) (*Provider, error) {
	p := &Provider{hosts: make(map[string]*hostEntry, len(hosts))}
	for _, h := range hosts {
		if _, dup := p.hosts[h.Name]; dup {
			return nil, fmt.Errorf("static host %q: defined twice", h.Name)
		}
		if h.Signer == nil {
			return nil, fmt.Errorf("static host %q: no private key", h.Name)
		}
		e := &hostEntry{Host: h}
		switch {
		case h.HostKey != nil:
			e.callback = upstream.PinnedHostKeys(h.Name, "pinned host_key", h.HostKey)
			e.algos = upstream.HostKeyAlgorithms(h.HostKey)
		case h.KnownHosts != "":
			cb, err := knownhosts.New(h.KnownHosts)
			if err != nil {
				return nil, fmt.Errorf("static host %q: reading known_hosts: %w", h.Name, err)
			}
			e.callback = knownHostsCallback(h.Name, h.KnownHosts, cb)
		default:
			return nil, fmt.Errorf("static host %q: no host key to verify against", h.Name)
		}
		p.hosts[h.Name] = e
	}
	return p, nil
}

// LoadSigner reads an unencrypted private key file, refusing one that
// others could read or change (see package secfile).
func LoadSigner(path string) (ssh.Signer, error) {
	pem, err := secfile.ReadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("parsing private key %s: %w", path, err)
	}
	return s, nil
}

// knownHostsCallback turns knownhosts' key errors into a
// *upstream.HostKeyMismatchError, so that the person is told why.
func knownHostsCallback(name, file string, cb ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		return &upstream.Error{
			Public: "upstream host key does not match " + file + "; refusing to connect",
			Err:    fmt.Errorf("%w: %w", &upstream.HostKeyMismatchError{Target: name, Got: key}, err),
		}
	}
}

// Name returns upstream.ProviderStatic.
func (p *Provider) Name() string { return upstream.ProviderStatic }

// Resolve returns the host named q.Name, if any. Static hosts have no region.
func (p *Provider) Resolve(_ context.Context, q upstream.Query) ([]upstream.Target, error) {
	h, ok := p.hosts[q.Name]
	if !ok || q.Region != "" {
		return nil, nil
	}
	return []upstream.Target{h.target()}, nil
}

func (h *hostEntry) target() upstream.Target {
	return upstream.Target{Provider: upstream.ProviderStatic, Name: h.Name, ID: h.Name, Tags: h.Tags}
}

// Credentials returns the host's fixed credentials. The OS user must be the
// configured one.
func (p *Provider) Credentials(_ context.Context, t upstream.Target, osUser string) (*upstream.Credentials, error) {
	h, ok := p.hosts[t.Name]
	if !ok {
		return nil, fmt.Errorf("static host %q: %w", t.Name, upstream.ErrNotFound)
	}
	if osUser != h.User {
		return nil, &upstream.Error{
			Public: fmt.Sprintf("this host admits only %s", h.User),
			Err:    fmt.Errorf("static host %q: os user %q: %w", t.Name, osUser, upstream.ErrUserMismatch),
		}
	}
	return &upstream.Credentials{
		Addr:              h.Address,
		User:              h.User,
		Signer:            h.Signer,
		HostKeyCallback:   h.callback,
		HostKeyAlgorithms: h.algos,
		HostKeySource:     h.keySource(),
	}, nil
}

// List returns every static host.
func (p *Provider) List(context.Context) ([]upstream.Target, error) {
	out := make([]upstream.Target, 0, len(p.hosts))
	for _, h := range p.hosts {
		out = append(out, h.target())
	}
	return out, nil
}

// keySource names how h's host key is trusted.
func (h *Host) keySource() string {
	if h.KnownHosts != "" {
		return "known_hosts"
	}
	return "pinned"
}

var (
	_ upstream.Provider = (*Provider)(nil)
	_ upstream.Lister   = (*Provider)(nil)
)
