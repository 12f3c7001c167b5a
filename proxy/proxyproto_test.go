package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// oneConnListener hands out one connection, then reports closed.
type oneConnListener struct {
	c    net.Conn
	done bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.done {
		return nil, net.ErrClosed
	}
	l.done = true
	return l.c, nil
}
func (l *oneConnListener) Close() error { return nil }
func (l *oneConnListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
}

// pipeFrom returns a connection from the address from whose peer has sent
// data and closed.
func pipeFrom(from string, data []byte) net.Conn {
	return &bytesConn{r: bytes.NewReader(data), remote: &net.TCPAddr{IP: net.ParseIP(from), Port: 5555}}
}

// bytesConn is a net.Conn that reads from a fixed input.
type bytesConn struct {
	r      *bytes.Reader
	remote net.Addr
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 2222} }
func (c *bytesConn) RemoteAddr() net.Addr             { return c.remote }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }

// readAll accepts the one connection and reads it to its end.
func readAll(t testing.TB, trusted []string, required bool, conn net.Conn) (net.Conn, []byte, error) {
	l, err := ProxyProtocolListener(&oneConnListener{c: conn}, trusted, required, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	data, err := io.ReadAll(c)
	return c, data, err
}

func TestProxyProtocolListener(t *testing.T) {
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4242}
	dst := &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 2222}
	header := func(v byte) []byte {
		var b bytes.Buffer
		proxyproto.HeaderProxyFromAddrs(v, src, dst).WriteTo(&b)
		return b.Bytes()
	}
	payload := []byte("SSH-2.0-OpenSSH_9.2\r\n")
	tests := []struct {
		name      string
		from      string
		data      []byte
		required  bool
		wantAddr  string // RemoteAddr; "" = the peer's own
		wantProxy bool
		wantErr   bool
	}{
		{name: "trusted v2", from: "10.0.0.9", data: append(header(2), payload...), wantAddr: "203.0.113.7:4242", wantProxy: true},
		{name: "trusted v1", from: "10.0.0.9", data: append(header(1), payload...), wantAddr: "203.0.113.7:4242", wantProxy: true},
		{name: "trusted without header", from: "10.0.0.9", data: payload},
		{name: "trusted without header, required", from: "10.0.0.9", data: payload, required: true, wantErr: true},
		{name: "untrusted with header", from: "192.0.2.1", data: append(header(2), payload...), wantErr: true},
		{name: "untrusted without header", from: "192.0.2.1", data: payload},
		{name: "malformed v2", from: "10.0.0.9", data: append(header(2)[:14], 0xff, 0xff), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, data, err := readAll(t, []string{"10.0.0.0/24"}, tc.required, pipeFrom(tc.from, tc.data))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %q, nil; want an error", data)
				}
				return
			}
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(data, payload) {
				t.Errorf("payload: got %q, want %q", data, payload)
			}
			want := tc.wantAddr
			if want == "" {
				want = tc.from + ":5555"
			}
			if got := c.RemoteAddr().String(); got != want {
				t.Errorf("RemoteAddr: got %s, want %s", got, want)
			}
			pa := c.(interface{ ProxyAddr() net.Addr }).ProxyAddr()
			if (pa != nil) != tc.wantProxy {
				t.Errorf("ProxyAddr: got %v, want set %v", pa, tc.wantProxy)
			}
		})
	}
}

// FuzzProxyProtocol feeds arbitrary bytes to the PROXY protocol listener
// from a trusted address: it must never panic or hang, and whatever it
// passes on must be a suffix of the input.
func FuzzProxyProtocol(f *testing.F) {
	var v1, v2 bytes.Buffer
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4242}
	dst := &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 2222}
	proxyproto.HeaderProxyFromAddrs(1, src, dst).WriteTo(&v1)
	proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(&v2)
	f.Add(append(v1.Bytes(), "SSH-2.0-x\r\n"...))
	f.Add(append(v2.Bytes(), "SSH-2.0-x\r\n"...))
	f.Add([]byte("PROXY TCP6 ::1 ::1 1 2\r\n"))
	f.Add([]byte("SSH-2.0-x\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, got, err := readAll(t, []string{"10.0.0.0/24"}, false, pipeFrom("10.0.0.9", data))
		if err == nil && !bytes.HasSuffix(data, got) {
			t.Errorf("passed on %q, not a suffix of the input %q", got, data)
		}
	})
}
