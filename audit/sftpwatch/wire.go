package sftpwatch

import (
	"encoding/binary"
	"strconv"
)

// SFTP packet types, draft-ietf-secsh-filexfer-02 §3 and §7.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFstat         = 8
	fxpSetstat       = 9
	fxpFsetstat      = 10
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpRemove        = 13
	fxpMkdir         = 14
	fxpRmdir         = 15
	fxpRealpath      = 16
	fxpStat          = 17
	fxpRename        = 18
	fxpReadlink      = 19
	fxpSymlink       = 20
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201
)

// sftpVersion is the only protocol version the Watcher parses; it is the one
// OpenSSH's sftp client and server speak.
const sftpVersion = 3

// SSH_FXF_* open flags, draft-ietf-secsh-filexfer-02 §6.3.
const (
	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfAppend = 0x04
	fxfCreat  = 0x08
	fxfTrunc  = 0x10
	fxfExcl   = 0x20
)

// SSH_FILEXFER_ATTR_* flags, draft-ietf-secsh-filexfer-02 §5.
const (
	attrSize        = 0x00000001
	attrUIDGID      = 0x00000002
	attrPermissions = 0x00000004
	attrACModTime   = 0x00000008
	attrExtended    = 0x80000000
)

// OpenSSH extension request names (PROTOCOL.sftp in OpenSSH's sources).
const (
	extPosixRename = "posix-rename@openssh.com"
	extHardlink    = "hardlink@openssh.com"
	extLsetstat    = "lsetstat@openssh.com"
	extCopyData    = "copy-data"
)

// fxEOF is the SSH_FX_EOF status code (draft §7).
const fxEOF = 1

// maxHandle is the longest handle a server may send (draft §3.2).
const maxHandle = 256

// statusNames names the status codes of draft-ietf-secsh-filexfer-02 §7
// (0–8) and, for servers that send them, the later drafts' codes (up to
// draft-13's 31).
var statusNames = [...]string{
	"ok", "eof", "no_such_file", "permission_denied", "failure",
	"bad_message", "no_connection", "connection_lost", "op_unsupported",
	"invalid_handle", "no_such_path", "file_already_exists",
	"write_protect", "no_media", "no_space_on_filesystem",
	"quota_exceeded", "unknown_principal", "lock_conflict",
	"dir_not_empty", "not_a_directory", "invalid_filename", "link_loop",
	"cannot_delete", "invalid_parameter", "file_is_a_directory",
	"byte_range_lock_conflict", "byte_range_lock_refused",
	"delete_pending", "file_corrupt", "owner_invalid", "group_invalid",
	"no_matching_byte_range_lock",
}

// statusName returns the snake_case name of an SFTP status code, or
// "status_N" for a code no draft defines.
func statusName(code uint32) string {
	if int64(code) < int64(len(statusNames)) {
		return statusNames[code]
	}
	return "status_" + strconv.FormatUint(uint64(code), 10)
}

// openMode describes SSH_FXF_* open flags as a comma-separated list in a
// fixed order: read, write, create, truncate, append, exclusive. Flags no
// draft-02 defines are left out; no flag at all gives "".
func openMode(pflags uint32) string {
	var b []byte
	add := func(bit uint32, name string) {
		if pflags&bit == 0 {
			return
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, name...)
	}
	add(fxfRead, "read")
	add(fxfWrite, "write")
	add(fxfCreat, "create")
	add(fxfTrunc, "truncate")
	add(fxfAppend, "append")
	add(fxfExcl, "exclusive")
	return string(b)
}

// reader decodes SSH wire types (RFC 4251 §5) from a buffered packet body.
// A read past the end sets bad and returns zero values, so that a parser can
// read a whole request and check bad once.
type reader struct {
	b   []byte
	off int
	bad bool
}

func (r *reader) u32() uint32 {
	if r.bad || len(r.b)-r.off < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if r.bad || len(r.b)-r.off < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// bytes returns the next string's contents, aliasing the packet buffer.
func (r *reader) bytes() []byte {
	n := r.u32()
	if r.bad || uint64(n) > uint64(len(r.b)-r.off) {
		r.bad = true
		return nil
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

func (r *reader) str() string { return string(r.bytes()) }

// attrs reads an ATTRS structure (draft §5) and returns the permissions it
// carries, if any.
func (r *reader) attrs() (perm uint32, ok bool) {
	flags := r.u32()
	if flags&attrSize != 0 {
		r.u64()
	}
	if flags&attrUIDGID != 0 {
		r.u64()
	}
	if flags&attrPermissions != 0 {
		perm, ok = r.u32(), true
	}
	if flags&attrACModTime != 0 {
		r.u64()
	}
	if flags&attrExtended != 0 {
		// Each pair takes at least 8 bytes, so a count larger than what is
		// left is malformed and the loop below stays bounded by the packet.
		n := r.u32()
		for i := uint32(0); i < n && !r.bad; i++ {
			r.bytes()
			r.bytes()
		}
	}
	return perm, ok && !r.bad
}
