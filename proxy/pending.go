package proxy

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
)

// errShed is what pendingJump.accept returns for a channel shed before it
// was accepted.
var errShed = errors.New("shed for a newcomer")

// pendingJump is a ProxyJump channel's place under the limits, taken when
// the channel is opened: one of its connection's channels
// (Server.holdChannel), and, until its inner login completes, one of its
// address's unauthenticated slots. Shedding that slot closes the channel.
type pendingJump struct {
	c    *conn
	slot *unauthSlot

	mu sync.Mutex // protects ch and shed
	// ch is the accepted channel; nil before.
	ch   ssh.Channel
	shed bool
}

// holdJump takes a place for a new direct-tcpip channel, or refuses the
// channel with the reason and reports false.
func (c *conn) holdJump(nc ssh.NewChannel) (*pendingJump, bool) {
	if r := c.srv.holdChannel(c); r != nil {
		c.refuseChannel(nc, r.limit, r.msg)
		return nil, false
	}
	p := &pendingJump{c: c}
	slot, why := c.srv.holdUnauth(c.host, p.onShed)
	if slot == nil {
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

// accept accepts the channel unless it was shed meanwhile.
func (p *pendingJump) accept(nc ssh.NewChannel) (ssh.Channel, <-chan *ssh.Request, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shed {
		nc.Reject(ssh.ResourceShortage, "bastion: the bastion is busy with other logins; try again")
		return nil, nil, errShed
	}
	ch, reqs, err := nc.Accept()
	if err == nil {
		p.ch = ch
	}
	return ch, reqs, err
}

// onShed closes the channel (or has accept refuse it) when a newcomer
// takes its unauthenticated slot.
func (p *pendingJump) onShed(reason string) {
	p.c.limitHit("max_unauthenticated", reason)
	p.c.srv.Metrics.UnauthenticatedShed()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shed = true
	if p.ch != nil {
		p.ch.Close()
	}
}

// loggedIn gives the unauthenticated slot back: the inner login is over,
// one way or the other.
func (p *pendingJump) loggedIn() { p.slot.release() }

// release gives back everything the channel held.
func (p *pendingJump) release() {
	p.slot.release()
	p.c.srv.releaseChannel(p.c)
}
