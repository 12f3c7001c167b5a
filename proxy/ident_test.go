package proxy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// scriptedConn is a net.Conn whose reads come from in, one chunk per Read
// at most, and end with err; writes go to out. It counts the bytes read.
type scriptedConn struct {
	net.Conn // nil: only Read and Write are used
	in       []byte
	chunk    int
	err      error
	out      bytes.Buffer
	read     int
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, c.err
	}
	n := min(len(p), len(c.in), c.chunk)
	copy(p, c.in[:n])
	c.in = c.in[n:]
	c.read += n
	return n, nil
}

func (c *scriptedConn) Write(p []byte) (int, error) { return c.out.Write(p) }

func TestExchangeIdent(t *testing.T) {
	kexinit := "\x00\x00\x01\x2c\x0a\x14rest-of-kexinit"
	huge := strings.Repeat("A", 10000)
	for _, tc := range []struct {
		name, in     string
		chunk        int
		wantSoftware string
		// wantRead is the most the exchange may read from the client.
		wantRead int
	}{
		{name: "openssh", in: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n" + kexinit, chunk: 1000, wantSoftware: "OpenSSH_9.2p1", wantRead: maxIdentBytes},
		{name: "byte at a time", in: "SSH-2.0-paramiko_2.12.0\r\n" + kexinit, chunk: 1, wantSoftware: "paramiko_2.12.0", wantRead: len("SSH-2.0-paramiko_2.12.0\r\n")},
		{name: "lf only", in: "SSH-2.0-PuTTY_Release_0.78\n", chunk: 7, wantSoftware: "PuTTY_Release_0.78", wantRead: maxIdentBytes},
		{name: "lines before", in: "hello\r\nSSH-2.0-Go\r\n", chunk: 1000, wantSoftware: "Go", wantRead: maxIdentBytes},
		{name: "huge", in: huge, chunk: 1000, wantRead: maxIdentBytes},
		{name: "huge line then version", in: huge + "\nSSH-2.0-Go\r\n", chunk: 1000, wantRead: maxIdentBytes},
		{name: "garbage", in: "\x00\x01\x02\xff\r\n\x00", chunk: 1000, wantRead: maxIdentBytes},
		{name: "nothing", in: "", chunk: 1000, wantRead: 0},
		{name: "cut short", in: "SSH-2.0-Open", chunk: 1000, wantRead: maxIdentBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &scriptedConn{in: []byte(tc.in), chunk: tc.chunk, err: io.EOF}
			c, software := exchangeIdent(sc, "SSH-2.0-bastion")
			if software != tc.wantSoftware {
				t.Errorf("software: got %q, want %q", software, tc.wantSoftware)
			}
			if sc.read > tc.wantRead {
				t.Errorf("read %d bytes, want at most %d", sc.read, tc.wantRead)
			}
			if got := sc.out.String(); got != "SSH-2.0-bastion\r\n" {
				t.Errorf("sent %q, want the server's identification line", got)
			}
			// x/crypto's own write of the line is dropped; what follows it
			// and later writes go through.
			c.Write([]byte("SSH-2.0-bastion\r\nKEX"))
			c.Write([]byte("SSH-2.0-bastion\r\n"))
			if got, want := sc.out.String(), "SSH-2.0-bastion\r\nKEXSSH-2.0-bastion\r\n"; got != want {
				t.Errorf("after writes: sent %q, want %q", got, want)
			}
			// Reads give back everything the client sent, in order.
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.in {
				t.Errorf("replayed %q, want %q", got, tc.in)
			}
		})
	}
}

