package siminstance

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"

	"bastion/internal/testkit"
)

// waitTimeout bounds every wait for something the server does.
const waitTimeout = 10 * time.Second

// newSigner returns a fresh ed25519 signer.
func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("making signer: %v", err)
	}
	return s
}

// certOptions varies a test certificate.
type certOptions struct {
	principals []string
	certType   uint32        // 0 means ssh.UserCert
	validFor   time.Duration // 0 means an hour; negative means expired
}

// newCertSigner returns a signer presenting a certificate for a new key,
// signed by ca.
func newCertSigner(t *testing.T, ca ssh.Signer, o certOptions) ssh.Signer {
	t.Helper()
	key := newSigner(t)
	now := time.Now()
	validFor := o.validFor
	if validFor == 0 {
		validFor = time.Hour
	}
	certType := o.certType
	if certType == 0 {
		certType = ssh.UserCert
	}
	after, before := now.Add(-time.Minute), now.Add(validFor)
	if validFor < 0 {
		after, before = now.Add(2*validFor), now.Add(validFor)
	}
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		Serial:          1,
		CertType:        certType,
		KeyId:           "test",
		ValidPrincipals: o.principals,
		ValidAfter:      uint64(after.Unix()),
		ValidBefore:     uint64(before.Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatalf("signing certificate: %v", err)
	}
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatalf("making certificate signer: %v", err)
	}
	return s
}

// startInstance starts an Instance named web-1 and closes it at cleanup.
func startInstance(t *testing.T, authorize func(string, ssh.PublicKey) error) *Instance {
	t.Helper()
	inst, err := Start(Options{
		Addr:      "127.0.0.1:0",
		Authorize: authorize,
		Name:      "web-1",
		Logger:    zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := inst.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return inst
}

// dial logs in to inst as user with signer.
func dial(inst *Instance, user string, signer ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", inst.Addr(), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(inst.HostKey()),
		Timeout:         waitTimeout,
	})
}

// mustDial is dial that fails the test on error and closes the client at
// cleanup.
func mustDial(t *testing.T, inst *Instance, user string, signer ssh.Signer) *ssh.Client {
	t.Helper()
	client, err := dial(inst, user, signer)
	if err != nil {
		t.Fatalf("dialing %s as %s: %v", inst.Addr(), user, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// admitKeys returns an Authorize function admitting signers' keys for any
// user.
func admitKeys(signers ...ssh.Signer) func(string, ssh.PublicKey) error {
	return AcceptKeys(func(string) []ssh.PublicKey {
		var keys []ssh.PublicKey
		for _, s := range signers {
			keys = append(keys, s.PublicKey())
		}
		return keys
	})
}

// syncBuffer is the test kit's buffer, safe for concurrent use, that
// signals each write so that a test can wait for output without sleeping.
type syncBuffer struct{ testkit.SyncBuffer }

func newSyncBuffer() *syncBuffer { return &syncBuffer{} }

// waitFor waits until the output after offset from contains want, and
// returns the offset just past it.
func (b *syncBuffer) waitFor(t *testing.T, from int, want string) int {
	t.Helper()
	return b.WaitFor(t, from, want, waitTimeout)
}
