package sftpwatch_test

import (
	"encoding/binary"
	"fmt"

	"bastion/audit/sftpwatch"
)

// packet builds an SFTP packet: a type and fields already encoded.
func packet(typ byte, fields ...[]byte) []byte {
	body := []byte{typ}
	for _, f := range fields {
		body = append(body, f...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func str(s string) []byte { return append(u32(uint32(len(s))), s...) }

// A splice hands the Watcher a copy of every chunk it forwards on an
// "sftp" subsystem channel, from the goroutine copying that direction.
func ExampleWatcher() {
	w := sftpwatch.New(func(op sftpwatch.Op) {
		fmt.Printf("%s %s mode=%s written=%d status=%s\n", op.Kind, op.Path, op.Mode, op.BytesWritten, op.Status)
	})
	w.FromClient(packet(1, u32(3))) // SSH_FXP_INIT
	w.FromServer(packet(2, u32(3))) // SSH_FXP_VERSION
	// SSH_FXP_OPEN of /tmp/notes.txt for write, create, truncate.
	w.FromClient(packet(3, u32(1), str("/tmp/notes.txt"), u32(0x1a), u32(0)))
	w.FromServer(packet(102, u32(1), str("h0"))) // SSH_FXP_HANDLE
	// An SSH_FXP_WRITE, split across two chunks, and its SSH_FXP_STATUS.
	write := packet(6, u32(2), str("h0"), u64(0), str("hello, world\n"))
	w.FromClient(write[:20])
	w.FromClient(write[20:])
	w.FromServer(packet(101, u32(2), u32(0), str(""), str("")))
	// SSH_FXP_CLOSE and its status.
	w.FromClient(packet(4, u32(3), str("h0")))
	w.FromServer(packet(101, u32(3), u32(0), str(""), str("")))
	// A removal the server refuses.
	w.FromClient(packet(13, u32(4), str("/etc/passwd")))
	w.FromServer(packet(101, u32(4), u32(3), str("Permission denied"), str("")))
	w.Close()
	// Output:
	// open /tmp/notes.txt mode=write,create,truncate written=0 status=ok
	// close /tmp/notes.txt mode=write,create,truncate written=13 status=ok
	// remove /etc/passwd mode= written=0 status=permission_denied
}

// For an "exec" request whose command is an scp sink or source, the splice
// hands an SCP the channel's bytes the same way.
func ExampleNewSCP() {
	s, ok := sftpwatch.NewSCP("scp -r -t /srv/www", func(op sftpwatch.SCPOp) {
		fmt.Printf("%s %s %s mode=%#o size=%d status=%s\n", op.Direction, op.Kind, op.Path, op.Mode, op.Size, op.Status)
	})
	if !ok {
		return
	}
	s.FromServer([]byte("\x00")) // the sink is ready
	s.FromClient([]byte("D0755 0 site\n"))
	s.FromServer([]byte("\x00"))
	s.FromClient([]byte("C0644 6 index.html\n"))
	s.FromServer([]byte("\x00"))
	s.FromClient([]byte("<html>\x00"))
	s.FromServer([]byte("\x00"))
	s.FromClient([]byte("E\n"))
	s.FromServer([]byte("\x00"))
	s.Close()
	// Output:
	// upload dir site mode=0755 size=0 status=ok
	// upload file site/index.html mode=0644 size=6 status=ok
}
