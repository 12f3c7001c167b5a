package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The RDP security negotiation the bastion makes itself, to see the
// certificate of an instance's RDP server before a person's bytes go
// there: an X.224 Connection Request with an RDP Negotiation Request
// (MS-RDPBCGR 2.2.1.1), the server's Connection Confirm with its
// Negotiation Response (2.2.1.2), then a TLS handshake (5.4.5.1).

// Requested protocols of RDP_NEG_REQ (MS-RDPBCGR 2.2.1.1.1).
const (
	rdpProtocolRDP    = 0x00000000
	rdpProtocolSSL    = 0x00000001
	rdpProtocolHybrid = 0x00000002
	// rdpProtocolHybridEx is chosen by some servers only if asked; it
	// starts with TLS too.
	rdpProtocolHybridEx = 0x00000008
)

// RDP negotiation message types.
const (
	rdpNegReq     = 0x01
	rdpNegRsp     = 0x02
	rdpNegFailure = 0x03
)

// X.224 TPDU codes (ITU-T X.224 13.3, 13.4).
const (
	x224ConnectionRequest = 0xE0
	x224ConnectionConfirm = 0xD0
)

// rdpMaxConfirm bounds the Connection Confirm read from the server: it is
// 19 bytes; anything much longer is not an RDP server.
const rdpMaxConfirm = 512

// rdpRequested is what the probe asks for: TLS, alone or under CredSSP.
// Both start with the same TLS handshake, which is all the probe does; a
// server that insists on Network Level Authentication refuses a request
// for PROTOCOL_SSL alone (HYBRID_REQUIRED_BY_SERVER), so HYBRID is offered
// too.
const rdpRequested = rdpProtocolSSL | rdpProtocolHybrid

// errRDPNoTLS reports an RDP server that chose standard RDP security or
// refused the negotiation: its certificate cannot be checked.
var errRDPNoTLS = errors.New("the RDP server did not negotiate TLS")

// x224ConnectionRequestPDU returns the TPKT-framed X.224 Connection Request
// carrying an RDP_NEG_REQ for requested.
func x224ConnectionRequestPDU(requested uint32) []byte {
	b := make([]byte, 19)
	b[0], b[1] = 3, 0 // TPKT version 3 (RFC 1006 §6)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[4] = byte(len(b) - 5) // X.224 length indicator: the header after it
	b[5] = x224ConnectionRequest
	// DST-REF, SRC-REF and class 0 are zero.
	b[11] = rdpNegReq
	b[12] = 0 // flags
	binary.LittleEndian.PutUint16(b[13:15], 8)
	binary.LittleEndian.PutUint32(b[15:19], requested)
	return b
}

// readConnectionConfirm reads the server's TPKT-framed X.224 Connection
// Confirm and returns the protocol it selected.
func readConnectionConfirm(r io.Reader) (uint32, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("reading the connection confirm: %w", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	if hdr[0] != 3 || n < 11 || n > rdpMaxConfirm {
		return 0, fmt.Errorf("reading the connection confirm: not a TPKT header (% x)", hdr)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, fmt.Errorf("reading the connection confirm: %w", err)
	}
	return parseConnectionConfirm(body)
}

// readConnectionConfirmBytes parses a whole TPKT-framed Connection Confirm.
func readConnectionConfirmBytes(b []byte) (uint32, error) {
	return parseConnectionConfirm(b[4:])
}

// parseConnectionConfirm parses the X.224 part of a Connection Confirm.
func parseConnectionConfirm(body []byte) (uint32, error) {
	if int(body[0]) != len(body)-1 || body[1]&0xF0 != x224ConnectionConfirm {
		return 0, fmt.Errorf("reading the connection confirm: not an X.224 connection confirm (code %#x)", body[1])
	}
	neg := body[7:]
	if len(neg) < 8 {
		// No negotiation data: a server that knows only standard RDP
		// security.
		return rdpProtocolRDP, nil
	}
	switch neg[0] {
	case rdpNegRsp:
		return binary.LittleEndian.Uint32(neg[4:8]), nil
	case rdpNegFailure:
		return 0, fmt.Errorf("%w (negotiation failure code %d)", errRDPNoTLS, binary.LittleEndian.Uint32(neg[4:8]))
	}
	return 0, fmt.Errorf("reading the connection confirm: unknown negotiation type %#x", neg[0])
}

// probeRDPCertificate makes the RDP security negotiation on nc and returns
// the DER certificate the server presented in the TLS handshake. It does
// not judge the certificate: the caller compares its digest with the one
// the provider reported, which is why the handshake itself verifies
// nothing (the certificate of an RDP server is self-signed). The whole
// exchange must finish within timeout; nc is left open for the caller to
// close.
func probeRDPCertificate(ctx context.Context, nc net.Conn, timeout time.Duration) ([]byte, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write(x224ConnectionRequestPDU(rdpRequested)); err != nil {
		return nil, fmt.Errorf("writing the connection request: %w", err)
	}
	selected, err := readConnectionConfirm(nc)
	if err != nil {
		return nil, err
	}
	if selected&(rdpProtocolSSL|rdpProtocolHybrid|rdpProtocolHybridEx) == 0 {
		return nil, fmt.Errorf("%w (selected protocol %#x)", errRDPNoTLS, selected)
	}
	tc := tls.Client(nc, &tls.Config{
		// The certificate is pinned by its digest, below and by the
		// caller, not verified against a CA: RDP servers present a
		// self-signed one, and Lightsail reports its digest.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("tls handshake: the server presented no certificate")
	}
	return certs[0].Raw, nil
}
