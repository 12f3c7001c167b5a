package sftpwatch

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
)

var (
	h0 = []byte{0, 0, 0, 0}
	h1 = []byte{0, 0, 0, 1}
	// hLong is longer than handleRef keeps inline.
	hLong = bytes.Repeat([]byte("H"), 40)

	initStep    = c(pkt(fxpInit, 3))
	versionStep = s(pkt(fxpVersion, 3, extPosixRename, "1", extHardlink, "1"))
)

func data(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }

// allAttrs is an ATTRS with every field of draft-02 present.
var allAttrs = raw(join([][]byte{
	binary.BigEndian.AppendUint32(nil, attrSize|attrUIDGID|attrPermissions|attrACModTime|attrExtended),
	binary.BigEndian.AppendUint64(nil, 4096),
	binary.BigEndian.AppendUint32(nil, 1000), binary.BigEndian.AppendUint32(nil, 1000),
	binary.BigEndian.AppendUint32(nil, 0o100640),
	binary.BigEndian.AppendUint32(nil, 1), binary.BigEndian.AppendUint32(nil, 2),
	binary.BigEndian.AppendUint32(nil, 1),
	pkt(0, "name", "value")[5:],
}))

func TestWatcher(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  []Op
		// anyOrder says that the ops do not depend on the lag between the
		// directions, as for every well-formed session.
		anyOrder bool
	}{
		{
			name: "upload",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/tmp/up", fxfWrite|fxfCreat|fxfTrunc, permAttrs(0o644))),
				s(pkt(fxpHandle, 1, h0)),
				c(pkt(fxpWrite, 2, h0, uint64(0), data(100)), pkt(fxpWrite, 3, h0, uint64(100), data(50))),
				s(status(2, 0), status(3, 0)),
				c(pkt(fxpWrite, 4, h0, uint64(150), data(10))),
				s(status(4, 4)),
				c(pkt(fxpClose, 5, h0)),
				s(status(5, 0)),
			},
			want: []Op{
				{Kind: "open", Path: "/tmp/up", Mode: "write,create,truncate", Perm: p32(0o644), Status: "ok"},
				{Kind: "close", Path: "/tmp/up", Mode: "write,create,truncate", BytesWritten: 150, Status: "ok"},
			},
			anyOrder: true,
		},
		{
			name: "download",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/etc/motd", fxfRead, noAttrs)),
				s(pkt(fxpHandle, 1, h0)),
				c(pkt(fxpRead, 2, h0, uint64(0), 300), pkt(fxpRead, 3, h0, uint64(300), 300), pkt(fxpRead, 4, h0, uint64(600), 300)),
				s(pkt(fxpData, 2, data(300)), pkt(fxpData, 3, data(20)), status(4, 1)),
				c(pkt(fxpClose, 5, h0)),
				s(status(5, 0)),
			},
			want: []Op{
				{Kind: "open", Path: "/etc/motd", Mode: "read", Status: "ok"},
				{Kind: "close", Path: "/etc/motd", Mode: "read", BytesRead: 320, Status: "ok"},
			},
			anyOrder: true,
		},
		{
			name: "read and write through one handle, append, exclusive",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/f", fxfRead|fxfWrite|fxfAppend|fxfExcl|fxfCreat, noAttrs)),
				s(pkt(fxpHandle, 1, hLong)),
				c(pkt(fxpWrite, 2, hLong, uint64(0), data(7)), pkt(fxpRead, 3, hLong, uint64(0), 7)),
				s(status(2, 0), pkt(fxpData, 3, data(7))),
				c(pkt(fxpClose, 4, hLong)),
				s(status(4, 0)),
			},
			want: []Op{
				{Kind: "open", Path: "/f", Mode: "read,write,create,append,exclusive", Status: "ok"},
				{Kind: "close", Path: "/f", Mode: "read,write,create,append,exclusive", BytesRead: 7, BytesWritten: 7, Status: "ok"},
			},
			anyOrder: true,
		},
		{
			name: "namespace operations",
			steps: []step{initStep, versionStep,
				c(pkt(fxpRemove, 10, "/a")), s(status(10, 3)),
				c(pkt(fxpMkdir, 11, "/d", permAttrs(0o755))), s(status(11, 0)),
				c(pkt(fxpRmdir, 12, "/d")), s(status(12, 0)),
				c(pkt(fxpRename, 13, "/a", "/b")), s(status(13, 2)),
				c(pkt(fxpExtended, 14, extPosixRename, "/b", "/c")), s(status(14, 0)),
				c(pkt(fxpSymlink, 15, "/target", "/link")), s(status(15, 0)),
				c(pkt(fxpExtended, 16, extHardlink, "/c", "/h")), s(status(16, 0)),
				c(pkt(fxpSetstat, 17, "/c", permAttrs(0o600))), s(status(17, 0)),
				c(pkt(fxpExtended, 18, extLsetstat, "/link", noAttrs)), s(status(18, 8)),
				c(pkt(fxpStat, 19, "/c")), s(pkt(fxpAttrs, 19, noAttrs)),
				c(pkt(fxpLstat, 20, "/missing")), s(status(20, 2)),
				c(pkt(fxpRealpath, 21, ".")), s(pkt(fxpName, 21, 1, "/home/u", "/home/u", noAttrs)),
				c(pkt(fxpOpendir, 22, "/")), s(pkt(fxpHandle, 22, h1)),
				c(pkt(fxpReaddir, 23, h1)), s(pkt(fxpName, 23, 1, "a", "-rw-r--r-- a", noAttrs)),
				c(pkt(fxpReaddir, 24, h1)), s(status(24, 1)),
				c(pkt(fxpClose, 25, h1)), s(status(25, 0)),
				c(pkt(fxpExtended, 26, "statvfs@openssh.com", "/")), s(pkt(fxpExtendedReply, 26, raw(data(88)))),
				c(pkt(fxpExtended, 27, "nonesuch@example.com")), s(status(27, 8)),
				// OpenSSH's server ignores an unknown type: no reply.
				c(pkt(99, 28, "?")),
				c(pkt(fxpSetstat, 29, "/c", allAttrs)), s(status(29, 0)),
				c(pkt(fxpRmdir, 30, "/x")), s(status(30, 40)),
				c(pkt(fxpMkdir, 31, "/e", allAttrs)), s(status(31, 11)),
			},
			want: []Op{
				{Kind: "remove", Path: "/a", Status: "permission_denied"},
				{Kind: "mkdir", Path: "/d", Perm: p32(0o755), Status: "ok"},
				{Kind: "rmdir", Path: "/d", Status: "ok"},
				{Kind: "rename", Path: "/a", NewPath: "/b", Status: "no_such_file"},
				{Kind: "rename", Path: "/b", NewPath: "/c", Status: "ok"},
				{Kind: "symlink", Path: "/target", NewPath: "/link", Status: "ok"},
				{Kind: "link", Path: "/c", NewPath: "/h", Status: "ok"},
				{Kind: "setstat", Path: "/c", Perm: p32(0o600), Status: "ok"},
				{Kind: "setstat", Path: "/link", Status: "op_unsupported"},
				{Kind: "stat", Path: "/c", Status: "ok"},
				{Kind: "stat", Path: "/missing", Status: "no_such_file"},
				{Kind: "opendir", Path: "/", Status: "ok"},
				{Kind: "setstat", Path: "/c", Perm: p32(0o100640), Status: "ok"},
				{Kind: "rmdir", Path: "/x", Status: "status_40"},
				{Kind: "mkdir", Path: "/e", Perm: p32(0o100640), Status: "file_already_exists"},
			},
			anyOrder: true,
		},
		{
			name: "fsetstat and copy-data",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/src", fxfRead, noAttrs)), s(pkt(fxpHandle, 1, h0)),
				c(pkt(fxpOpen, 2, "/dst", fxfWrite|fxfCreat|fxfTrunc, noAttrs)), s(pkt(fxpHandle, 2, h1)),
				c(pkt(fxpFsetstat, 3, h1, permAttrs(0o640))), s(status(3, 0)),
				c(pkt(fxpExtended, 4, extCopyData, h0, uint64(0), uint64(0), h1, uint64(0))), s(status(4, 0)),
				c(pkt(fxpExtended, 5, "fsync@openssh.com", h1)), s(status(5, 0)),
				c(pkt(fxpClose, 6, h0), pkt(fxpClose, 7, h1)), s(status(6, 0), status(7, 0)),
			},
			want: []Op{
				{Kind: "open", Path: "/src", Mode: "read", Status: "ok"},
				{Kind: "open", Path: "/dst", Mode: "write,create,truncate", Status: "ok"},
				{Kind: "setstat", Path: "/dst", Perm: p32(0o640), Status: "ok"},
				{Kind: "copy", Path: "/src", NewPath: "/dst", Status: "ok"},
				{Kind: "close", Path: "/src", Mode: "read", Status: "ok"},
				{Kind: "close", Path: "/dst", Mode: "write,create,truncate", Status: "ok"},
			},
			anyOrder: true,
		},
		{
			name: "handle reused after close, requests pipelined",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/one", fxfWrite, noAttrs)), s(pkt(fxpHandle, 1, h0)),
				c(pkt(fxpWrite, 2, h0, uint64(0), data(5)), pkt(fxpClose, 3, h0), pkt(fxpOpen, 4, "/two", fxfWrite, noAttrs)),
				s(status(2, 0), status(3, 0), pkt(fxpHandle, 4, h0)),
				c(pkt(fxpWrite, 5, h0, uint64(0), data(7)), pkt(fxpClose, 6, h0)),
				s(status(5, 0), status(6, 0)),
			},
			want: []Op{
				{Kind: "open", Path: "/one", Mode: "write", Status: "ok"},
				{Kind: "close", Path: "/one", Mode: "write", BytesWritten: 5, Status: "ok"},
				{Kind: "open", Path: "/two", Mode: "write", Status: "ok"},
				{Kind: "close", Path: "/two", Mode: "write", BytesWritten: 7, Status: "ok"},
			},
			anyOrder: true,
		},
		{
			// OpenSSH's sftp client reuses ids once answered; observed
			// with one side ahead, several requests or replies of one id
			// wait together.
			name: "ids reused",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/f", fxfWrite, noAttrs)), s(pkt(fxpHandle, 1, h0)),
				c(pkt(fxpWrite, 2, h0, uint64(0), data(5))), s(status(2, 0)),
				c(pkt(fxpWrite, 2, h0, uint64(5), data(6))), s(status(2, 0)),
				c(pkt(fxpStat, 2, "/f")), s(pkt(fxpAttrs, 2, noAttrs)),
				c(pkt(fxpClose, 2, h0)), s(status(2, 0)),
				c(pkt(fxpOpen, 1, "/g", fxfRead, noAttrs)), s(status(1, 3)),
			},
			want: []Op{
				{Kind: "open", Path: "/f", Mode: "write", Status: "ok"},
				{Kind: "stat", Path: "/f", Status: "ok"},
				{Kind: "close", Path: "/f", Mode: "write", BytesWritten: 11, Status: "ok"},
				{Kind: "open", Path: "/g", Mode: "read", Status: "permission_denied"},
			},
			anyOrder: true,
		},
		{
			name: "failed open and close",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/nope", fxfRead, noAttrs)), s(status(1, 2)),
				c(pkt(fxpOpen, 2, "/f", fxfRead, noAttrs)), s(pkt(fxpHandle, 2, h0)),
				c(pkt(fxpClose, 3, h0)), s(status(3, 4)),
				// The handle is gone: a second close reports nothing.
				c(pkt(fxpClose, 4, h0)), s(status(4, 2)),
			},
			want: []Op{
				{Kind: "open", Path: "/nope", Mode: "read", Status: "no_such_file"},
				{Kind: "open", Path: "/f", Mode: "read", Status: "ok"},
				{Kind: "close", Path: "/f", Mode: "read", Status: "failure"},
			},
			anyOrder: true,
		},
		{
			name: "session ends with handles open and requests unanswered",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/a", fxfWrite, noAttrs)), s(pkt(fxpHandle, 1, h0)),
				c(pkt(fxpWrite, 2, h0, uint64(0), data(10))), s(status(2, 0)),
				c(pkt(fxpOpen, 3, "/b", fxfRead, noAttrs)), s(pkt(fxpHandle, 3, h1)),
				c(pkt(fxpRead, 4, h1, uint64(0), 10)), s(pkt(fxpData, 4, data(3))),
				c(pkt(fxpClose, 5, h1), pkt(fxpRemove, 6, "/x"), pkt(fxpWrite, 7, h0, uint64(10), data(10))),
				// The last write is cut short.
				c(pkt(fxpWrite, 8, h0, uint64(20), data(10))[:20]),
			},
			want: []Op{
				{Kind: "open", Path: "/a", Mode: "write", Status: "ok"},
				{Kind: "open", Path: "/b", Mode: "read", Status: "ok"},
				{Kind: "close", Path: "/b", Mode: "read", BytesRead: 3, Aborted: true},
				{Kind: "remove", Path: "/x", Aborted: true},
				{Kind: "close", Path: "/a", Mode: "write", BytesWritten: 10, Aborted: true},
			},
			anyOrder: true,
		},
		{
			name:  "no INIT",
			steps: []step{c(pkt(fxpOpen, 1, "/a", fxfRead, noAttrs)), s(status(1, 2))},
			want:  []Op{{Kind: "unparsed", Reason: "client packet type 3 where INIT is not expected or is missing"}},
		},
		{
			name:  "second INIT",
			steps: []step{initStep, versionStep, c(pkt(fxpInit, 3))},
			want:  []Op{{Kind: "unparsed", Reason: "client packet type 1 where INIT is not expected or is missing"}},
		},
		{
			name:  "not SFTP at all",
			steps: []step{c([]byte("SSH-2.0-OpenSSH_9.2\r\n"))},
			want:  []Op{{Kind: "unparsed", Reason: "packet length 1397966893 out of range"}},
		},
		{
			name:  "zero length",
			steps: []step{initStep, versionStep, c([]byte{0, 0, 0, 0, 0})},
			want:  []Op{{Kind: "unparsed", Reason: "packet length 0 out of range"}},
		},
		{
			name:  "packet too large",
			steps: []step{initStep, versionStep, c(pkt(fxpWrite, 1, h0, uint64(0), data(maxPacket))[:100])},
			want:  []Op{{Kind: "unparsed", Reason: "packet length 266265 out of range"}},
		},
		{
			name:  "version 4",
			steps: []step{initStep, s(pkt(fxpVersion, 4))},
			want:  []Op{{Kind: "unparsed", Reason: "sftp version 4 not supported"}},
		},
		{
			name:  "unknown server packet",
			steps: []step{initStep, versionStep, s(pkt(150, 1))},
			want:  []Op{{Kind: "unparsed", Reason: "unknown server packet type 150"}},
		},
		{
			name:  "string past the end",
			steps: []step{initStep, versionStep, c(pkt(fxpRemove, 1, raw{0, 0, 1, 0}, raw("/a")))},
			want:  []Op{{Kind: "unparsed", Reason: "malformed client request"}},
		},
		{
			name:  "write data past the end",
			steps: []step{initStep, versionStep, c(pkt(fxpWrite, 1, h0, uint64(0), raw{0, 0, 0, 9}, raw("abc")))},
			want:  []Op{{Kind: "unparsed", Reason: "malformed client request"}},
		},
		{
			name:  "data past the end",
			steps: []step{initStep, versionStep, s(pkt(fxpData, 1, raw{0, 0, 0, 9}, raw("abc")))},
			want:  []Op{{Kind: "unparsed", Reason: "malformed server reply"}},
		},
		{
			name:  "handle too long",
			steps: []step{initStep, versionStep, c(pkt(fxpClose, 1, data(maxHandle+1)))},
			want:  []Op{{Kind: "unparsed", Reason: "malformed client request"}},
		},
		{
			name:  "handle reply too long",
			steps: []step{initStep, versionStep, s(pkt(fxpHandle, 1, data(maxHandle+1)))},
			want:  []Op{{Kind: "unparsed", Reason: "handle reply too long"}},
		},
		{
			name: "reply of the wrong type, and nothing after it",
			steps: []step{initStep, versionStep,
				c(pkt(fxpOpen, 1, "/a", fxfRead, noAttrs)), s(pkt(fxpData, 1, data(3))),
				c(pkt(fxpRemove, 2, "/b")), s(status(2, 0)),
			},
			want: []Op{{Kind: "unparsed", Reason: "reply type 103 does not answer request kind 1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			feedings := orderedFeedings(tc.steps)
			if tc.anyOrder {
				feedings = append(feedings, splitFeedings(tc.steps, true)...)
				feedings = append(feedings, splitFeedings(tc.steps, false)...)
			}
			for _, f := range feedings {
				var got []Op
				w := New(func(op Op) { got = append(got, op) })
				f.feed(w, tc.steps)
				w.Close()
				w.FromClient(pkt(fxpRemove, 99, "/after-close"))
				w.Close()
				if !reflect.DeepEqual(noContent(got), tc.want) {
					t.Fatalf("%s: got\n%swant\n%s", f.name, opsString(got), opsString(tc.want))
				}
			}
		})
	}
}

