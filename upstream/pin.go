package upstream

import (
	"bytes"
	"net"

	"golang.org/x/crypto/ssh"
)

// PinnedHostKeys returns a host key callback that accepts only the given keys
// (compared byte for byte). Any other key is refused with an *Error whose
// public sentence names source, wrapping a *HostKeyMismatchError.
func PinnedHostKeys(target, source string, keys ...ssh.PublicKey) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, got ssh.PublicKey) error {
		for _, k := range keys {
			if bytes.Equal(k.Marshal(), got.Marshal()) {
				return nil
			}
		}
		return &Error{
			Public: "upstream host key does not match " + source + "; refusing to connect",
			Err:    &HostKeyMismatchError{Target: target, Got: got, Want: keys},
		}
	}
}

// HostKeyAlgorithms returns the host key algorithms to offer so that a server
// presents one of keys: their types, with the SHA-2 signature variants for
// RSA keys (OpenSSH ≥ 8.8 refuses ssh-rsa SHA-1 signatures).
func HostKeyAlgorithms(keys ...ssh.PublicKey) []string {
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, k := range keys {
		if k.Type() == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
		}
		add(k.Type())
	}
	return algos
}
