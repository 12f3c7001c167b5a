package e2e

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
)

// TestHostileSerialSilentEndpoint points the bastion at a serial console
// "endpoint" that accepts TCP and never speaks SSH (a black-holed or
// hijacked endpoint address). The person gets one line saying the
// handshake did not complete, within the handshake deadline, not a hang,
// and the bastion dialled the configured endpoint once.
func TestHostileSerialSilentEndpoint(t *testing.T) {
	fake, err := awsfake.Start(awsfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	fake.SetSerialConsoleAccess(region, true)
	fake.AddEC2Instance(awsfake.EC2Instance{ID: serialWebID, Region: region, PrivateIP: "127.0.0.1", Tags: map[string]string{"Name": "web-1"}})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	dir := t.TempDir()
	dana, erin := newKey(t, dir, "dana"), newKey(t, dir, "erin")
	body := serialConfig(dana, erin, ln.Addr().String(), ssh.FingerprintSHA256(newKey(t, dir, "endpoint").Signer.PublicKey()), dir)
	body = strings.Replace(body, "handshake_timeout: 10s", "handshake_timeout: 3s", 1)
	b := startBastion(t, body, awsEnv(fake, fake.SecretAccessKey())...)
	c := newClient(t, b, "dana", dana)

	start := time.Now()
	r := c.ssh(t, nil, "-J", "bastion", "port0@web-1.serial", "true")
	elapsed := time.Since(start)
	if want := "upstream did not complete the SSH handshake in 3s"; r.Code == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("silent endpoint: exit %d, stderr %q; want a refusal with %q", r.Code, r.Stderr, want)
	}
	if n := strings.Count(r.Stderr, "bastion:"); n != 1 {
		t.Errorf("silent endpoint: %d lines from the bastion, want one: %q", n, r.Stderr)
	}
	if elapsed > 45*time.Second {
		t.Errorf("silent endpoint: the refusal took %s, want about the 3s handshake deadline", elapsed)
	}
	mu.Lock()
	n := len(held)
	mu.Unlock()
	if n != 1 {
		t.Errorf("endpoint connections: %d, want 1 (the bastion dialled the configured endpoint once)", n)
	}
}
