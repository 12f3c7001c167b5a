package proxy

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
)

// errShed is what pendingJump.accept returns for a channel shed before it
// was accepted.
var errShed = errors.New("shed for a newcomer")

// pendingJump is a ProxyJump channel's place under the limits, taken when
// the channel is opened: one of its connection's channels
// (Server.holdChannel), and, until its inner login completes, one of its
// address's unauthenticated slots. Shedding that slot cancels ctx, which
// closes the channel (or has accept refuse it).
//
// Every method but onShed is called on the channel's own goroutine.
type pendingJump struct {
	c    *conn
	slot *unauthSlot
	// ctx is cancelled, with the reason, when the slot is shed, and when
	// the channel's place is given back.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// stopClose unregisters the close of the accepted channel on ctx.
	stopClose func() bool
}

// holdJump takes a place for a new direct-tcpip channel, or refuses the
// channel with the reason and reports false.
func (c *conn) holdJump(nc ssh.NewChannel) (*pendingJump, bool) {
	if r := c.srv.holdChannel(c); r != nil {
		c.refuseChannel(nc, r.limit, r.msg)
		return nil, false
	}
	// ctx exists before the slot, which may be shed at once.
	p := &pendingJump{c: c}
	p.ctx, p.cancel = context.WithCancelCause(c.ctx)
	slot, why := c.srv.holdUnauth(c.host, p.onShed)
	if slot == nil {
		p.cancel(nil)
		c.srv.releaseChannel(c)
		c.refuseChannel(nc, "max_unauthenticated", why)
		return nil, false
	}
	p.slot = slot
	return p, true
}

// holdOwn takes a place for a session channel on the bastion itself (which
// may become a menu link), or refuses the channel and reports false.
func (c *conn) holdOwn(nc ssh.NewChannel) bool {
	if r := c.srv.holdChannel(c); r != nil {
		c.refuseChannel(nc, r.limit, r.msg)
		return false
	}
	return true
}

// channelRefusalsAudited is how many channel opens refused by a limit are
// audited one by one per connection; the rest are counted, and their number
// is audited when the connection's channels end (auditRefusals), so that a
// client opening channels in a loop cannot fill the audit log.
const channelRefusalsAudited = 10

// refuseChannel refuses a channel open for a limit: the person reads msg
// as the open failure's reason (ssh prints "open failed: …"), and the
// refusal is counted and, up to channelRefusalsAudited, audited.
func (c *conn) refuseChannel(nc ssh.NewChannel, limit, msg string) {
	if c.chanRefusals.Add(1) <= channelRefusalsAudited {
		c.limitHit(limit, msg)
	} else {
		c.srv.Metrics.LimitHit(limit)
	}
	nc.Reject(ssh.ResourceShortage, "bastion: "+msg)
}

// auditRefusals audits, once the connection opens no more channels, how
// many channel refusals were not audited one by one.
func (c *conn) auditRefusals() {
	if n := c.chanRefusals.Load() - channelRefusalsAudited; n > 0 {
		c.audit(audit.Event{Type: audit.TypeLimitExceeded, Limit: "channel_refusals",
			Reason: fmt.Sprintf("%d more channel opens were refused by limits without an event each", n)})
	}
}

// accept accepts the channel unless it was shed meanwhile; once accepted,
// the channel is closed if it is shed later.
func (p *pendingJump) accept(nc ssh.NewChannel) (ssh.Channel, <-chan *ssh.Request, error) {
	if p.ctx.Err() != nil {
		nc.Reject(ssh.ResourceShortage, "bastion: the bastion is busy with other logins; try again")
		return nil, nil, errShed
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return nil, nil, err
	}
	// Closing writes to the connection and may block: it runs on its
	// own goroutine, not on the newcomer's that sheds.
	p.stopClose = context.AfterFunc(p.ctx, func() { ch.Close() })
	return ch, reqs, nil
}

// onShed closes the channel when a newcomer takes its unauthenticated
// slot. It runs on the newcomer's goroutine and does not block.
func (p *pendingJump) onShed(reason string) {
	p.c.limitHit("max_unauthenticated", reason)
	p.c.srv.Metrics.UnauthenticatedShed()
	p.cancel(errors.New(reason))
}

// loggedIn gives the unauthenticated slot back: the inner login is over,
// one way or the other, and can no longer be shed.
func (p *pendingJump) loggedIn() {
	p.slot.release()
	if p.stopClose != nil {
		p.stopClose()
	}
}

// release gives back everything the channel held.
func (p *pendingJump) release() {
	p.slot.release()
	if p.stopClose != nil {
		p.stopClose()
	}
	p.cancel(nil)
	p.c.srv.releaseChannel(p.c)
}
