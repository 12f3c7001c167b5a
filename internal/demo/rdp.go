package demo

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"bastion/internal/awsfake"
)

// WindowsName is the demo's Windows Lightsail instance. It has no desktop:
// its RDP endpoint is a stand-in (rdpStandIn) that completes the RDP
// security negotiation and the TLS handshake with the certificate the
// fake reports for it, and then closes, so that `ssh bastion rdp` and the
// bastion's certificate check can be tried.
const WindowsName = "win-1"

// standInTimeout bounds one connection to the stand-in.
const standInTimeout = 30 * time.Second

// rdpStandIn is the stand-in RDP endpoint of WindowsName.
type rdpStandIn struct {
	l    net.Listener
	cert tls.Certificate
	log  *zap.Logger
	wg   sync.WaitGroup
}

// startWindows starts the stand-in RDP endpoint of WindowsName on its own
// loopback address and registers the instance with the fake, with a fresh
// self-signed certificate and password.
func (a *Account) startWindows(log *zap.Logger) error {
	ls, err := listeners(1)
	if err != nil {
		return err
	}
	cert, err := selfSignedRDP()
	if err != nil {
		ls[0].Close()
		return err
	}
	s := &rdpStandIn{l: ls[0], cert: cert, log: log.Named(WindowsName)}
	s.wg.Go(s.serve)
	a.rdp = s
	ip, port, _ := net.SplitHostPort(ls[0].Addr().String())
	a.ports["rdp"] = port
	pw := make([]byte, 12)
	rand.Read(pw)
	a.Fake.AddLightsailInstance(awsfake.LightsailInstance{Name: WindowsName, Region: Region, PublicIP: ip, PrivateIP: ip,
		Tags: map[string]string{"env": "demo"},
		Windows: &awsfake.LightsailWindows{Certificates: [][]byte{cert.Certificate[0]},
			Password: base64.RawURLEncoding.EncodeToString(pw)}})
	return nil
}

// selfSignedRDP makes a certificate like the self-signed one Windows
// makes for its RDP server.
func selfSignedRDP() (tls.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating the stand-in's key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "EC2AMAZ-DEMO"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(180 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("making the stand-in's certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Close stops the stand-in and waits for its connections.
func (s *rdpStandIn) Close() {
	s.l.Close()
	s.wg.Wait()
}

func (s *rdpStandIn) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.handle(c) })
	}
}

// handle answers one connection: an X.224 Connection Confirm selecting
// TLS (MS-RDPBCGR 2.2.1.2), the TLS handshake, then close, as there is no
// desktop behind it.
func (s *rdpStandIn) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(standInTimeout))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	if hdr[0] != 3 || n < 11 || n > 512 {
		return
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c, body); err != nil || body[1]&0xF0 != 0xE0 {
		return
	}
	// After the fixed header: an optional cookie line, then the
	// RDP_NEG_REQ (and perhaps correlation info).
	rest := body[7:]
	if i := bytes.Index(rest, []byte("\r\n")); i >= 0 {
		rest = rest[i+2:]
	}
	var requested uint32
	if len(rest) >= 8 && rest[0] == 0x01 {
		requested = binary.LittleEndian.Uint32(rest[4:8])
	}
	cc := []byte{3, 0, 0, 19, 14, 0xD0, 0, 0, 0x12, 0x34, 0, 0, 0, 8, 0, 0, 0, 0, 0}
	if requested&1 == 0 {
		// SSL_REQUIRED_BY_SERVER: the stand-in speaks TLS only.
		cc[11] = 0x03
		cc[15] = 0x01
		c.Write(cc)
		return
	}
	cc[11] = 0x02
	cc[15] = 0x01 // PROTOCOL_SSL
	if _, err := c.Write(cc); err != nil {
		return
	}
	tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		s.log.Info("rdp_standin_handshake_failed", zap.Error(err))
		return
	}
	s.log.Info("rdp_standin_handshake_done", zap.String("remote_addr", c.RemoteAddr().String()))
	tc.Close()
}