// TestExchangeIdentSilentClient checks that a client that sends nothing
// holds the exchange only until the conn's deadline.
func TestExchangeIdentSilentClient(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	defer server.Close()
	go io.Copy(io.Discard, client)
	server.SetDeadline(time.Now().Add(200 * time.Millisecond))
	done := make(chan string, 1)
	go func() {
		c, software := exchangeIdent(server, "SSH-2.0-bastion")
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read after the exchange: got %v, want the deadline", err)
		}
		done <- software
	}()
	select {
	case s := <-done:
		if s != "" {
			t.Errorf("software: got %q, want none", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("exchangeIdent outlived the conn's deadline")
	}
}

func TestIsOpenSSHWithGCM(t *testing.T) {
	for _, tc := range []struct {
		software string
		want     bool
	}{
		{"OpenSSH_9.2p1", true},
		{"OpenSSH_6.2", true},
		{"OpenSSH_6.1p1", false},
		{"OpenSSH_5.3", false},
		{"OpenSSH_10.0", true},
		{"OpenSSH_for_Windows_8.1", true},
		{"OpenSSH_", false},
		{"PuTTY_Release_0.78", false},
		{"paramiko_2.12.0", false},
		{"libssh2_1.10.0", false},
		{"Go", false},
		{"", false},
	} {
		if got := isOpenSSHWithGCM(tc.software); got != tc.want {
			t.Errorf("isOpenSSHWithGCM(%q): got %v, want %v", tc.software, got, tc.want)
		}
	}
}

// tcpPair returns the two ends of a loopback TCP connection. (net.Pipe
// does not do: both sides of an SSH identification exchange may write
// before they read, which needs a buffer.)
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// TestServerHandshakeCiphers runs x/crypto clients against serverHandshake
// over loopback TCP: a client calling itself OpenSSH negotiates AES-GCM; one
// with only AES-CTR (paramiko before 3.5, libssh2 before 1.11) gets in when
// it calls itself anything else; configured ciphers are offered to all.
func TestServerHandshakeCiphers(t *testing.T) {
	if !hasAESGCM {
		t.Skip("no AES-GCM in hardware: x/crypto's defaults are offered to everyone")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(priv)
	for _, tc := range []struct {
		name, version string
		configured    []string
		clientCiphers []string
		wantOK        bool
	}{
		{name: "openssh gets gcm", version: "SSH-2.0-OpenSSH_9.2p1", clientCiphers: []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES128GCM}, wantOK: true},
		{name: "openssh ctr only refused", version: "SSH-2.0-OpenSSH_9.2p1", clientCiphers: []string{ssh.CipherAES128CTR}},
		{name: "paramiko ctr", version: "SSH-2.0-paramiko_2.12.0", clientCiphers: []string{ssh.CipherAES128CTR}, wantOK: true},
		{name: "libssh2 ctr", version: "SSH-2.0-libssh2_1.10.0", clientCiphers: []string{ssh.CipherAES256CTR}, wantOK: true},
		{name: "old openssh ctr", version: "SSH-2.0-OpenSSH_6.0", clientCiphers: []string{ssh.CipherAES128CTR}, wantOK: true},
		{name: "configured wins", version: "SSH-2.0-paramiko_2.12.0", configured: []string{ssh.CipherAES128GCM}, clientCiphers: []string{ssh.CipherAES128CTR}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &Server{Ciphers: tc.configured}
			sconn, cconn := tcpPair(t)
			defer sconn.Close()
			defer cconn.Close()
			cfg := &ssh.ServerConfig{Config: sshConfig(srv.Ciphers), NoClientAuth: true, ServerVersion: "SSH-2.0-bastion"}
			cfg.AddHostKey(hostKey)
			errc := make(chan error, 1)
			go func() {
				sc, chans, reqs, err := srv.serverHandshake(sconn, cfg)
				if err == nil {
					go ssh.DiscardRequests(reqs)
					go func() {
						for range chans {
						}
					}()
					defer sc.Close()
				}
				errc <- err
			}()
			cc, chans, reqs, err := ssh.NewClientConn(cconn, "x", &ssh.ClientConfig{
				Config:          ssh.Config{Ciphers: tc.clientCiphers},
				User:            "u",
				ClientVersion:   tc.version,
				HostKeyCallback: ssh.InsecureIgnoreHostKey(),
			})
			if err == nil {
				go ssh.DiscardRequests(reqs)
				go func() {
					for range chans {
					}
				}()
				cc.Close()
			} else {
				cconn.Close()
			}
			serr := <-errc
			if tc.wantOK != (err == nil) {
				t.Fatalf("client handshake: got %v, want ok %v (server: %v)", err, tc.wantOK, serr)
			}
			want := tc.configured
			if want == nil {
				want = DefaultServerCiphers(strings.TrimPrefix(tc.version, "SSH-2.0-"))
			}
			if !slices.Equal(cfg.Ciphers, want) {
				t.Errorf("offer: got %v, want %v", cfg.Ciphers, want)
			}
		})
	}
}
