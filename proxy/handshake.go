package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/metrics"
)

// handshakeError is why a connection's SSH handshake failed: a reason
// from the fixed set of metrics.Handshake* labels and x/crypto's error text (which, for a failed
// negotiation, lists what each side offered).
type handshakeError struct {
	reason string
	err    error
}

// Error returns the short fixed sentence used as the connection_closed
// reason, such as "handshake_failed: no common cipher".
func (f *handshakeError) Error() string {
	return "handshake_failed: " + strings.ReplaceAll(f.reason, "_", " ")
}

func (f *handshakeError) Unwrap() error { return f.err }

// negotiation reports whether the peer shares no algorithm of some kind
// with the bastion.
func (f *handshakeError) negotiation() bool { return strings.HasPrefix(f.reason, "no_common_") }

// detail returns the error text, clipped (its algorithm lists come from
// the peer). For a failed negotiation the peer's list comes first, so that
// the clip keeps it rather than the bastion's own, which is known.
func (f *handshakeError) detail() string {
	var neg *ssh.AlgorithmNegotiationError
	if errors.As(f.err, &neg) {
		return audit.Clip("no common algorithm for " + neg.What + "; peer offered: " + strings.Join(neg.RequestedAlgorithms, ",") +
			"; we offered: " + strings.Join(neg.SupportedAlgorithms, ","))
	}
	return audit.Clip(f.err.Error())
}

// classifyHandshake names why a handshake failed with err. authRejected is
// how many keys the connection had refused.
func classifyHandshake(err error, authRejected int) *handshakeError {
	f := &handshakeError{reason: metrics.HandshakeOther, err: err}
	var neg *ssh.AlgorithmNegotiationError
	var authErr *ssh.ServerAuthError
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.As(err, &neg):
		switch {
		case neg.What == "key exchange":
			f.reason = metrics.HandshakeNoCommonKex
		case neg.What == "host key":
			f.reason = metrics.HandshakeNoCommonHostKey
		case strings.HasSuffix(neg.What, "cipher"):
			f.reason = metrics.HandshakeNoCommonCipher
		case strings.HasSuffix(neg.What, "MAC"):
			f.reason = metrics.HandshakeNoCommonMAC
		}
	case authRejected > 0:
		f.reason = metrics.HandshakeAuthFailed
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		f.reason = metrics.HandshakeTimeout
	case errors.As(err, &authErr) && len(authErr.Errors) > 0:
		f.reason = metrics.HandshakeAuthFailed
	case errors.As(err, &authErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed), strings.Contains(msg, "ssh: disconnect"):
		f.reason = metrics.HandshakeClosed
	case strings.Contains(msg, "parse error"), strings.Contains(msg, "unexpected message"),
		strings.Contains(msg, "version"), strings.Contains(msg, "packet"), strings.Contains(msg, "overflow"),
		strings.Contains(msg, "MAC failure"), strings.Contains(msg, "padding"):
		f.reason = metrics.HandshakeProtocolError
	}
	return f
}

// handshakeLogInterval is how often one reason may be logged at info
// level; failures in between are counted and reported with the next line.
const handshakeLogInterval = time.Second

// handshakeLog rate-limits the info lines about failed handshakes: at most
// one per reason per handshakeLogInterval. Its size is bounded by the fixed
// set of reasons. The zero value is ready to use.
type handshakeLog struct {
	mu         sync.Mutex // protects last and suppressed
	last       map[string]time.Time
	suppressed map[string]int
}

// allow reports whether a line for reason may be written now and, if so,
// how many were suppressed since the last one.
func (h *handshakeLog) allow(reason string, now time.Time) (ok bool, suppressed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil {
		h.last, h.suppressed = make(map[string]time.Time), make(map[string]int)
	}
	if t, seen := h.last[reason]; seen && now.Sub(t) < handshakeLogInterval {
		h.suppressed[reason]++
		return false, 0
	}
	h.last[reason] = now
	n := h.suppressed[reason]
	delete(h.suppressed, reason)
	return true, n
}

// handshakeFailed counts, and logs at a bounded rate, a failed handshake
// on leg ("outer", or "inner" for a ProxyJump target's). Failures worth an
// operator's eye (nothing in common, protocol errors, timeouts) are logged
// at info level; a peer that just went away, or failed to authenticate
// (audited on its own), at debug. Inner handshakes are counted only when
// nothing was in common: their other failures are the link's own
// (policy, upstream) and are reported there.
func (s *Server) handshakeFailed(log *zap.Logger, leg string, f *handshakeError) {
	if leg == "inner" && !f.negotiation() {
		log.Debug("inner_handshake_failed", zap.String("error", f.detail()))
		return
	}
	s.Metrics.HandshakeFailure(f.reason)
	if f.reason == metrics.HandshakeClosed || f.reason == metrics.HandshakeAuthFailed {
		log.Debug("handshake_failed", zap.String("leg", leg), zap.String("reason", f.reason), zap.String("error", f.detail()))
		return
	}
	ok, suppressed := s.hsLog.allow(f.reason, time.Now())
	if !ok {
		return
	}
	log.Info("handshake_failed", zap.String("leg", leg), zap.String("reason", f.reason),
		zap.String("error", f.detail()), zap.Int("suppressed", suppressed))
}