// TestWatcherBounds checks that tables stop growing at their bounds.
func TestWatcherBounds(t *testing.T) {
	tests := []struct {
		name   string
		client bool
		packet func(id uint32) []byte
		want   string
	}{
		{"requests without replies", true, func(id uint32) []byte { return pkt(fxpRead, id, h0, uint64(0), 10) }, "too many requests awaiting replies"},
		{"replies without requests", false, func(id uint32) []byte { return status(id, 0) }, "too many replies to unseen requests"},
		{"open handles", false, nil, "too many open handles"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []Op
			w := New(func(op Op) { got = append(got, op) })
			w.FromClient(pkt(fxpInit, 3))
			w.FromServer(pkt(fxpVersion, 3))
			for id := uint32(1); id <= maxPending+2 && !w.dead; id++ {
				switch {
				case tc.packet == nil:
					w.FromClient(pkt(fxpOpen, id, "/f", fxfRead, noAttrs))
					w.FromServer(pkt(fxpHandle, id, binary.BigEndian.AppendUint32(nil, id)))
				case tc.client:
					w.FromClient(tc.packet(id))
				default:
					w.FromServer(tc.packet(id))
				}
			}
			var unparsed []Op
			for _, op := range got {
				if op.Kind == KindUnparsed {
					unparsed = append(unparsed, op)
				}
			}
			if len(unparsed) != 1 || unparsed[0].Reason != tc.want || got[len(got)-1].Kind != KindUnparsed {
				t.Fatalf("got unparsed ops %s, want one, last: %s", opsString(unparsed), tc.want)
			}
			if w.pending.first != nil || w.handles != nil || w.client.buf != nil {
				t.Errorf("got tables kept after unparsed, want them released")
			}
		})
	}
}

