package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// rdpWatch checks the instance's side of a spliced RDP connection where
// the protocol lets a party that does not terminate TLS see the
// certificate, and holds back the instance's bytes until it has decided:
//
//   - The X.224 Connection Confirm must select a TLS-based protocol: a
//     connection under standard RDP security has no certificate to check,
//     and is ended.
//   - Up to TLS 1.2 the server's Certificate message is in the clear: its
//     leaf must be the certificate the probe verified, or the connection
//     is ended before that message reaches the person.
//   - Under TLS 1.3 the certificate is encrypted: the ServerHello ends the
//     watch, and the person's client checks the fingerprint `ssh bastion
//     rdp` printed. So does an abbreviated (resumed) TLS 1.2 handshake,
//     which carries no certificate.
//
// feed is called with each read from the instance, in order, by one
// goroutine.
type rdpWatch struct {
	want [sha256.Size]byte
	// state is where the watch is: rdpWatchConfirm, rdpWatchTLS or
	// rdpWatchDone.
	state int
	// held is what the instance sent that has not been passed on.
	held []byte
	// scan is how much of held has been parsed as TLS records.
	scan int
	// hs is the handshake messages from those records, not yet parsed.
	hs []byte
	// tls12 is set once a ServerHello chose TLS 1.2 or older.
	tls12 bool
	// unseen is set when the watch ended without seeing a certificate.
	unseen bool
}

// States of rdpWatch.
const (
	rdpWatchConfirm = iota
	rdpWatchTLS
	rdpWatchDone
)

// rdpWatchMax bounds the bytes held back before a decision: a server's
// first TLS flight is a few KiB.
const rdpWatchMax = 64 << 10

// TLS record and handshake types (RFC 8446 §5.1, §4; RFC 5246 §7.4).
const (
	tlsRecordChangeCipherSpec = 20
	tlsRecordAlert            = 21
	tlsRecordHandshake        = 22
	tlsHandshakeServerHello   = 2
	tlsHandshakeCertificate   = 11
	tlsExtSupportedVersions   = 43
	tlsVersion13              = 0x0304
)

// Errors of rdpWatch.feed, which end the forward.
var (
	errRDPSwitched = errors.New("the instance presented another certificate on the spliced connection than the one verified")
	errRDPHeldMax  = errors.New("the instance's TLS handshake did not fit the bytes held back to check it")
	errRDPNoCert   = errors.New("the instance's TLS 1.2 handshake carried no certificate")
)

// feed takes bytes read from the instance and returns those to pass on to
// the person now (nil while holding back), or an error that ends the
// forward.
func (w *rdpWatch) feed(p []byte) ([]byte, error) {
	if w.state == rdpWatchDone {
		return p, nil
	}
	w.held = append(w.held, p...)
	if len(w.held) > rdpWatchMax {
		return nil, errRDPHeldMax
	}
	var out []byte
	if w.state == rdpWatchConfirm {
		if len(w.held) < 4 {
			return nil, nil
		}
		n := int(binary.BigEndian.Uint16(w.held[2:4]))
		if w.held[0] != 3 || n < 11 || n > rdpMaxConfirm {
			return nil, fmt.Errorf("reading the connection confirm: not a TPKT header (% x)", w.held[:4])
		}
		if len(w.held) < n {
			return nil, nil
		}
		selected, err := readConnectionConfirmBytes(w.held[:n])
		switch {
		case errors.Is(err, errRDPNoTLS):
			// A refusal: pass it on, the server ends the connection.
			w.state = rdpWatchDone
			return w.flush(), nil
		case err != nil:
			return nil, err
		case selected&(rdpProtocolSSL|rdpProtocolHybrid|rdpProtocolHybridEx) == 0:
			return nil, fmt.Errorf("%w for the person's client (selected protocol %#x)", errRDPNoTLS, selected)
		}
		// The client needs the confirm to start TLS: pass it on now.
		out = append(out, w.held[:n]...)
		w.held = append([]byte(nil), w.held[n:]...)
		w.state = rdpWatchTLS
	}
	done, err := w.scanTLS()
	if err != nil {
		return nil, err
	}
	if done {
		w.state = rdpWatchDone
		out = append(out, w.flush()...)
	}
	return out, nil
}

