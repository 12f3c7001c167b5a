package sftpwatch

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
)

// raw is packet content appended as is, without a length.
type raw []byte

// pkt builds an SFTP packet of type typ from fields: uint32, uint64,
// string and []byte (SSH strings), raw.
func pkt(typ byte, fields ...any) []byte {
	body := []byte{typ}
	for _, f := range fields {
		switch v := f.(type) {
		case int:
			body = binary.BigEndian.AppendUint32(body, uint32(v))
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case raw:
			body = append(body, v...)
		default:
			panic(fmt.Sprintf("pkt: field type %T", f))
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// noAttrs is an empty ATTRS.
var noAttrs = raw{0, 0, 0, 0}

// permAttrs is an ATTRS with permissions only.
func permAttrs(perm uint32) raw {
	return raw(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, attrPermissions), perm))
}

// status builds an SSH_FXP_STATUS reply as OpenSSH sends it.
func status(id uint32, code uint32) []byte {
	return pkt(fxpStatus, id, code, "message", "")
}

// step is a chunk of one direction, in the order the session sent it.
type step struct {
	client bool
	b      []byte
}

func c(bs ...[]byte) step { return step{client: true, b: join(bs)} }
func s(bs ...[]byte) step { return step{client: false, b: join(bs)} }

func join(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// observer is what Watcher and SCP have in common.
type observer interface {
	FromClient([]byte)
	FromServer([]byte)
	Close()
}

// feeding is one way to hand a session's steps to an observer.
type feeding struct {
	name string
	feed func(o observer, steps []step)
}

// streams returns the two directions of steps, concatenated.
func streams(steps []step) (client, server []byte) {
	for _, st := range steps {
		if st.client {
			client = append(client, st.b...)
		} else {
			server = append(server, st.b...)
		}
	}
	return client, server
}

// feedChunks feeds b to fn in chunks of size n (the last may be shorter),
// each a fresh copy so that retaining one would show.
func feedChunks(fn func([]byte), b []byte, n int) {
	for len(b) > 0 {
		k := min(n, len(b))
		chunk := append([]byte(nil), b[:k]...)
		fn(chunk)
		clear(chunk)
		b = b[k:]
	}
}

func send(o observer, client bool) func([]byte) {
	if client {
		return o.FromClient
	}
	return o.FromServer
}

// orderedFeedings keep the session's order between the directions and
// vary only the chunking: whole steps, and each step cut into chunks of
// every size up to 64 bytes (so every byte apart, and every packet header
// split everywhere), then of powers of two up to the longest step.
func orderedFeedings(steps []step) []feeding {
	fs := []feeding{
		{"steps", func(o observer, steps []step) {
			for _, st := range steps {
				send(o, st.client)(append([]byte(nil), st.b...))
			}
		}},
	}
	longest := 0
	for _, st := range steps {
		longest = max(longest, len(st.b))
	}
	for n := 1; n < longest; n = nextChunkSize(n) {
		fs = append(fs, feeding{fmt.Sprintf("chunks of %d", n), func(o observer, steps []step) {
			for _, st := range steps {
				feedChunks(send(o, st.client), st.b, n)
			}
		}})
	}
	return fs
}

// splitFeedings feed one whole direction before the other, each cut in two
// at every boundary: the most lag the observer can see between them.
func splitFeedings(steps []step, clientFirst bool) []feeding {
	client, server := streams(steps)
	var fs []feeding
	for k := 0; k <= max(len(client), len(server)); k++ {
		fs = append(fs, feeding{fmt.Sprintf("client first %v, split at %d", clientFirst, k), func(o observer, _ []step) {
			feedSplit := func(fn func([]byte), b []byte) {
				i := min(k, len(b))
				fn(append([]byte(nil), b[:i]...))
				fn(append([]byte(nil), b[i:]...))
			}
			if clientFirst {
				feedSplit(o.FromClient, client)
				feedSplit(o.FromServer, server)
			} else {
				feedSplit(o.FromServer, server)
				feedSplit(o.FromClient, client)
			}
		}})
	}
	return fs
}

// randomChunks feeds b in chunks of random sizes from 1 to max.
func randomChunks(r *rand.Rand, fn func([]byte), b []byte, maxChunk int) {
	for len(b) > 0 {
		k := min(1+r.IntN(maxChunk), len(b))
		fn(append([]byte(nil), b[:k]...))
		b = b[k:]
	}
}

// opsString formats ops one a line, for failure messages.
func opsString[T any](ops []T) string {
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "\t%s\n", fmtOp(op))
	}
	return b.String()
}

func fmtOp(op any) string {
	if o, ok := op.(Op); ok {
		perm := "nil"
		if o.Perm != nil {
			perm = fmt.Sprintf("%#o", *o.Perm)
		}
		return fmt.Sprintf("{Kind:%s Path:%q NewPath:%q Mode:%q Perm:%s Read:%d Written:%d Status:%s Aborted:%v Reason:%q}",
			o.Kind, o.Path, o.NewPath, o.Mode, perm, o.BytesRead, o.BytesWritten, o.Status, o.Aborted, o.Reason)
	}
	return fmt.Sprintf("%+v", op)
}

func p32(v uint32) *uint32 { return &v }

func nextChunkSize(n int) int {
	if n < 64 {
		return n + 1
	}
	return n * 2
}
