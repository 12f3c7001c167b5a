package proxy

import (
	"bytes"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// maxIdentBytes bounds what is read while looking for the client's
// identification line: RFC 4253 §4.2 limits the line to 255 characters,
// CR LF included, and x/crypto reads no more than that either.
const maxIdentBytes = 255

// identConn hands x/crypto an identification exchange (RFC 4253 §4.2) that
// already took place: reads return the bytes read from the client first,
// and x/crypto's write of the server's identification line, already sent,
// is dropped. Both happen in the handshake goroutine before x/crypto
// starts its reader and writers, so the fields need no lock.
type identConn struct {
	net.Conn
	// replay is what was read from the client and not yet given to x/crypto.
	replay []byte
	// sent is the server's identification line as written, CR LF
	// included; nil once x/crypto's own write of it has been dropped.
	sent []byte
}

func (c *identConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *identConn) Write(p []byte) (int, error) {
	if c.sent != nil {
		sent := c.sent
		c.sent = nil
		if bytes.HasPrefix(p, sent) {
			n, err := c.Conn.Write(p[len(sent):])
			return n + len(sent), err
		}
	}
	return c.Conn.Write(p)
}

// exchangeIdent sends the server's identification line serverVersion on nc
// and reads the client's, which the client sends without waiting for ours
// and before its KEXINIT. It reads at most maxIdentBytes, and no longer than
// nc's deadline allows (for a channel, until it is closed). It returns the
// client's software version ("OpenSSH_9.2p1"; "" when no identification
// line came within those bounds) and the conn for x/crypto's handshake,
// which then sees the exchange as if it were its own: a client that sent
// garbage, too much or nothing fails exactly as it would have.
//
// The server's line goes first so that a client that does wait for it
// (RFC 4253 allows either order) is not kept waiting.
func exchangeIdent(nc net.Conn, serverVersion string) (net.Conn, string) {
	ic := &identConn{Conn: nc}
	line := []byte(serverVersion + "\r\n")
	if _, err := nc.Write(line); err != nil {
		// x/crypto writes the line again and fails as it would have.
		return ic, ""
	}
	ic.sent = line
	buf := make([]byte, 0, maxIdentBytes)
	for len(buf) < maxIdentBytes {
		n, err := nc.Read(buf[len(buf):maxIdentBytes])
		buf = buf[:len(buf)+n]
		if v, ok := clientSoftware(buf); ok {
			ic.replay = buf
			return ic, v
		}
		if err != nil {
			break
		}
	}
	ic.replay = buf
	return ic, ""
}

// clientSoftware finds the identification line in what the client has sent
// so far, skipping other lines as x/crypto does, and returns its
// softwareversion field ("SSH-protoversion-softwareversion SP comments").
// ok is false while no complete identification line is there.
func clientSoftware(b []byte) (version string, ok bool) {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return "", false
		}
		line := strings.TrimSuffix(string(b[:i]), "\r")
		b = b[i+1:]
		if !strings.HasPrefix(line, "SSH-") {
			continue
		}
		line, _, _ = strings.Cut(line, " ")
		_, soft, _ := strings.Cut(line[len("SSH-"):], "-")
		return soft, true
	}
}

// isOpenSSHWithGCM reports whether the software version is OpenSSH 6.2 or
// later (including OpenSSH for Windows), which has AES-GCM.
func isOpenSSHWithGCM(software string) bool {
	v, ok := strings.CutPrefix(software, "OpenSSH_")
	if !ok {
		return false
	}
	v = strings.TrimPrefix(v, "for_Windows_")
	majorS, rest, _ := strings.Cut(v, ".")
	major, err := strconv.Atoi(majorS)
	if err != nil {
		return false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	minor, _ := strconv.Atoi(rest[:end])
	return major > 6 || major == 6 && minor >= 2
}

// serverHandshake runs the server side of an SSH handshake on nc with cfg.
// When the configuration names no ciphers, the offer is chosen from the
// client's identification line (DefaultServerCiphers); cfg.Ciphers is set
// to it. nc's deadline, or closing nc, bounds the handshake as before.
func (s *Server) serverHandshake(nc net.Conn, cfg *ssh.ServerConfig) (*ssh.ServerConn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = "SSH-2.0-bastion"
	}
	ic, software := exchangeIdent(nc, cfg.ServerVersion)
	if len(s.Ciphers) == 0 {
		cfg.Ciphers = DefaultServerCiphers(software)
	}
	return ssh.NewServerConn(ic, cfg)
}
