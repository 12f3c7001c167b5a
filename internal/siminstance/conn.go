package siminstance

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Channel types served (RFC 4254 §6.1, §7.2).
const (
	channelSession     = "session"
	channelDirectTCPIP = "direct-tcpip"
)

// errConnClosed is the cause of the cancellation of a connection's context
// once the connection is gone.
var errConnClosed = errors.New("siminstance: connection closed")

// conn is one authenticated SSH connection.
type conn struct {
	inst *Instance
	sc   *ssh.ServerConn
	log  *zap.Logger
}

// handleConn runs the handshake on nc, then serves its channels until the
// connection ends. It returns after every goroutine it started has returned.
func (i *Instance) handleConn(nc net.Conn, id uint64) {
	defer nc.Close()
	// x/crypto/ssh knows nothing of contexts: closing the socket is what
	// ends the handshake and every channel.
	stop := context.AfterFunc(i.ctx, func() { nc.Close() })
	defer stop()

	log := i.log.With(zap.Uint64("conn_id", id), zap.String("remote_addr", nc.RemoteAddr().String()))
	if err := nc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		log.Debug("handshake_failed", zap.Error(err))
		return
	}
	sc, chans, reqs, err := ssh.NewServerConn(nc, i.cfg)
	if err != nil {
		log.Debug("handshake_failed", zap.Error(err))
		return
	}
	defer sc.Close()
	if err := nc.SetDeadline(time.Time{}); err != nil {
		log.Debug("clearing_deadline_failed", zap.Error(err))
		return
	}
	log = log.With(zap.String("user", sc.User()), zap.String("key_fingerprint", sc.Permissions.Extensions[extFingerprint]))
	log.Info("login")

	ctx, cancel := context.WithCancelCause(i.ctx)
	c := &conn{inst: i, sc: sc, log: log}
	var wg sync.WaitGroup
	wg.Go(func() { c.handleGlobalRequests(reqs) })
	for nch := range chans {
		switch nch.ChannelType() {
		case channelSession:
			wg.Go(func() { c.handleSession(ctx, nch) })
		case channelDirectTCPIP:
			wg.Go(func() { c.handleDirectTCPIP(ctx, nch) })
		default:
			log.Debug("channel_refused", zap.String("channel_type", nch.ChannelType()))
			c.reject(nch, ssh.UnknownChannelType, "unknown channel type")
		}
	}
	// chans is closed: the transport is gone. Kill what still runs.
	cancel(errConnClosed)
	sc.Close()
	wg.Wait()
	log.Info("logout")
}

// handleGlobalRequests refuses every global request until the connection
// ends. "tcpip-forward" (ssh -R) is not supported; a refused
// "keepalive@openssh.com" still proves the server alive, as with sshd.
func (c *conn) handleGlobalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		c.log.Debug("global_request_refused", zap.String("request_type", req.Type))
		if req.WantReply {
			if err := req.Reply(false, nil); err != nil {
				c.log.Debug("reply_failed", zap.Error(err))
			}
		}
	}
}
