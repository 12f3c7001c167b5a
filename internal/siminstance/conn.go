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
	// wg counts the connection's goroutines; handleConn waits for it.
	wg  *sync.WaitGroup
	fwd forwards
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
	var wg sync.WaitGroup
	c := &conn{inst: i, sc: sc, log: log, wg: &wg}
	wg.Go(func() { c.handleGlobalRequests(ctx, reqs) })
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
	c.fwd.closeAll()
	wg.Wait()
	log.Info("logout")
}
