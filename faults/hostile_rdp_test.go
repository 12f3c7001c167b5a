package faults

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/internal/awsfake"
)

// rdpPolicy lets alice reach every target as any OS user and use rdp.
const rdpPolicy = `[{groups: [dev], targets: ["*"], os_users: ["*"], allow: [rdp]}]`

// hostileRDP is an RDP port that misbehaves as its handler says, on port
// 3389 (the default rdp_port) of a loopback address of its own.
type hostileRDP struct {
	l     net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func startHostileRDP(t *testing.T, handle func(net.Conn)) *hostileRDP {
	t.Helper()
	var l net.Listener
	var err error
	for range 20 {
		ip := fmt.Sprintf("127.%d.%d.%d", 1+mrand.IntN(254), mrand.IntN(256), 1+mrand.IntN(254))
		if l, err = net.Listen("tcp", net.JoinHostPort(ip, "3389")); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("listening on port 3389 of a loopback address: %v", err)
	}
	h := &hostileRDP{l: l}
	h.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			h.wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(endTimeout))
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		h.wg.Wait()
	})
	return h
}

func (h *hostileRDP) ip() string {
	host, _, _ := net.SplitHostPort(h.l.Addr().String())
	return host
}

// readRequest reads the bastion's X.224 Connection Request.
func readRequest(c net.Conn) error {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint16(hdr[2:4]))-4)
	return err
}

// confirm returns a Connection Confirm whose negotiation message is of
// type typ with value v (selected protocol or failure code).
func confirm(typ byte, v uint32) []byte {
	b := []byte{3, 0, 0, 19, 14, 0xD0, 0, 0, 0, 0, 0, typ, 0, 8, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[15:], v)
	return b
}

func rdpCertificate(t *testing.T, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "EC2AMAZ-HOSTILE"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestHostileRDPServer points an RDP forward at RDP ports that misbehave,
// and at instances whose reported certificate cannot be trusted: each
// forward is refused with a one-line reason, within the handshake timeout,
// audited as rdp_certificate_refused, and the bastion is back to its
// baseline after. An instance whose reported certificates have all expired
// or that has none reported is not dialled at all.
func TestHostileRDPServer(t *testing.T) {
	good := rdpCertificate(t, time.Now().Add(24*time.Hour))
	expired := rdpCertificate(t, time.Now().Add(-time.Hour))
	other := rdpCertificate(t, time.Now().Add(time.Hour))
	serveTLS := func(cert tls.Certificate) func(net.Conn) {
		return func(c net.Conn) {
			if readRequest(c) != nil {
				return
			}
			c.Write(confirm(0x02, 1))
			tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
		}
	}
	tests := []struct {
		name     string
		handle   func(net.Conn)
		reported [][]byte
		want     string
		noDial   bool
	}{
		{name: "silent", want: "the RDP security negotiation with the instance failed",
			handle: func(c net.Conn) { io.Copy(io.Discard, c) }},
		{name: "endless confirm", want: "the RDP security negotiation with the instance failed",
			handle: func(c net.Conn) {
				readRequest(c)
				c.Write([]byte{3, 0, 0xFF, 0xFF})
				junk := make([]byte, 32<<10)
				for {
					if _, err := c.Write(junk); err != nil {
						return
					}
				}
			}},
		{name: "standard RDP security", want: "did not negotiate TLS",
			handle: func(c net.Conn) { readRequest(c); c.Write(confirm(0x02, 0)); io.Copy(io.Discard, c) }},
		{name: "negotiation failure", want: "did not negotiate TLS",
			handle: func(c net.Conn) { readRequest(c); c.Write(confirm(0x03, 5)); io.Copy(io.Discard, c) }},
		{name: "garbage instead of TLS", want: "the RDP security negotiation with the instance failed",
			handle: func(c net.Conn) {
				readRequest(c)
				c.Write(confirm(0x02, 1))
				c.Write([]byte(strings.Repeat("\x16\x03\x03\xff\xff", 200)))
				io.Copy(io.Discard, c)
			}},
		{name: "expired certificate", handle: serveTLS(expired), reported: [][]byte{expired.Certificate[0]},
			want: "the RDP certificate Lightsail reported has expired", noDial: true},
		{name: "no certificate reported", handle: serveTLS(good), reported: [][]byte{},
			want: "Lightsail reported no RDP certificate for this instance", noDial: true},
		{name: "another certificate", handle: serveTLS(good), reported: [][]byte{other.Certificate[0]},
			want: "is not the one Lightsail reported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			f := e.startAWS()
			h := startHostileRDP(t, tc.handle)
			reported := tc.reported
			if reported == nil {
				reported = [][]byte{good.Certificate[0]}
			}
			f.fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "win-h", Region: region, PublicIP: h.ip(), PrivateIP: h.ip(),
				Windows: &awsfake.LightsailWindows{Certificates: reported, Password: "pw"}})
			b := e.startBastion(bastionOptions{aws: f, policies: rdpPolicy})
			base := takeBaseline(t)

			l, err := b.dial("alice")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var openErr error
			within(t, "the forward's refusal", 2*handshakeTimeout+dialTimeout+2*awsTimeout+5*time.Second, func() {
				var ch ssh.Channel
				ch, _, openErr = l.outer.OpenChannel("direct-tcpip", ssh.Marshal(struct {
					Host     string
					Port     uint32
					OrigHost string
					OrigPort uint32
				}{"win-h", 3389, "127.0.0.1", 50000}))
				if ch != nil {
					ch.Close()
				}
			})
			var oce *ssh.OpenChannelError
			if !errors.As(openErr, &oce) || !strings.Contains(oce.Message, tc.want) || strings.ContainsAny(oce.Message, "\r\n") {
				t.Fatalf("after %s: got %v, want the channel refused with one line saying %q", time.Since(start), openErr, tc.want)
			}
			if !strings.Contains(b.audit.String(), `"type":"rdp_certificate_refused"`) {
				t.Errorf("no rdp_certificate_refused event in\n%s", b.audit.String())
			}
			if tc.noDial && h.conns.Load() != 0 {
				t.Errorf("the bastion dialled the instance %d times, want none", h.conns.Load())
			}
			l.close()
			base.back(t, b.srv)
		})
	}
}