// flush returns the held bytes and forgets them.
func (w *rdpWatch) flush() []byte {
	b := w.held
	w.held, w.hs = nil, nil
	return b
}

// scanTLS parses the complete TLS records held and reports whether the
// watch is over (the certificate matched, or cannot be seen).
func (w *rdpWatch) scanTLS() (bool, error) {
	for len(w.held)-w.scan >= 5 {
		rec := w.held[w.scan:]
		typ, n := rec[0], int(binary.BigEndian.Uint16(rec[3:5]))
		if len(rec) < 5+n {
			return false, nil
		}
		w.scan += 5 + n
		switch typ {
		case tlsRecordHandshake:
			w.hs = append(w.hs, rec[5:5+n]...)
			if done, err := w.scanHandshake(); done || err != nil {
				return done, err
			}
		case tlsRecordChangeCipherSpec, tlsRecordAlert:
			// A resumed session (no certificate) or the server giving
			// up: nothing more can be seen.
			w.unseen = true
			return true, nil
		default:
			return false, fmt.Errorf("reading the instance's TLS handshake: record type %d", typ)
		}
	}
	return false, nil
}

// scanHandshake parses the complete handshake messages in w.hs.
func (w *rdpWatch) scanHandshake() (bool, error) {
	for len(w.hs) >= 4 {
		n := int(w.hs[1])<<16 | int(w.hs[2])<<8 | int(w.hs[3])
		if len(w.hs) < 4+n {
			return false, nil
		}
		typ, body := w.hs[0], w.hs[4:4+n]
		w.hs = w.hs[4+n:]
		switch {
		case typ == tlsHandshakeServerHello:
			v, err := serverHelloVersion(body)
			if err != nil {
				return false, err
			}
			if v >= tlsVersion13 {
				w.unseen = true
				return true, nil
			}
			w.tls12 = true
		case typ == tlsHandshakeCertificate && w.tls12:
			leaf, err := leafCertificate(body)
			if err != nil {
				return false, err
			}
			sum := sha256.Sum256(leaf)
			if subtle.ConstantTimeCompare(sum[:], w.want[:]) != 1 {
				return false, errRDPSwitched
			}
			return true, nil
		case w.tls12:
			return false, errRDPNoCert
		default:
			return false, fmt.Errorf("reading the instance's TLS handshake: message type %d before the ServerHello", typ)
		}
	}
	return false, nil
}

// serverHelloVersion returns the TLS version a ServerHello chose: its
// supported_versions extension, else its legacy version.
func serverHelloVersion(b []byte) (uint16, error) {
	bad := errors.New("reading the instance's TLS handshake: malformed ServerHello")
	if len(b) < 35 {
		return 0, bad
	}
	v := binary.BigEndian.Uint16(b[:2])
	b = b[34:]
	sid := int(b[0])
	if len(b) < 1+sid+3 {
		return 0, bad
	}
	b = b[1+sid+3:]
	if len(b) < 2 {
		return v, nil
	}
	ext := int(binary.BigEndian.Uint16(b[:2]))
	b = b[2:]
	if len(b) < ext {
		return 0, bad
	}
	for b = b[:ext]; len(b) >= 4; {
		typ, n := binary.BigEndian.Uint16(b[:2]), int(binary.BigEndian.Uint16(b[2:4]))
		if len(b) < 4+n {
			return 0, bad
		}
		if typ == tlsExtSupportedVersions && n == 2 {
			return binary.BigEndian.Uint16(b[4:6]), nil
		}
		b = b[4+n:]
	}
	return v, nil
}

// leafCertificate returns the first certificate of a TLS 1.2 Certificate
// message (RFC 5246 §7.4.2).
func leafCertificate(b []byte) ([]byte, error) {
	bad := errors.New("reading the instance's TLS handshake: malformed Certificate")
	if len(b) < 6 {
		return nil, bad
	}
	n := int(b[3])<<16 | int(b[4])<<8 | int(b[5])
	if n == 0 || len(b) < 6+n {
		return nil, bad
	}
	return b[6 : 6+n], nil
}
