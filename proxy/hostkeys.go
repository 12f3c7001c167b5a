package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/secfile"
)

// LoadOrCreateKey reads an OpenSSH private key from path, or, if the file
// does not exist, creates a new ed25519 key there (mode 0600, folder 0700).
// created reports whether it did. A key file others could read or change
// is refused (*secfile.ModeError), and so is a symlink to a missing file
// (*secfile.DanglingSymlinkError): the key is not created behind it.
func LoadOrCreateKey(path string) (signer ssh.Signer, created bool, err error) {
	signer, err = loadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	return signer, false, err
}

// loadKey reads and parses the private key at path.
func loadKey(path string) (ssh.Signer, error) {
	data, err := secfile.ReadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	clear(data)
	if err != nil {
		return nil, fmt.Errorf("parsing key %s: %w", path, err)
	}
	return signer, nil
}

func createKey(path string) (ssh.Signer, bool, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generating key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "bastion")
	if err != nil {
		return nil, false, fmt.Errorf("encoding key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("creating key folder: %w", err)
	}
	// O_EXCL: two replicas starting on one volume must not overwrite each
	// other's key; the loser reads the winner's, once. (O_EXCL also fails
	// on a symlink, dangling or not, which loadKey has ruled out; a path
	// that exists yet cannot be opened is an error, not a retry.)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		s, err := loadKey(path)
		if err != nil {
			return nil, false, fmt.Errorf("reading the key another process created: %w", err)
		}
		return s, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("creating key: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("writing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("writing key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, err
	}
	return signer, true, nil
}

// hostCertLifetime is how long a per-target host certificate is valid. The
// certificate is presented at the handshake only, so a short life costs
// nothing and limits what a leaked one is worth.
const hostCertLifetime = 24 * time.Hour

// certCache issues and remembers host certificates for target names, all for
// the same inner host key, signed by the host CA.
type certCache struct {
	ca  ssh.Signer
	key ssh.Signer

	mu    sync.Mutex // protects certs
	certs map[string]ssh.Signer
}

func newCertCache(ca, key ssh.Signer) *certCache {
	return &certCache{ca: ca, key: key, certs: map[string]ssh.Signer{}}
}

// signer returns a certificate signer for name, issuing one if the cached
// one is missing or within an hour of expiry.
func (c *certCache) signer(name string) (ssh.Signer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.certs[name]; ok {
		cert := s.PublicKey().(*ssh.Certificate)
		if time.Until(time.Unix(int64(cert.ValidBefore), 0)) > time.Hour {
			return s, nil
		}
	}
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             c.key.PublicKey(),
		CertType:        ssh.HostCert,
		KeyId:           "bastion:" + name,
		ValidPrincipals: []string{name},
		ValidAfter:      uint64(now.Add(-5 * time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(hostCertLifetime).Unix()),
	}
	if err := cert.SignCert(rand.Reader, c.ca); err != nil {
		return nil, fmt.Errorf("signing host certificate for %s: %w", name, err)
	}
	s, err := ssh.NewCertSigner(cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("host certificate signer for %s: %w", name, err)
	}
	if len(c.certs) > 10000 {
		// Names come from people; bound the map.
		clear(c.certs)
	}
	c.certs[name] = s
	return s, nil
}
