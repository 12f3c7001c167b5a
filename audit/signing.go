package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"bastion/internal/secfile"
)

// LoadSigningKey returns the ed25519 key of audit.signing_key, an OpenSSH
// private key file. With create set, a missing file is made: a new key,
// mode 0600, its folder created. A key file others may read is refused, as
// for the host keys.
func LoadSigningKey(path string, create bool) (ed25519.PrivateKey, error) {
	data, err := secfile.ReadPrivateKey(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createSigningKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading audit signing key: %w", err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parsing audit signing key %s: %w", path, err)
	}
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ed25519.PrivateKey:
		return *k, nil
	}
	return nil, fmt.Errorf("audit signing key %s: is a %T, not an ed25519 key", path, raw)
}

func createSigningKey(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating audit signing key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "bastion audit signing key")
	if err != nil {
		return nil, fmt.Errorf("encoding audit signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating audit signing key folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating audit signing key: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("writing audit signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("writing audit signing key: %w", err)
	}
	return priv, nil
}

// PublicKeyText is pub in authorized_keys form, without a newline, as
// audit_checkpoint's signing_key and `bastion audit pubkey` write it.
func PublicKeyText(pub ed25519.PublicKey) string {
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// ParsePublicKey parses an ed25519 public key in authorized_keys form.
func ParsePublicKey(text string) (ed25519.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	ck, ok := k.(ssh.CryptoPublicKey)
	if !ok {
		return nil, errors.New("parsing public key: not a plain key")
	}
	pub, ok := ck.CryptoPublicKey().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("parsing public key: %s is not ed25519", k.Type())
	}
	return pub, nil
}

// Fingerprint is the SHA256 fingerprint of pub, as ssh-keygen -l prints it.
func Fingerprint(pub ed25519.PublicKey) string {
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}