// TestWatcherLargeTransfer checks byte counts over payloads larger than a
// chunk, fed in random chunks, with the directions lagging each other.
func TestWatcherLargeTransfer(t *testing.T) {
	const writes, size = 40, 255 << 10
	var client, server []byte
	client = append(client, pkt(fxpInit, 3)...)
	server = append(server, pkt(fxpVersion, 3)...)
	client = append(client, pkt(fxpOpen, 1, "/big", fxfWrite|fxfCreat, noAttrs)...)
	server = append(server, pkt(fxpHandle, 1, h0)...)
	payload := data(size)
	for i := range writes {
		id := uint32(10 + i)
		client = append(client, pkt(fxpWrite, id, h0, uint64(i*size), payload)...)
		server = append(server, status(id, 0)...)
	}
	client = append(client, pkt(fxpClose, 2, h0)...)
	server = append(server, status(2, 0)...)
	want := []Op{
		{Kind: "open", Path: "/big", Mode: "write,create", Status: "ok"},
		{Kind: "close", Path: "/big", Mode: "write,create", BytesWritten: writes * size, Status: "ok"},
	}
	for seed := range uint64(5) {
		var mu sync.Mutex
		var got []Op
		w := New(func(op Op) { mu.Lock(); got = append(got, op); mu.Unlock() })
		var wg sync.WaitGroup
		wg.Go(func() { randomChunks(rand.New(rand.NewPCG(seed, 1)), w.FromClient, client, 64<<10) })
		wg.Go(func() { randomChunks(rand.New(rand.NewPCG(seed, 2)), w.FromServer, server, 16) })
		wg.Wait()
		w.Close()
		if !reflect.DeepEqual(noContent(got), want) {
			t.Fatalf("seed %d: got\n%swant\n%s", seed, opsString(got), opsString(want))
		}
	}
}

