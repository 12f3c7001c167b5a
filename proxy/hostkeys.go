package proxy

import (
	"container/list"
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

// Bounds of the host certificate cache. The proxy asks for a certificate
// only for a name that resolved to a target the person may log in to (see
// conn.jump), and names are at most upstream.MaxNameLen bytes, so the cache
// holds what people legitimately reach; these bounds keep even that finite.
const (
	// certCacheEntries and certCacheBytes bound the cache by count and
	// by the size of the certificates it holds (a 253-byte name makes a
	// certificate of under 1 KB).
	certCacheEntries = 1024
	certCacheBytes   = 1 << 20
	// certCacheIdle drops a certificate not presented for this long.
	certCacheIdle = time.Hour
	// certRenewBefore is how close to its expiry a cached certificate is
	// replaced by a new one.
	certRenewBefore = time.Hour
)

// certCache issues and remembers host certificates for target names, all for
// the same inner host key, signed by the host CA. It is a least recently
// used cache bounded by entries and bytes; an entry also goes when it has
// not been used for certCacheIdle or is within certRenewBefore of expiry.
type certCache struct {
	ca  ssh.Signer
	key ssh.Signer
	// now is the clock; tests replace it.
	now func() time.Time

	mu sync.Mutex // protects byName, lru, size and signed
	// byName indexes the elements of lru, whose values are *certEntry,
	// most recently used first.
	byName map[string]*list.Element
	lru    *list.List
	// size is the sum of the entries' sizes.
	size int
	// signed counts the certificates issued, for tests.
	signed int
}

// certEntry is one cached certificate.
type certEntry struct {
	name     string
	signer   ssh.Signer
	expires  time.Time
	lastUsed time.Time
	// size is the certificate's wire size plus its name: what the entry
	// holds on to.
	size int
}

func newCertCache(ca, key ssh.Signer) *certCache {
	return &certCache{ca: ca, key: key, now: time.Now, byName: map[string]*list.Element{}, lru: list.New()}
}

// signer returns a certificate signer for name, issuing one if the cached
// one is missing or within certRenewBefore of expiry.
func (c *certCache) signer(name string) (ssh.Signer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if el, ok := c.byName[name]; ok {
		e := el.Value.(*certEntry)
		if e.expires.Sub(now) > certRenewBefore {
			e.lastUsed = now
			c.lru.MoveToFront(el)
			return e.signer, nil
		}
		c.remove(el)
	}
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
		return nil, fmt.Errorf("making host certificate signer for %s: %w", name, err)
	}
	c.signed++
	e := &certEntry{name: name, signer: s, expires: now.Add(hostCertLifetime), lastUsed: now,
		size: len(cert.Marshal()) + len(name)}
	c.byName[name] = c.lru.PushFront(e)
	c.size += e.size
	c.evict(now)
	return s, nil
}

// evict drops, from the least recently used end, the entries unused for
// certCacheIdle, and then as many as the count and byte bounds require.
// The caller holds c.mu.
func (c *certCache) evict(now time.Time) {
	for el := c.lru.Back(); el != nil; el = c.lru.Back() {
		e := el.Value.(*certEntry)
		over := c.lru.Len() > certCacheEntries || c.size > certCacheBytes
		if !over && now.Sub(e.lastUsed) < certCacheIdle {
			return
		}
		c.remove(el)
	}
}

// remove drops el. The caller holds c.mu.
func (c *certCache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*certEntry)
	delete(c.byName, e.name)
	c.size -= e.size
}

// stats returns the number of cached certificates, their size in bytes and
// the number of certificates issued so far.
func (c *certCache) stats() (entries, bytes, signed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.size, c.signed
}
