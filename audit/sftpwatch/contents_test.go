package sftpwatch

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// noContent returns ops without the fields about file contents, for the
// tests about operations; contents_test.go checks those fields.
func noContent(ops []Op) []Op {
	if ops == nil {
		return nil
	}
	out := make([]Op, len(ops))
	for i, op := range ops {
		op.SHA256, op.Size, op.Partial = "", 0, ""
		out[i] = op
	}
	return out
}

// noSCPContent is noContent for an SCP's operations.
func noSCPContent(ops []SCPOp) []SCPOp {
	if ops == nil {
		return nil
	}
	out := make([]SCPOp, len(ops))
	for i, op := range ops {
		op.SHA256, op.Partial = "", ""
		out[i] = op
	}
	return out
}

// sha returns the hex SHA-256 of b.
func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// patterned returns n bytes that differ by offset, so that a hash of
// bytes out of order or of a wrong range differs.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestWatcherContentsUnit checks the size and SHA-256 of files moved whole
// and in one pass, and the reason given for every other transfer, with the
// session fed in chunks of every size from 1 byte (requests always
// observed before their replies, as the splice observes them).
func TestWatcherContentsUnit(t *testing.T) {
	body := patterned(700)
	up := func(extra ...step) []step {
		return append([]step{initStep, versionStep,
			c(pkt(fxpOpen, 1, "/tmp/up", fxfWrite|fxfCreat|fxfTrunc, noAttrs)),
			s(pkt(fxpHandle, 1, h0))}, extra...)
	}
	down := func(extra ...step) []step {
		return append([]step{initStep, versionStep,
			c(pkt(fxpOpen, 1, "/tmp/down", fxfRead, noAttrs)),
			s(pkt(fxpHandle, 1, h0))}, extra...)
	}
	closeStep := []step{c(pkt(fxpClose, 9, h0)), s(status(9, 0))}
	tests := []struct {
		name    string
		steps   []step
		sum     string
		size    int64
		partial string
	}{
		{name: "upload in one pass", steps: append(up(
			c(pkt(fxpWrite, 2, h0, uint64(0), body[:300]), pkt(fxpWrite, 3, h0, uint64(300), body[300:])),
			s(status(2, 0), status(3, 0))), closeStep...), sum: sha(body), size: 700},
		{name: "upload out of order", steps: append(up(
			c(pkt(fxpWrite, 3, h0, uint64(300), body[300:]), pkt(fxpWrite, 2, h0, uint64(0), body[:300])),
			s(status(3, 0), status(2, 0))), closeStep...), partial: PartialNotSequential},
		{name: "upload with a failed write", steps: append(up(
			c(pkt(fxpWrite, 2, h0, uint64(0), body[:300]), pkt(fxpWrite, 3, h0, uint64(300), body[300:])),
			s(status(2, 0), status(3, 4))), closeStep...), partial: PartialFailed},
		{name: "upload resumed at an offset", steps: append(up(
			c(pkt(fxpWrite, 2, h0, uint64(300), body[300:])), s(status(2, 0))), closeStep...), partial: PartialNotSequential},
		{name: "upload cut by the end of the session", steps: up(
			c(pkt(fxpWrite, 2, h0, uint64(0), body[:300])), s(status(2, 0))), partial: PartialAborted},
		{name: "download to the end", steps: append(down(
			c(pkt(fxpRead, 2, h0, uint64(0), 512), pkt(fxpRead, 3, h0, uint64(512), 512), pkt(fxpRead, 4, h0, uint64(1024), 512)),
			s(pkt(fxpData, 2, body[:512]), pkt(fxpData, 3, body[512:]), status(4, fxEOF))), closeStep...), sum: sha(body), size: 700},
		{name: "download stopped before the end", steps: append(down(
			c(pkt(fxpRead, 2, h0, uint64(0), 512)), s(pkt(fxpData, 2, body[:512]))), closeStep...), partial: PartialNotToEnd},
		{name: "download of a part", steps: append(down(
			c(pkt(fxpRead, 2, h0, uint64(100), 512), pkt(fxpRead, 3, h0, uint64(612), 512)),
			s(pkt(fxpData, 2, body[100:612]), status(3, fxEOF))), closeStep...), partial: PartialNotSequential},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := streams(tc.steps)
			for _, chunk := range []int{1, 7, 64, 1 << 20} {
				var closes []Op
				w := New(func(op Op) {
					if op.Kind == KindClose {
						closes = append(closes, op)
					}
				})
				// Each step in order, in chunks: the client's requests
				// before the server's replies to them.
				for _, st := range tc.steps {
					if st.client {
						feedChunks(w.FromClient, st.b, chunk)
					} else {
						feedChunks(w.FromServer, st.b, chunk)
					}
				}
				w.Close()
				if len(closes) != 1 {
					t.Fatalf("chunks of %d: got %d closes, want 1 (%d/%d bytes fed)", chunk, len(closes), len(client), len(server))
				}
				got := closes[0]
				if got.SHA256 != tc.sum || got.Size != tc.size || got.Partial != tc.partial {
					t.Errorf("chunks of %d: got sha256 %q size %d partial %q, want %q %d %q", chunk, got.SHA256, got.Size, got.Partial, tc.sum, tc.size, tc.partial)
				}
			}
		})
	}
}

// TestSCPContentsUnit checks the SHA-256 of scp files and the reason
// given for a file that was not transferred whole.
func TestSCPContentsUnit(t *testing.T) {
	body := patterned(1000)
	for _, tc := range []struct {
		name    string
		client  []byte // the source: the person, uploading
		server  []byte // the sink's answers
		sum     string
		partial string
	}{
		{name: "whole", client: append(append([]byte("C0644 1000 f\n"), body...), 0), server: []byte{0, 0, 0}, sum: sha(body)},
		{name: "cut", client: append([]byte("C0644 1000 f\n"), body[:400]...), server: []byte{0, 0}, partial: PartialAborted},
		{name: "refused", client: []byte("C0644 1000 f\n"), server: []byte("\x00\x01scp: f: Permission denied\n"), partial: PartialRefused},
		{name: "failed at the sink", client: append(append([]byte("C0644 1000 f\n"), body...), 0), server: []byte("\x00\x00\x01scp: f: No space left on device\n"), partial: PartialFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 13, 1 << 20} {
				var files []SCPOp
				s, ok := NewSCP("scp -t /tmp", func(op SCPOp) {
					if op.Kind == KindFile {
						files = append(files, op)
					}
				})
				if !ok {
					t.Fatal("NewSCP: not an scp sink")
				}
				feedChunks(s.FromServer, tc.server[:1], chunk)
				feedChunks(s.FromClient, tc.client, chunk)
				feedChunks(s.FromServer, tc.server[1:], chunk)
				s.Close()
				if len(files) != 1 || files[0].SHA256 != tc.sum || files[0].Partial != tc.partial {
					t.Errorf("chunks of %d: got %s, want sha256 %q, partial %q", chunk, opsString(files), tc.sum, tc.partial)
				}
			}
		})
	}
}