// TestWatcherNoAllocs checks that reads and writes in flight allocate
// nothing: the hot path of a transfer.
func TestWatcherNoAllocs(t *testing.T) {
	w := New(func(Op) {})
	w.FromClient(join([][]byte{pkt(fxpInit, 3), pkt(fxpOpen, 1, "/f", fxfRead|fxfWrite, noAttrs)}))
	w.FromServer(join([][]byte{pkt(fxpVersion, 3), pkt(fxpHandle, 1, h0)}))
	write := pkt(fxpWrite, 2, h0, uint64(0), data(100<<10))
	read := pkt(fxpRead, 3, h0, uint64(0), 100<<10)
	dataReply := pkt(fxpData, 3, data(100<<10))
	ok := status(2, 0)
	// Warm the tables up to their working size.
	for range 3 {
		feedChunks(w.FromClient, write, 32<<10)
		w.FromServer(ok)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < len(write); i += 32 << 10 {
			w.FromClient(write[i:min(i+32<<10, len(write))])
		}
		w.FromServer(ok)
		w.FromClient(read)
		for i := 0; i < len(dataReply); i += 32 << 10 {
			w.FromServer(dataReply[i:min(i+32<<10, len(dataReply))])
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per write and read, want 0", allocs)
	}
	w.Close()
}

func TestStatusName(t *testing.T) {
	tests := []struct {
		code uint32
		want string
	}{
		{0, "ok"}, {1, "eof"}, {2, "no_such_file"}, {3, "permission_denied"},
		{4, "failure"}, {5, "bad_message"}, {6, "no_connection"},
		{7, "connection_lost"}, {8, "op_unsupported"}, {18, "dir_not_empty"},
		{31, "no_matching_byte_range_lock"}, {32, "status_32"},
		{1<<32 - 1, "status_4294967295"},
	}
	for _, tc := range tests {
		if got := statusName(tc.code); got != tc.want {
			t.Errorf("statusName(%d): got %q, want %q", tc.code, got, tc.want)
		}
	}
}

func TestOpenMode(t *testing.T) {
	tests := []struct {
		flags uint32
		want  string
	}{
		{0, ""},
		{fxfRead, "read"},
		{fxfWrite, "write"},
		{fxfRead | fxfWrite, "read,write"},
		{fxfWrite | fxfCreat | fxfTrunc, "write,create,truncate"},
		{fxfWrite | fxfAppend, "write,append"},
		{fxfWrite | fxfCreat | fxfExcl, "write,create,exclusive"},
		{fxfCreat | 0x40, "create"},
	}
	for _, tc := range tests {
		if got := openMode(tc.flags); got != tc.want {
			t.Errorf("openMode(%#x): got %q, want %q", tc.flags, got, tc.want)
		}
	}
}
