package sftpwatch

import (
	"sync"
	"testing"
)

// The benchmarks feed sessions the way a splice does: 32 KiB reads, which
// do not line up with packets, with the other direction's small replies
// in between. MB/s is of the transfer's direction.

// benchChunk is the splice's copy buffer.
const benchChunk = 32 << 10

// sftpTransfer builds a session moving n payloads of size bytes: writes
// answered by STATUS, or reads answered by DATA.
func sftpTransfer(n, size int, upload bool) (client, server []byte) {
	client = append(pkt(fxpInit, 3), pkt(fxpOpen, 1, "/f", fxfRead|fxfWrite, noAttrs)...)
	server = append(pkt(fxpVersion, 3), pkt(fxpHandle, 1, h0)...)
	payload := data(size)
	for i := range n {
		id := uint32(2 + i%64)
		if upload {
			client = append(client, pkt(fxpWrite, id, h0, uint64(i*size), payload)...)
			server = append(server, status(id, 0)...)
		} else {
			client = append(client, pkt(fxpRead, id, h0, uint64(i*size), uint32(size))...)
			server = append(server, pkt(fxpData, id, payload)...)
		}
	}
	client = append(client, pkt(fxpClose, 99, h0)...)
	server = append(server, status(99, 0)...)
	return client, server
}

// feedSlices feeds b in chunks of n without copying.
func feedSlices(fn func([]byte), b []byte, n int) {
	for i := 0; i < len(b); i += n {
		fn(b[i:min(i+n, len(b))])
	}
}

// feedAlternating feeds big in chunks of benchChunk and small in chunks of
// 64 bytes, one of each in turn.
func feedAlternating(bigFn, smallFn func([]byte), big, small []byte) {
	for len(big) > 0 || len(small) > 0 {
		k := min(benchChunk, len(big))
		bigFn(big[:k])
		big = big[k:]
		k = min(64, len(small))
		smallFn(small[:k])
		small = small[k:]
	}
}

func benchmarkWatcher(b *testing.B, upload bool) {
	client, server := sftpTransfer(256, 32<<10, upload)
	var written, read int64
	report := func(op Op) { written += op.BytesWritten; read += op.BytesRead }
	if upload {
		b.SetBytes(int64(len(client)))
	} else {
		b.SetBytes(int64(len(server)))
	}
	b.ReportAllocs()
	for b.Loop() {
		w := New(report)
		if upload {
			feedAlternating(w.FromClient, w.FromServer, client, server)
		} else {
			feedAlternating(w.FromServer, w.FromClient, server, client)
		}
		w.Close()
	}
	if written+read == 0 {
		b.Fatal("got no bytes counted")
	}
}

func BenchmarkWatcherUpload(b *testing.B)   { benchmarkWatcher(b, true) }
func BenchmarkWatcherDownload(b *testing.B) { benchmarkWatcher(b, false) }

// BenchmarkWatcherConcurrent feeds the two directions of an upload from
// two goroutines, as the splice does.
func BenchmarkWatcherConcurrent(b *testing.B) {
	client, server := sftpTransfer(256, 32<<10, true)
	b.SetBytes(int64(len(client)))
	b.ReportAllocs()
	for b.Loop() {
		w := New(func(Op) {})
		var wg sync.WaitGroup
		wg.Go(func() { feedSlices(w.FromClient, client, benchChunk) })
		wg.Go(func() { feedSlices(w.FromServer, server, 64) })
		wg.Wait()
		w.Close()
	}
}

func BenchmarkSCPUpload(b *testing.B) {
	// The session as a splice sees it: each answer before the bytes it
	// allows.
	type event struct {
		source bool
		b      []byte
	}
	events := []event{{false, []byte{0}}}
	content := data(1 << 20)
	size := 0
	for range 8 {
		events = append(events, event{true, []byte("C0644 1048576 file\n")}, event{false, []byte{0}})
		for i := 0; i < len(content); i += benchChunk {
			events = append(events, event{true, content[i:min(i+benchChunk, len(content))]})
		}
		events = append(events, event{true, []byte{0}}, event{false, []byte{0}})
		size += len(content) + 20
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		s, _ := NewSCP("scp -t /t", func(SCPOp) {})
		for _, e := range events {
			if e.source {
				s.FromClient(e.b)
			} else {
				s.FromServer(e.b)
			}
		}
		s.Close()
	}
}
