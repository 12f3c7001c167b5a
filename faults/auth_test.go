package faults

import (
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// loginDelayLimit is how long a login of a configured person may take on a
// loaded machine under -race before it counts as throttled.
const loginDelayLimit = 1500 * time.Millisecond

// TestOfferedKeysAreNotFailures logs a configured person in eight times in a
// row with a client that, like ssh with an agent holding several keys,
// offers three other keys before the right one. Each login succeeds; none
// may be slowed down by the failed-authentication throttle, which is there
// for addresses that fail to log in, not for people who do (many people may
// share one address behind a NAT).
//
// It fails today: proxy counts every key offered and not accepted (a
// publickey query, without a signature) as one failed authentication of
// the address, and never forgives a success, so with the default
// limits.failed_auth_per_minute (10) the 5th login waits half a second,
// the 6th 4s, the 7th 30s.
func TestOfferedKeysAreNotFailures(t *testing.T) {
	e := newEnv(t)
	s := e.startSim()
	b := e.startBastion(bastionOptions{statics: []staticTarget{{"sim", s.inst.Addr(), s.inst.HostKey()}}})
	var keys []ssh.Signer
	for _, name := range []string{"work", "github", "old"} {
		keys = append(keys, newKey(t, e.dir, name).Signer)
	}
	keys = append(keys, e.person.Signer)
	base := takeBaseline(t)

	for i := range 8 {
		start := time.Now()
		nc, err := net.DialTimeout("tcp", b.addr, endTimeout)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(endTimeout))
		c, chans, reqs, err := ssh.NewClientConn(nc, b.addr, &ssh.ClientConfig{
			User:            "alice",
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(keys...)},
			HostKeyCallback: ssh.FixedHostKey(b.hostKey),
		})
		elapsed := time.Since(start)
		if err != nil {
			nc.Close()
			t.Fatalf("login %d: %v", i+1, err)
		}
		ssh.NewClient(c, chans, reqs).Close()
		if elapsed > loginDelayLimit {
			t.Fatalf("login %d of a configured person took %s, want under %s: successful logins must not be throttled",
				i+1, elapsed.Round(time.Millisecond), loginDelayLimit)
		}
	}
	base.back(t, b.srv)
}
