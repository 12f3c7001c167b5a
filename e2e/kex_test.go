package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const mlkem = ssh.KeyExchangeMLKEM768X25519

// pqOnlyServer is an SSH server that speaks only mlkem768x25519-sha256 and
// answers every exec with "pq ok" and exit status 0. It stands in for an
// instance with a post-quantum-only sshd.
func pqOnlyServer(t *testing.T, authorized ssh.PublicKey) (addr string, hostKey ssh.Signer) {
	hostKey = newKey(t, t.TempDir(), "pq_host").Signer
	cfg := &ssh.ServerConfig{
		Config: ssh.Config{KeyExchanges: []string{mlkem}},
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), authorized.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown key")
		},
	}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for newCh := range chans {
					ch, creqs, err := newCh.Accept()
					if err != nil {
						return
					}
					go func() {
						defer ch.Close()
						for req := range creqs {
							req.Reply(req.Type == "exec", nil)
							if req.Type == "exec" {
								ch.Write([]byte("pq ok\n"))
								ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
								return
							}
						}
					}()
				}
			}()
		}
	}()
	return l.Addr().String(), hostKey
}

// TestPostQuantumKex checks that every leg offers mlkem768x25519-sha256: a
// Go client that offers nothing else gets through the outer and the inner
// handshake, and the bastion gets into an instance that accepts nothing
// else.
func TestPostQuantumKex(t *testing.T) {
	dir := t.TempDir()
	me := currentUser(t)
	person := newKey(t, dir, "person")
	upKey := newKey(t, dir, "upkey")
	pqAddr, pqHost := pqOnlyServer(t, upKey.Signer.PublicKey())
	b := startBastion(t, fmt.Sprintf(`users:
  - {name: carol, keys: [%q], groups: [dev]}
providers:
  static:
    - {name: pq-host, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
`, person.AuthorizedKey(), pqAddr, me, upKey.Private, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pqHost.PublicKey())))))

	pqOnly := ssh.Config{KeyExchanges: []string{mlkem}}
	outer, err := ssh.Dial("tcp", b.Addr, &ssh.ClientConfig{
		Config: pqOnly,
		User:   "carol",
		Auth:   []ssh.AuthMethod{ssh.PublicKeys(person.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if !bytes.Equal(k.Marshal(), b.HostKey.Marshal()) {
				return fmt.Errorf("not the bastion's host key")
			}
			return nil
		},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("outer leg with only %s: %v", mlkem, err)
	}
	defer outer.Close()

	ch, err := outer.Dial("tcp", "pq-host:22")
	if err != nil {
		t.Fatalf("opening direct-tcpip to pq-host: %v", err)
	}
	certs := &ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return bytes.Equal(auth.Marshal(), b.HostCA.Marshal())
	}}
	cc, chans, reqs, err := ssh.NewClientConn(ch, "pq-host:22", &ssh.ClientConfig{
		Config:            pqOnly,
		User:              me,
		HostKeyCallback:   certs.CheckHostKey,
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01},
	})
	if err != nil {
		t.Fatalf("inner leg with only %s (and the host certificate): %v", mlkem, err)
	}
	inner := ssh.NewClient(cc, chans, reqs)
	defer inner.Close()
	s, err := inner.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("hello")
	if err != nil || string(out) != "pq ok\n" {
		t.Fatalf("session on the pq-only upstream: got %q, %v; want pq ok (the upstream leg offers %s)", out, err, mlkem)
	}
	t.Logf("outer, inner and upstream legs all negotiated %s", mlkem)

	// Where the installed OpenSSH knows the exchange, a real sshd that
	// allows nothing else is reached too.
	kex, err := exec.Command("ssh", "-Q", "kex").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kex), mlkem) {
		t.Logf("installed OpenSSH does not know %s; the sshd leg is covered by the Go server above", mlkem)
		return
	}
	up := startSSHD(t, sshdOptions{AuthorizedKeys: []string{upKey.AuthorizedKey()}, Extra: []string{"KexAlgorithms " + mlkem}})
	b2 := startBastion(t, fmt.Sprintf(`users:
  - {name: carol, keys: [%q], groups: [dev]}
providers:
  static:
    - {name: pq-sshd, address: %q, user: %s, private_key: %q, host_key: %q}
policies:
  - {groups: [dev], targets: ["*"], os_users: ["*"]}
`, person.AuthorizedKey(), up.Addr, me, upKey.Private, up.HostKey.AuthorizedKey()))
	c := newClient(t, b2, "carol", person, "  KexAlgorithms "+mlkem)
	r := c.ssh(t, nil, "-J", "bastion", me+"@pq-sshd", "echo sshd-pq")
	if r.Code != 0 || r.Stdout != "sshd-pq\n" {
		t.Fatalf("OpenSSH with only %s through the bastion to an sshd with only it: exit %d %q %s", mlkem, r.Code, r.Stdout, r.Stderr)
	}
}
