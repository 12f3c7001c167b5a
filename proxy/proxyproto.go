package proxy

import (
	"fmt"
	"net"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// ProxyProtocolListener wraps l so that connections from the trusted CIDR
// blocks may start with a PROXY protocol header (v1 or v2), whose source
// address then stands for the person's: in audit events, throttling and
// certificates' source-address. A header from any other address, or a
// malformed one, ends the connection before the SSH handshake. With
// required, trusted connections without a header are refused too.
// headerTimeout bounds the wait for the header.
//
// The header parsing is github.com/pires/go-proxyproto's: a well-kept
// implementation of both versions, rather than one of our own.
func ProxyProtocolListener(l net.Listener, trusted []string, required bool, headerTimeout time.Duration) (net.Listener, error) {
	matched := proxyproto.USE
	if required {
		matched = proxyproto.REQUIRE
	}
	policy, err := proxyproto.PolicyFromRanges(trusted, matched, proxyproto.REJECT)
	if err != nil {
		return nil, fmt.Errorf("proxy protocol trusted networks: %w", err)
	}
	return &ppListener{Listener: &proxyproto.Listener{Listener: l, ConnPolicy: policy, ReadHeaderTimeout: headerTimeout}}, nil
}

// ppListener returns ppConns, which tell the audit log the balancer's
// address as well as the person's.
type ppListener struct{ net.Listener }

func (l *ppListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if pc, ok := c.(*proxyproto.Conn); ok {
		return &ppConn{Conn: pc}, nil
	}
	return c, nil
}

// ppConn is a connection that may have come through a load balancer.
type ppConn struct{ *proxyproto.Conn }

// ProxyAddr returns the load balancer's address when a PROXY header gave
// the connection its RemoteAddr, else nil. Like RemoteAddr, it waits for
// the header.
func (c *ppConn) ProxyAddr() net.Addr {
	raw := c.Conn.Raw().RemoteAddr()
	if c.Conn.RemoteAddr().String() == raw.String() {
		return nil
	}
	return raw
}
