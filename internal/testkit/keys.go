package testkit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Key is an ed25519 key written to disk in OpenSSH format.
type Key struct {
	Private string // path of the private key (mode 0600)
	Public  string // path of the .pub file
	Signer  ssh.Signer
}

// AuthorizedKey returns the public key in authorized_keys format, without
// a newline.
func (k Key) AuthorizedKey() string { return AuthorizedKey(k.Signer.PublicKey()) }

// AuthorizedKey returns k in authorized_keys format, without a newline.
func AuthorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// GenerateSigner returns a fresh in-memory ed25519 signer.
func GenerateSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating an ed25519 key: %w", err)
	}
	return ssh.NewSignerFromKey(priv)
}

// NewSigner is GenerateSigner that fails the test on error.
func NewSigner(t testing.TB) ssh.Signer {
	t.Helper()
	s, err := GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// WriteKey creates an ed25519 key and writes it to dir/name (mode 0600)
// and dir/name.pub, commented name.
func WriteKey(dir, name string) (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generating an ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		return Key{}, fmt.Errorf("marshalling %s: %w", name, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return Key{}, err
	}
	k := Key{Private: filepath.Join(dir, name), Public: filepath.Join(dir, name+".pub"), Signer: signer}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Key{}, err
	}
	if err := os.WriteFile(k.Private, pem.EncodeToMemory(block), 0o600); err != nil {
		return Key{}, err
	}
	if err := os.WriteFile(k.Public, []byte(k.AuthorizedKey()+" "+name+"\n"), 0o644); err != nil {
		return Key{}, err
	}
	return k, nil
}

// NewKey is WriteKey that fails the test on error.
func NewKey(t testing.TB, dir, name string) Key {
	t.Helper()
	k, err := WriteKey(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// PublicKeyOf reads an OpenSSH private key file and returns its public key.
func PublicKeyOf(privPath string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(privPath)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", privPath, err)
	}
	return s.PublicKey(), nil
}
