package proxy

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestX224ConnectionRequestPDU(t *testing.T) {
	got := x224ConnectionRequestPDU(rdpRequested)
	// MS-RDPBCGR 4.1.1 without the cookie: TPKT, X.224 CR, RDP_NEG_REQ
	// for PROTOCOL_SSL|PROTOCOL_HYBRID.
	want := []byte{0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x08, 0x00, 0x03, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
}

func TestReadConnectionConfirm(t *testing.T) {
	cc := func(typ byte, v byte) []byte {
		return []byte{3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, typ, 0, 8, 0, v, 0, 0, 0}
	}
	for _, tc := range []struct {
		name     string
		in       []byte
		selected uint32
		noTLS    bool
		wantErr  string
	}{
		{name: "ssl", in: cc(0x02, 1), selected: 1},
		{name: "hybrid", in: cc(0x02, 2), selected: 2},
		{name: "failure", in: cc(0x03, 5), noTLS: true},
		{name: "no negotiation data", in: []byte{3, 0, 0, 11, 6, 0xd0, 0, 0, 0, 0, 0}, selected: 0},
		{name: "not tpkt", in: []byte("SSH-2.0-OpenSSH_9.2\r\n"), wantErr: "not a TPKT header"},
		{name: "too long", in: []byte{3, 0, 0xff, 0xff}, wantErr: "not a TPKT header"},
		{name: "short", in: []byte{3, 0, 0, 19, 14, 0xd0}, wantErr: "EOF"},
		{name: "not a confirm", in: []byte{3, 0, 0, 11, 6, 0xe0, 0, 0, 0, 0, 0}, wantErr: "not an X.224 connection confirm"},
		{name: "unknown negotiation", in: cc(0x07, 1), wantErr: "unknown negotiation type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readConnectionConfirm(bytes.NewReader(tc.in))
			switch {
			case tc.noTLS:
				if !errors.Is(err, errRDPNoTLS) {
					t.Errorf("got %v, want errRDPNoTLS", err)
				}
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %v, want an error with %q", err, tc.wantErr)
				}
			case err != nil || got != tc.selected:
				t.Errorf("got %d, %v; want %d", got, err, tc.selected)
			}
		})
	}
}
