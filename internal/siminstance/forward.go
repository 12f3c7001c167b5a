package siminstance

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Global requests and channel types of remote forwarding (RFC 4254 §7.1,
// §7.2) and agent forwarding (OpenSSH PROTOCOL.agent).
const (
	requestTCPIPForward       = "tcpip-forward"
	requestCancelTCPIPForward = "cancel-tcpip-forward"
	channelForwardedTCPIP     = "forwarded-tcpip"
	requestAgent              = "auth-agent-req@openssh.com"
	channelAgent              = "auth-agent@openssh.com"
)

// maxForwards bounds the remote forwards one connection may hold open.
const maxForwards = 16

// Payloads of remote forwarding (RFC 4254 §7.1, §7.2).
type (
	tcpipForwardMsg struct {
		BindAddr string
		BindPort uint32
	}
	tcpipForwardReply struct {
		Port uint32
	}
	forwardedTCPIPMsg struct {
		ConnectedAddr string
		ConnectedPort uint32
		OriginAddr    string
		OriginPort    uint32
	}
)

// forwards are the listeners of one connection's remote forwards.
type forwards struct {
	mu     sync.Mutex              // protects ls and closed
	ls     map[string]net.Listener // by "bind address:port" as the client names it
	closed bool                    // set by closeAll; no listener is added after
}

// handleGlobalRequests serves "tcpip-forward" and "cancel-tcpip-forward"
// (ssh -R) and refuses every other global request until the connection
// ends; a refused "keepalive@openssh.com" still proves the server alive,
// as with sshd.
func (c *conn) handleGlobalRequests(ctx context.Context, reqs <-chan *ssh.Request) {
	for req := range reqs {
		ok, payload := false, []byte(nil)
		switch req.Type {
		case requestTCPIPForward:
			ok, payload = c.startForward(ctx, req.Payload)
		case requestCancelTCPIPForward:
			ok = c.cancelForward(req.Payload)
		default:
			c.log.Debug("global_request_refused", zap.String("request_type", req.Type))
		}
		if req.WantReply {
			if err := req.Reply(ok, payload); err != nil {
				c.log.Debug("reply_failed", zap.Error(err))
			}
		}
	}
}

// forwardHost maps the bind address of a tcpip-forward to the loopback
// address to listen on. As sshd with "GatewayPorts no", every forward
// listens on loopback only: "" , "*", "0.0.0.0", "::" and "localhost" mean
// 127.0.0.1, a loopback IP means itself, anything else is refused.
func forwardHost(bind string) (string, bool) {
	switch bind {
	case "", "*", "0.0.0.0", "::", "localhost":
		return "127.0.0.1", true
	}
	ip := net.ParseIP(bind)
	return bind, ip != nil && ip.IsLoopback()
}

// startForward listens for a tcpip-forward request and reports whether it
// did, with the reply payload (the port, when the client asked for 0).
func (c *conn) startForward(ctx context.Context, payload []byte) (bool, []byte) {
	var msg tcpipForwardMsg
	if ssh.Unmarshal(payload, &msg) != nil || msg.BindPort > 65535 {
		return false, nil
	}
	host, ok := forwardHost(msg.BindAddr)
	if !ok {
		c.log.Info("forward_refused", zap.String("bind_addr", msg.BindAddr))
		return false, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.FormatUint(uint64(msg.BindPort), 10)))
	if err != nil {
		c.log.Info("forward_listen_failed", zap.Error(err))
		return false, nil
	}
	port := uint32(l.Addr().(*net.TCPAddr).Port)
	key := net.JoinHostPort(msg.BindAddr, strconv.FormatUint(uint64(port), 10))
	c.fwd.mu.Lock()
	if c.fwd.closed || len(c.fwd.ls) >= maxForwards || c.fwd.ls[key] != nil {
		c.fwd.mu.Unlock()
		l.Close()
		return false, nil
	}
	if c.fwd.ls == nil {
		c.fwd.ls = map[string]net.Listener{}
	}
	c.fwd.ls[key] = l
	c.fwd.mu.Unlock()
	c.log.Debug("forward_listening", zap.String("listen_addr", l.Addr().String()))
	c.wg.Go(func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			origin := nc.RemoteAddr().(*net.TCPAddr)
			open := forwardedTCPIPMsg{ConnectedAddr: msg.BindAddr, ConnectedPort: port, OriginAddr: origin.IP.String(), OriginPort: uint32(origin.Port)}
			c.wg.Go(func() { c.relayOpened(ctx, nc, channelForwardedTCPIP, ssh.Marshal(open)) })
		}
	})
	var reply []byte
	if msg.BindPort == 0 {
		reply = ssh.Marshal(tcpipForwardReply{Port: port})
	}
	return true, reply
}

