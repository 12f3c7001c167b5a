package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLightServer drives the idle server with the x/crypto client as the
// benchmark does: exec exits 0 at once, shells stay open and are counted.
func TestLightServer(t *testing.T) {
	host, person, stranger := newSigner(t), newSigner(t), newSigner(t)
	l, err := startLight(host, person.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := dialClient(ctx, l.Addr(), "anyone", ssh.PublicKeys(person), ssh.FixedHostKey(host.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run("true"); err != nil {
		t.Errorf("exec: got %v, want exit 0", err)
	}

	var shells []*ssh.Session
	for range 3 {
		s, err := openShell(c)
		if err != nil {
			t.Fatal(err)
		}
		shells = append(shells, s)
	}
	if got := l.Shells.Load(); got != 3 {
		t.Errorf("got %d shells, want 3", got)
	}
	for _, s := range shells {
		s.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Shells.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("got %d shells after closing all, want 0", l.Shells.Load())
		}
		time.Sleep(time.Millisecond)
	}

	if _, err := dialClient(ctx, l.Addr(), "anyone", ssh.PublicKeys(stranger), ssh.FixedHostKey(host.PublicKey())); err == nil {
		t.Error("a key that is not authorized logged in")
	}
	if _, err := dialClient(ctx, l.Addr(), "anyone", ssh.PublicKeys(person), ssh.FixedHostKey(stranger.PublicKey())); err == nil {
		t.Error("logged in although the host key does not match")
	}
}

// TestLightServerClose checks that Close ends live connections.
func TestLightServerClose(t *testing.T) {
	host, person := newSigner(t), newSigner(t)
	l, err := startLight(host, person.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialClient(ctx, l.Addr(), "anyone", ssh.PublicKeys(person), ssh.FixedHostKey(host.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openShell(c); err != nil {
		t.Fatal(err)
	}
	l.Close()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the client connection outlived Close")
	}
}
