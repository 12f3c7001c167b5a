package siminstance

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// directTCPIPMsg is the extra data of a "direct-tcpip" channel open
// (RFC 4254 §7.2).
type directTCPIPMsg struct {
	DestAddr string
	DestPort uint32
	OrigAddr string
	OrigPort uint32
}

// halfCloser is a stream whose sending side can be closed on its own, as a
// TCP connection and an SSH channel can.
type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// handleDirectTCPIP dials the destination of a "direct-tcpip" channel and
// relays bytes both ways until both sides have sent EOF or either closes.
func (c *conn) handleDirectTCPIP(ctx context.Context, nch ssh.NewChannel) {
	var msg directTCPIPMsg
	if err := ssh.Unmarshal(nch.ExtraData(), &msg); err != nil || msg.DestPort > 65535 {
		c.reject(nch, ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(msg.DestAddr, strconv.FormatUint(uint64(msg.DestPort), 10))
	log := c.log.With(zap.String("channel_type", channelDirectTCPIP), zap.String("dest_addr", addr))

	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		log.Info("forward_dial_failed", zap.Error(err))
		c.reject(nch, ssh.ConnectionFailed, "connect to "+addr+" failed")
		return
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		c.reject(nch, ssh.ConnectionFailed, "connect to "+addr+" failed")
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		tc.Close()
		log.Debug("accept_failed", zap.Error(err))
		return
	}
	log.Debug("forward_opened")

	var wg sync.WaitGroup
	// No requests are defined for this channel type. reqs closes when the
	// channel does, by the client or with the connection; closing the TCP
	// side then unblocks the copier reading from it.
	wg.Go(func() {
		for req := range reqs {
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
		tc.Close()
	})
	splice(ch, tc)
	ch.Close()
	tc.Close()
	wg.Wait()
	log.Debug("forward_closed")
}

// splice copies a to b and b to a, passing each EOF on as CloseWrite, and
// returns when both directions have ended.
func splice(a, b halfCloser) {
	var wg sync.WaitGroup
	wg.Go(func() { copyHalf(b, a) })
	wg.Go(func() { copyHalf(a, b) })
	wg.Wait()
}

// copyHalf copies src to dst until EOF or an error, then closes dst for
// writing.
func copyHalf(dst, src halfCloser) {
	_, _ = io.Copy(dst, src)
	_ = dst.CloseWrite()
}

// reject refuses a channel open, logging a failure to say so.
func (c *conn) reject(nch ssh.NewChannel, reason ssh.RejectionReason, message string) {
	if err := nch.Reject(reason, message); err != nil && !errors.Is(err, io.EOF) {
		c.log.Debug("reject_failed", zap.Error(err))
	}
}
