package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

func testRDPCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rdp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRDPWatch runs a TLS handshake between a real client and server
// with the server's bytes passed through an rdpWatch expecting the digest
// of verified, after a Connection Confirm selecting selected.
func TestRDPWatch(t *testing.T) {
	verified, other := testRDPCert(t), testRDPCert(t)
	for _, tc := range []struct {
		name       string
		selected   byte
		maxVersion uint16
		serve      tls.Certificate
		wantErr    error
		wantUnseen bool
	}{
		{name: "tls 1.2, the verified certificate", selected: 1, maxVersion: tls.VersionTLS12, serve: verified},
		{name: "tls 1.2, another certificate", selected: 1, maxVersion: tls.VersionTLS12, serve: other, wantErr: errRDPSwitched},
		{name: "tls 1.3", selected: 1, maxVersion: tls.VersionTLS13, serve: other, wantUnseen: true},
		{name: "hybrid, tls 1.2", selected: 2, maxVersion: tls.VersionTLS12, serve: verified},
		{name: "standard rdp security", selected: 0, maxVersion: tls.VersionTLS12, serve: verified, wantErr: errRDPNoTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &rdpWatch{want: sha256.Sum256(verified.Certificate[0])}
			clientSide, relayClient := net.Pipe()
			relayServer, serverSide := net.Pipe()
			defer clientSide.Close()
			defer relayClient.Close()
			defer relayServer.Close()
			defer serverSide.Close()
			for _, c := range []net.Conn{clientSide, relayClient, relayServer, serverSide} {
				c.SetDeadline(time.Now().Add(20 * time.Second))
			}
			go func() {
				serverSide.Write([]byte{3, 0, 0, 19, 14, 0xd0, 0, 0, 0, 0, 0, 2, 0, 8, 0, tc.selected, 0, 0, 0})
				tls.Server(serverSide, &tls.Config{Certificates: []tls.Certificate{tc.serve}}).Handshake()
			}()
			go io.Copy(relayServer, relayClient)
			watchErr := make(chan error, 1)
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := relayServer.Read(buf)
					if n > 0 {
						out, ferr := w.feed(buf[:n])
						if ferr != nil {
							watchErr <- ferr
							relayClient.Close()
							return
						}
						relayClient.Write(out)
					}
					if err != nil {
						watchErr <- nil
						return
					}
				}
			}()
			cc := make([]byte, 19)
			_, err := io.ReadFull(clientSide, cc)
			if tc.selected == 0 {
				if got := <-watchErr; !errors.Is(got, tc.wantErr) {
					t.Fatalf("got %v, want %v", got, tc.wantErr)
				}
				if err == nil {
					t.Fatal("the confirm selecting standard RDP security reached the client")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var seen []byte
			tc2 := tls.Client(clientSide, &tls.Config{InsecureSkipVerify: true, MaxVersion: tc.maxVersion,
				VerifyConnection: func(cs tls.ConnectionState) error { seen = cs.PeerCertificates[0].Raw; return nil }})
			herr := tc2.Handshake()
			if tc.wantErr != nil {
				if got := <-watchErr; !errors.Is(got, tc.wantErr) {
					t.Fatalf("watch: got %v, want %v", got, tc.wantErr)
				}
				if herr == nil || seen != nil {
					t.Fatalf("the client completed the handshake (%v) or saw a certificate (%d bytes)", herr, len(seen))
				}
				return
			}
			if herr != nil {
				t.Fatalf("handshake: %v", herr)
			}
			if w.state != rdpWatchDone || w.unseen != tc.wantUnseen {
				t.Errorf("watch state %d unseen %v, want done, unseen %v", w.state, w.unseen, tc.wantUnseen)
			}
		})
	}
}
