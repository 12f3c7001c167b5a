package sftpwatch

import (
	"reflect"
	"testing"
)

// The fuzz targets check that no input panics, that chunking never
// changes what is reported, that "unparsed" comes at most once and last,
// and that the state held stays within its bounds. The seed corpus in
// testdata/fuzz holds small real OpenSSH sessions (TestOpenSSHFuzzSeeds
// -update rewrites them).

func FuzzWatcher(f *testing.F) {
	f.Add(
		join([][]byte{pkt(fxpInit, 3), pkt(fxpOpen, 1, "/f", fxfWrite|fxfCreat, permAttrs(0o644)),
			pkt(fxpWrite, 2, h0, uint64(0), data(10)), pkt(fxpClose, 3, h0), pkt(fxpRename, 4, "/f", "/g")}),
		join([][]byte{pkt(fxpVersion, 3), pkt(fxpHandle, 1, h0), status(2, 0), status(3, 0), status(4, 2)}),
		uint8(3))
	f.Add(
		join([][]byte{pkt(fxpInit, 3), pkt(fxpOpen, 1, "/f", fxfRead, noAttrs), pkt(fxpRead, 2, h0, uint64(0), 10),
			pkt(fxpExtended, 3, extCopyData, h0, uint64(0), uint64(0), h0, uint64(0))}),
		join([][]byte{pkt(fxpVersion, 3), pkt(fxpHandle, 1, h0), pkt(fxpData, 2, data(10)), status(3, 4)}),
		uint8(1))
	f.Fuzz(func(t *testing.T, client, server []byte, chunk uint8) {
		n := int(chunk)%64 + 1
		for _, clientFirst := range []bool{true, false} {
			whole := watchFuzz(t, client, server, len(client)+len(server)+1, clientFirst)
			chunked := watchFuzz(t, client, server, n, clientFirst)
			if !reflect.DeepEqual(whole, chunked) {
				t.Fatalf("client first %v: in chunks of %d got\n%swhole got\n%s", clientFirst, n, opsString(chunked), opsString(whole))
			}
		}
		// Directions interleaved chunk by chunk.
		var ops []Op
		w := New(func(op Op) { ops = append(ops, op) })
		for i := 0; i < max(len(client), len(server)); i += n {
			w.FromClient(client[min(i, len(client)):min(i+n, len(client))])
			w.FromServer(server[min(i, len(server)):min(i+n, len(server))])
			checkWatcherBounds(t, w)
		}
		w.Close()
		checkUnparsedLast(t, ops, func(op Op) bool { return op.Kind == KindUnparsed })
	})
}

// watchFuzz feeds one direction and then the other in chunks of n.
func watchFuzz(t *testing.T, client, server []byte, n int, clientFirst bool) []Op {
	var ops []Op
	w := New(func(op Op) { ops = append(ops, op) })
	first, second := w.FromClient, w.FromServer
	a, b := client, server
	if !clientFirst {
		first, second, a, b = second, first, b, a
	}
	feedChunks(first, a, n)
	checkWatcherBounds(t, w)
	feedChunks(second, b, n)
	checkWatcherBounds(t, w)
	w.Close()
	checkUnparsedLast(t, ops, func(op Op) bool { return op.Kind == KindUnparsed })
	return ops
}

func checkWatcherBounds(t *testing.T, w *Watcher) {
	t.Helper()
	for _, s := range []*stream{&w.client, &w.server} {
		if len(s.buf) > maxPacket || s.want > maxPacket {
			t.Fatalf("got a packet buffer of %d (want %d), more than %d", len(s.buf), s.want, maxPacket)
		}
	}
	if w.pending.len() > maxPending || w.early.len() > maxPending || len(w.handles) > maxHandles || w.retained > maxRetained {
		t.Fatalf("got %d pending, %d early, %d handles, %d bytes retained: past the bounds",
			w.pending.len(), w.early.len(), len(w.handles), w.retained)
	}
}

func checkUnparsedLast[T any](t *testing.T, ops []T, unparsed func(T) bool) {
	t.Helper()
	for i, op := range ops {
		if unparsed(op) && i != len(ops)-1 {
			t.Fatalf("got ops\n%swant unparsed only last", opsString(ops))
		}
	}
}

func FuzzSCP(f *testing.F) {
	f.Add([]byte("C0644 5 a.txt\nhello\x00D0755 0 d\nC0600 1 b\nx\x00E\n\x01scp: oops\n"),
		[]byte("\x00\x00\x00\x00\x00\x00\x00\x00"), true, uint8(2))
	f.Add([]byte("C0644 4 blocked\nC0644 70000 big\n"), []byte("\x00\x01scp: no\n\x00"), false, uint8(9))
	f.Fuzz(func(t *testing.T, source, sink []byte, upload bool, chunk uint8) {
		n := int(chunk)%64 + 1
		for _, sourceFirst := range []bool{true, false} {
			whole := scpFuzz(t, source, sink, upload, len(source)+len(sink)+1, sourceFirst)
			chunked := scpFuzz(t, source, sink, upload, n, sourceFirst)
			if !reflect.DeepEqual(whole, chunked) {
				t.Fatalf("source first %v: in chunks of %d got\n%swhole got\n%s", sourceFirst, n, opsString(chunked), opsString(whole))
			}
		}
		var ops []SCPOp
		s := newFuzzSCP(upload, func(op SCPOp) { ops = append(ops, op) })
		for i := 0; i < max(len(source), len(sink)); i += n {
			feedSCP(s, true, source[min(i, len(source)):min(i+n, len(source))])
			feedSCP(s, false, sink[min(i, len(sink)):min(i+n, len(sink))])
			checkSCPBounds(t, s)
		}
		s.Close()
		checkUnparsedLast(t, ops, func(op SCPOp) bool { return op.Kind == KindUnparsed })
	})
}

func newFuzzSCP(upload bool, report func(SCPOp)) *SCP {
	cmd := "scp -f x"
	if upload {
		cmd = "scp -t x"
	}
	s, _ := NewSCP(cmd, report)
	return s
}

// feedSCP hands p to s as the source's bytes or the sink's.
func feedSCP(s *SCP, source bool, p []byte) {
	if source == (s.direction == Upload) {
		s.FromClient(p)
	} else {
		s.FromServer(p)
	}
}

func scpFuzz(t *testing.T, source, sink []byte, upload bool, n int, sourceFirst bool) []SCPOp {
	var ops []SCPOp
	s := newFuzzSCP(upload, func(op SCPOp) { ops = append(ops, op) })
	first, second := source, sink
	if !sourceFirst {
		first, second = sink, source
	}
	feedChunks(func(p []byte) { feedSCP(s, sourceFirst, p) }, first, n)
	checkSCPBounds(t, s)
	feedChunks(func(p []byte) { feedSCP(s, !sourceFirst, p) }, second, n)
	checkSCPBounds(t, s)
	s.Close()
	checkUnparsedLast(t, ops, func(op SCPOp) bool { return op.Kind == KindUnparsed })
	return ops
}

func checkSCPBounds(t *testing.T, s *SCP) {
	t.Helper()
	if len(s.line) > maxLine || len(s.msg) > maxLine || len(s.look) > maxLookahead || s.dirBytes > maxPath ||
		s.items.len() > maxPending+1 || s.answers.len() > maxPending || s.retained > maxRetained {
		t.Fatalf("got line %d, message %d, lookahead %d, path %d, %d items, %d answers, %d bytes retained: past the bounds",
			len(s.line), len(s.msg), len(s.look), s.dirBytes, s.items.len(), s.answers.len(), s.retained)
	}
}
