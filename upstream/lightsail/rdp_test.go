package lightsail_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"bastion/internal/awsfake"
	"bastion/upstream"
	"bastion/upstream/lightsail"
)

// selfSigned returns a self-signed certificate (DER) valid until notAfter,
// as an RDP server makes one.
func selfSigned(t *testing.T, notAfter time.Time) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "EC2AMAZ-WIN"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestRDPAccess gets Remote Desktop access through the real SDK client
// from the fake: a plain password (default key pair), one decrypted with a
// configured key pair, one whose key pair is not configured, one not ready
// yet, and a Linux instance, which Lightsail refuses.
func TestRDPAccess(t *testing.T) {
	e := newEnv(t)
	der := selfSigned(t, time.Now().Add(24*time.Hour))
	sum := sha256.Sum256(der)
	kp, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "custom.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(kp)}), 0o600); err != nil {
		t.Fatal(err)
	}
	ct, err := awsfake.EncryptWindowsPassword(&kp.PublicKey, "dec-rypted!")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name string
		win  awsfake.LightsailWindows
	}{
		{"win-plain", awsfake.LightsailWindows{Certificates: [][]byte{der}, Password: "pl4in"}},
		{"win-custom", awsfake.LightsailWindows{Certificates: [][]byte{der}, KeyPairName: "custom", PasswordCiphertext: ct}},
		{"win-other", awsfake.LightsailWindows{Certificates: [][]byte{der}, KeyPairName: "other", PasswordCiphertext: ct}},
		{"win-new", awsfake.LightsailWindows{Certificates: [][]byte{der}}},
	} {
		win := w.win
		e.fake.AddLightsailInstance(awsfake.LightsailInstance{Name: w.name, Region: "us-east-1", PublicIP: "203.0.113.9", Windows: &win})
	}
	p := e.provider(t, lightsail.Config{RDPPort: 3390, RDPKeyPairs: map[string]string{"custom": keyFile}})

	tests := []struct {
		name, instance    string
		password, keyPair string
		pending           bool
		wantErr           string
	}{
		{name: "default key pair", instance: "win-plain", password: "pl4in"},
		{name: "custom key pair configured", instance: "win-custom", password: "dec-rypted!", keyPair: "custom"},
		{name: "custom key pair missing", instance: "win-other", keyPair: "other"},
		{name: "not ready", instance: "win-new", pending: true},
		{name: "linux", instance: "web-1", wantErr: "not a Windows instance"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a, err := p.RDP(ctx, upstream.Target{Provider: upstream.ProviderLightsail, Name: tc.instance, ID: tc.instance, Region: "us-east-1"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(upstream.PublicMessage(err), tc.wantErr) {
					t.Fatalf("got %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Username != "Administrator" || a.Password != tc.password || a.PasswordPending != tc.pending {
				t.Errorf("got user %q password %q pending %v, want Administrator %q %v", a.Username, a.Password, a.PasswordPending, tc.password, tc.pending)
			}
			if tc.keyPair != "" && a.KeyPairName != tc.keyPair {
				t.Errorf("got key pair %q, want %q", a.KeyPairName, tc.keyPair)
			}
			if a.Addr != "203.0.113.9:3390" {
				t.Errorf("got addr %s, want 203.0.113.9:3390", a.Addr)
			}
			if len(a.Certificates) != 1 || a.Certificates[0].SHA256 != sum {
				t.Fatalf("got certificates %+v, want the one with SHA-256 %x", a.Certificates, sum)
			}
			if _, err := a.VerifyRDPCertificate(der, time.Now()); err != nil {
				t.Errorf("verifying the reported certificate: %v", err)
			}
			if _, err := a.VerifyRDPCertificate(selfSigned(t, time.Now().Add(time.Hour)), time.Now()); err == nil {
				t.Error("another certificate verified")
			}
			if _, err := a.VerifyRDPCertificate(der, time.Now().Add(48*time.Hour)); err == nil {
				t.Error("the certificate verified after its notValidAfter")
			}
		})
	}
}
