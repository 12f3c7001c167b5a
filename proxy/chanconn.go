package proxy

import (
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// chanConn lets an SSH channel carry an SSH connection: the inner server of
// a ProxyJump runs over the direct-tcpip channel the person opened.
// x/crypto/ssh uses only Read, Write and Close of a net.Conn once the
// connection is set up; deadlines are accepted and ignored, and the handshake
// deadline is enforced by closing the channel.
type chanConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *chanConn) LocalAddr() net.Addr              { return c.local }
func (c *chanConn) RemoteAddr() net.Addr             { return c.remote }
func (c *chanConn) SetDeadline(time.Time) error      { return nil }
func (c *chanConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chanConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*chanConn)(nil)