// cancelForward closes the listener a cancel-tcpip-forward names and
// reports whether there was one.
func (c *conn) cancelForward(payload []byte) bool {
	var msg tcpipForwardMsg
	if ssh.Unmarshal(payload, &msg) != nil {
		return false
	}
	key := net.JoinHostPort(msg.BindAddr, strconv.FormatUint(uint64(msg.BindPort), 10))
	c.fwd.mu.Lock()
	l := c.fwd.ls[key]
	delete(c.fwd.ls, key)
	c.fwd.mu.Unlock()
	if l == nil {
		return false
	}
	return l.Close() == nil
}

// closeAll closes every forward's listener; later requests are refused.
func (f *forwards) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, l := range f.ls {
		l.Close()
	}
	clear(f.ls)
}

// relayOpened opens a channel of type typ towards the client for nc (a
// connection to a forward's or the agent's listener) and relays the two
// until both have sent EOF, either closes, or ctx ends.
func (c *conn) relayOpened(ctx context.Context, nc net.Conn, typ string, extra []byte) {
	defer nc.Close()
	hc, ok := nc.(halfCloser)
	if !ok {
		return
	}
	ch, reqs, err := c.sc.OpenChannel(typ, extra)
	if err != nil {
		c.log.Debug("channel_open_failed", zap.String("channel_type", typ), zap.Error(err))
		return
	}
	stop := context.AfterFunc(ctx, func() { ch.Close(); nc.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { ssh.DiscardRequests(reqs) })
	splice(ch, hc)
	ch.Close()
	wg.Wait()
}

// agentSocket is the SSH_AUTH_SOCK of a session whose client asked for
// agent forwarding: a Unix socket in a private folder, each connection to
// it relayed to the client's agent over an auth-agent@openssh.com channel.
type agentSocket struct {
	dir string
	l   net.Listener
}

// path returns the socket's path, the session's SSH_AUTH_SOCK.
func (a *agentSocket) path() string { return filepath.Join(a.dir, "agent.sock") }

// startAgent answers auth-agent-req@openssh.com: it listens on a new agent
// socket for the session, as sshd does, and reports whether it could.
func (s *session) startAgent(ctx context.Context) bool {
	if s.agent != nil || s.proc != nil {
		return false
	}
	dir, err := os.MkdirTemp("", "siminstance-agent-")
	if err != nil {
		s.log.Info("agent_socket_failed", zap.Error(err))
		return false
	}
	a := &agentSocket{dir: dir}
	if a.l, err = net.Listen("unix", a.path()); err != nil {
		os.RemoveAll(dir)
		s.log.Info("agent_socket_failed", zap.Error(err))
		return false
	}
	s.agent = a
	s.wg.Go(func() {
		for {
			nc, err := a.l.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.c.relayOpened(ctx, nc, channelAgent, nil) })
		}
	})
	return true
}

// closeAgent removes the session's agent socket, if any.
func (s *session) closeAgent() {
	if s.agent == nil {
		return
	}
	s.agent.l.Close()
	if err := os.RemoveAll(s.agent.dir); err != nil {
		s.log.Debug("agent_socket_removal_failed", zap.Error(fmt.Errorf("removing %s: %w", s.agent.dir, err)))
	}
}
