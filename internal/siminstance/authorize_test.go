package siminstance

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestTrustCA(t *testing.T) {
	ca := newSigner(t)
	otherCA := newSigner(t)
	inst := startInstance(t, TrustCA(ca.PublicKey()))

	tests := []struct {
		name    string
		user    string
		signer  ssh.Signer
		wantErr bool
	}{
		{"cert for the principal", "ec2-user", newCertSigner(t, ca, certOptions{principals: []string{"alice", "ec2-user"}}), false},
		{"wrong principal", "root", newCertSigner(t, ca, certOptions{principals: []string{"ec2-user"}}), true},
		{"no principals", "ec2-user", newCertSigner(t, ca, certOptions{}), true},
		{"plain key", "ec2-user", newSigner(t), true},
		{"other CA", "ec2-user", newCertSigner(t, otherCA, certOptions{principals: []string{"ec2-user"}}), true},
		{"expired", "ec2-user", newCertSigner(t, ca, certOptions{principals: []string{"ec2-user"}, validFor: -time.Minute}), true},
		{"host certificate", "ec2-user", newCertSigner(t, ca, certOptions{principals: []string{"ec2-user"}, certType: ssh.HostCert}), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, err := dial(inst, tc.user, tc.signer)
			if err == nil {
				client.Close()
			}
			if got := err != nil; got != tc.wantErr {
				t.Errorf("login as %s: got error %v, want error: %v", tc.user, err, tc.wantErr)
			}
		})
	}
}

func TestTrustCAErrors(t *testing.T) {
	ca := newSigner(t)
	authorize := TrustCA(ca.PublicKey())
	plain := newSigner(t)
	if got := authorize("ec2-user", plain.PublicKey()); !errors.Is(got, ErrNotCertificate) {
		t.Errorf("plain key: got %v, want %v", got, ErrNotCertificate)
	}
	cert := newCertSigner(t, ca, certOptions{principals: []string{"ec2-user"}})
	if got := authorize("ec2-user", cert.PublicKey()); got != nil {
		t.Errorf("valid certificate: got %v, want nil", got)
	}
}

// keyList is a mutable user → keys list, like the keys EC2 Instance Connect
// holds for 60 seconds after SendSSHPublicKey.
type keyList struct {
	mu   sync.Mutex
	keys map[string][]ssh.PublicKey
}

func (l *keyList) set(user string, keys ...ssh.PublicKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys[user] = keys
}

func (l *keyList) list(user string) []ssh.PublicKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[user]
}

func TestAcceptKeys(t *testing.T) {
	listed := newSigner(t)
	other := newSigner(t)
	keys := &keyList{keys: map[string][]ssh.PublicKey{}}
	inst := startInstance(t, AcceptKeys(keys.list))

	// Steps run in order: each may change the list, then tries a login.
	steps := []struct {
		name    string
		change  func()
		user    string
		signer  ssh.Signer
		wantErr bool
	}{
		{"nothing listed", nil, "ec2-user", listed, true},
		{"listed key", func() { keys.set("ec2-user", other.PublicKey(), listed.PublicKey()) }, "ec2-user", listed, false},
		{"listed for another user", nil, "root", listed, true},
		{"unlisted key", func() { keys.set("ec2-user", listed.PublicKey()) }, "ec2-user", other, true},
		{"removed key", func() { keys.set("ec2-user") }, "ec2-user", listed, true},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if step.change != nil {
				step.change()
			}
			client, err := dial(inst, step.user, step.signer)
			if err == nil {
				client.Close()
			}
			if got := err != nil; got != step.wantErr {
				t.Errorf("login as %s: got error %v, want error: %v", step.user, err, step.wantErr)
			}
		})
	}
}

func TestAcceptKeysErrors(t *testing.T) {
	key := newSigner(t)
	ca := newSigner(t)
	cert := newCertSigner(t, ca, certOptions{principals: []string{"ec2-user"}})
	authorize := AcceptKeys(func(string) []ssh.PublicKey { return []ssh.PublicKey{nil, key.PublicKey()} })

	tests := []struct {
		name string
		key  ssh.PublicKey
		want error
	}{
		{"listed", key.PublicKey(), nil},
		{"certificate of an unlisted key", cert.PublicKey(), ErrKeyNotListed},
		{"unlisted", newSigner(t).PublicKey(), ErrKeyNotListed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := authorize("ec2-user", tc.key); !errors.Is(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