// TestHostileRDPSwitchAfterProbe: the instance's address presents the
// reported certificate to the bastion's probe and another one to the
// connection spliced for the person. Under TLS 1.2 the bastion sees the
// certificate on the spliced connection and ends it before the message
// reaches the person, audited; under TLS 1.3 it cannot see it, and the
// person's client is the one that sees a fingerprint other than the one
// `ssh bastion rdp` prints (which is why the person pins it).
func TestHostileRDPSwitchAfterProbe(t *testing.T) {
	good, other := rdpCertificate(t, time.Now().Add(24*time.Hour)), rdpCertificate(t, time.Now().Add(24*time.Hour))
	for _, tc := range []struct {
		name     string
		version  uint16
		switched bool
	}{
		{"tls 1.2", tls.VersionTLS12, true},
		{"tls 1.3", tls.VersionTLS13, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			f := e.startAWS()
			var n atomic.Int64
			h := startHostileRDP(t, func(c net.Conn) {
				if readRequest(c) != nil {
					return
				}
				c.Write(confirm(0x02, 1))
				cert := good
				if n.Add(1) > 1 {
					cert = other
				}
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				if tc.Handshake() == nil {
					io.Copy(io.Discard, tc)
				}
			})
			f.fake.AddLightsailInstance(awsfake.LightsailInstance{Name: "win-h", Region: region, PublicIP: h.ip(), PrivateIP: h.ip(),
				Windows: &awsfake.LightsailWindows{Certificates: [][]byte{good.Certificate[0]}, Password: "pw"}})
			b := e.startBastion(bastionOptions{aws: f, policies: rdpPolicy})
			base := takeBaseline(t)

			l, err := b.dial("alice")
			if err != nil {
				t.Fatal(err)
			}
			ch, reqs, err := l.outer.OpenChannel("direct-tcpip", ssh.Marshal(struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}{"win-h", 3389, "127.0.0.1", 50000}))
			if err != nil {
				t.Fatalf("the forward was refused (%v); want it opened after the probe saw the reported certificate", err)
			}
			go ssh.DiscardRequests(reqs)
			var seen []byte
			var herr error
			within(t, "the person's RDP handshake", endTimeout, func() {
				if _, err := ch.Write([]byte{3, 0, 0, 19, 14, 0xE0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 1, 0, 0, 0}); err != nil {
					herr = err
					return
				}
				cc := make([]byte, 19)
				if _, herr = io.ReadFull(ch, cc); herr != nil {
					return
				}
				pc := tls.Client(chanConn{ch}, &tls.Config{InsecureSkipVerify: true, MaxVersion: tc.version,
					VerifyConnection: func(cs tls.ConnectionState) error { seen = cs.PeerCertificates[0].Raw; return nil }})
				herr = pc.Handshake()
			})
			ch.Close()
			if tc.switched {
				if herr == nil || seen != nil {
					t.Errorf("the person's TLS 1.2 handshake: got %v and %d certificate bytes, want it ended before the certificate", herr, len(seen))
				}
				waitFor(t, "the switch audited", settleTimeout, func() bool {
					return strings.Contains(b.audit.String(), "the spliced connection failed the certificate check")
				})
			} else {
				if herr != nil || string(seen) != string(other.Certificate[0]) {
					t.Errorf("the person's TLS 1.3 handshake: got %v, want it to complete with the other certificate for the client to refuse", herr)
				}
			}
			l.close()
			base.back(t, b.srv)
		})
	}
}

// chanConn is an SSH channel as a net.Conn, for tls.Client.
type chanConn struct{ ssh.Channel }

func (chanConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (chanConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (chanConn) SetDeadline(time.Time) error      { return nil }
func (chanConn) SetReadDeadline(time.Time) error  { return nil }
func (chanConn) SetWriteDeadline(time.Time) error { return nil }
