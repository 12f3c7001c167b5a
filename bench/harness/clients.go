package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// handshakeTimeout bounds every x/crypto dial and handshake.
const handshakeTimeout = 30 * time.Second

// goDialer opens x/crypto SSH client connections to the light server by
// one of the three routes.
type goDialer struct {
	Mode string // modeOpenSSH, modeBastionJump or modeBastionDirect

	Key      ssh.Signer
	OSUser   string
	JumpAddr string        // the OpenSSH jump sshd (modeOpenSSH)
	JumpKey  ssh.PublicKey // its host key
	Bastion  string        // the bastion's address
	BastKey  ssh.PublicKey // its host key
	HostCA   ssh.PublicKey // the bastion's host CA
	Light    string        // the light server's address
	LightKey ssh.PublicKey // its host key
}

// conn is an established route: the client the session is opened on, and
// every connection under it, closed together.
type conn struct {
	Client *ssh.Client
	layers []*ssh.Client // outermost first
}

// Close closes the inner client, then the outer ones.
func (c *conn) Close() error {
	var err error
	for i := len(c.layers) - 1; i >= 0; i-- {
		if e := c.layers[i].Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// Dial opens a route to the light server.
func (d *goDialer) Dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	switch d.Mode {
	case modeOpenSSH:
		outer, err := dialClient(ctx, d.JumpAddr, d.OSUser, ssh.PublicKeys(d.Key), ssh.FixedHostKey(d.JumpKey))
		if err != nil {
			return nil, fmt.Errorf("jump sshd: %w", err)
		}
		inner, err := dialThrough(ctx, outer, d.Light, d.OSUser, ssh.PublicKeys(d.Key), ssh.FixedHostKey(d.LightKey))
		if err != nil {
			outer.Close()
			return nil, fmt.Errorf("through jump sshd: %w", err)
		}
		return &conn{Client: inner, layers: []*ssh.Client{outer, inner}}, nil
	case modeBastionJump:
		outer, err := dialClient(ctx, d.Bastion, benchUser, ssh.PublicKeys(d.Key), ssh.FixedHostKey(d.BastKey))
		if err != nil {
			return nil, fmt.Errorf("bastion: %w", err)
		}
		checker := &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return bytes.Equal(auth.Marshal(), d.HostCA.Marshal())
		}}
		// The inner login is bound to the outer identity: "none" auth.
		inner, err := dialThrough(ctx, outer, net.JoinHostPort(targetLight, "22"), d.OSUser, nil, checker.CheckHostKey)
		if err != nil {
			outer.Close()
			return nil, fmt.Errorf("through bastion: %w", err)
		}
		return &conn{Client: inner, layers: []*ssh.Client{outer, inner}}, nil
	case modeBastionDirect:
		c, err := dialClient(ctx, d.Bastion, d.OSUser+"+"+targetLight, ssh.PublicKeys(d.Key), ssh.FixedHostKey(d.BastKey))
		if err != nil {
			return nil, fmt.Errorf("bastion direct: %w", err)
		}
		return &conn{Client: c, layers: []*ssh.Client{c}}, nil
	}
	return nil, fmt.Errorf("unknown mode %q", d.Mode)
}

// dialClient dials addr and completes an SSH handshake within ctx.
func dialClient(ctx context.Context, addr, user string, auth ssh.AuthMethod, hk ssh.HostKeyCallback) (*ssh.Client, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	return handshake(nc, addr, user, auth, hk)
}

// handshake runs the client side of an SSH handshake over nc, closing nc
// if it fails; auth nil offers no method (the "none" login).
func handshake(nc net.Conn, addr, user string, auth ssh.AuthMethod, hk ssh.HostKeyCallback) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{User: user, HostKeyCallback: hk}
	if auth != nil {
		cfg.Auth = []ssh.AuthMethod{auth}
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// dialThrough opens a direct-tcpip channel to addr on outer (ProxyJump)
// and completes an SSH handshake over it within ctx. Channels have no
// deadlines, so the context closes outer instead.
func dialThrough(ctx context.Context, outer *ssh.Client, addr, user string, auth ssh.AuthMethod, hk ssh.HostKeyCallback) (*ssh.Client, error) {
	stop := context.AfterFunc(ctx, func() { outer.Close() })
	defer stop()
	nc, err := outer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return handshake(nc, addr, user, auth, hk)
}

// openShell opens an interactive session (pty and shell) on c.
func openShell(c *ssh.Client) (*ssh.Session, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		s.Close()
		return nil, fmt.Errorf("pty-req: %w", err)
	}
	if err := s.Shell(); err != nil {
		s.Close()
		return nil, fmt.Errorf("shell: %w", err)
	}
	return s, nil
}
