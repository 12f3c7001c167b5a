package proxy

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Channel and request types the splice and its guard know by name
// (RFC 4254 and OpenSSH's PROTOCOL file).
const (
	chanSession             = "session"
	chanDirectTCPIP         = "direct-tcpip"
	chanForwardedTCPIP      = "forwarded-tcpip"
	chanDirectStreamlocal   = "direct-streamlocal@openssh.com"
	chanForwardedStreamloc  = "forwarded-streamlocal@openssh.com"
	chanAgent               = "auth-agent@openssh.com"
	chanX11                 = "x11"
	reqExitStatus           = "exit-status"
	reqExitSignal           = "exit-signal"
	reqShell                = "shell"
	reqExec                 = "exec"
	reqSubsystem            = "subsystem"
	reqAgent                = "auth-agent-req@openssh.com"
	reqPTY                  = "pty-req"
	reqX11                  = "x11-req"
	reqTCPIPForward         = "tcpip-forward"
	reqCancelTCPIPForward   = "cancel-tcpip-forward"
	reqStreamlocalForward   = "streamlocal-forward@openssh.com"
	reqCancelStreamlocalFwd = "cancel-streamlocal-forward@openssh.com"
	reqKeepalive            = "keepalive@openssh.com"
	reqNoMoreSessions       = "no-more-sessions@openssh.com"
	reqHostkeys             = "hostkeys-00@openssh.com"
)

// direction says which way something crosses the splice.
type direction int

const (
	// fromPerson is the person's side (the inner server, or the outer
	// connection in direct mode) towards the instance.
	fromPerson direction = iota
	// fromUpstream is the instance towards the person.
	fromUpstream
)

func (d direction) String() string {
	if d == fromPerson {
		return "from_person"
	}
	return "from_upstream"
}

// guard decides what may cross a splice. Policy is one guard; audit and
// recording attach here too. A guard must be safe for concurrent use: the
// splice calls it from one goroutine per channel.
type guard interface {
	// allowChannel reports whether a channel of type typ opened from dir may
	// be opened on the other side; msg is the refusal shown to the person.
	allowChannel(dir direction, typ string, extra []byte) (ok bool, msg string)
	// allowRequest reports whether a request on a channel of type chanType
	// may be forwarded; msg is written to the person's stderr when not.
	allowRequest(dir direction, chanType string, req *ssh.Request) (ok bool, msg string)
	// allowGlobal reports whether a global request may be forwarded.
	allowGlobal(dir direction, req *ssh.Request) bool
	// observe is called for a channel that is open on both sides; the
	// observer it returns (nil for none) sees that channel's traffic.
	// person is the person's end of the channel, for messages.
	observe(dir direction, typ string, extra []byte, person ssh.Channel) channelObserver
}

// channelObserver watches one spliced channel for audit, recording and
// metrics. It must not block and must not retain the slices it is given.
// request runs on the request goroutine of its direction and data on the
// copy goroutines, concurrently; closed runs once, after all the others
// have returned.
type channelObserver interface {
	// request sees a request that the guard allowed, before it is sent
	// on. A non-empty result refuses a shell, exec or subsystem request
	// after all, with that message (a recording that cannot be made).
	request(dir direction, req *ssh.Request) (refuse string)
	// data sees payload copied in direction dir; ext marks extended data
	// (stderr).
	data(dir direction, ext bool, p []byte)
	// closed is told the channel's payload byte counts in each direction.
	closed(up, down int64)
}

// peer is one SSH connection taking part in a splice, with the streams of
// channels and requests it receives. Both streams must be drained.
type peer struct {
	conn  ssh.Conn
	chans <-chan ssh.NewChannel
	reqs  <-chan *ssh.Request
}

// How long a connection's channels may go on passing data after that
// connection has gone, before the splice closes both sides: the instance's
// last output may still be on its way to a slow person, while what a
// vanished person sent can only be waiting on the instance's window.
const (
	upstreamGoneGrace = 5 * time.Second
	personGoneGrace   = time.Second
)

// splice joins the person's connection and the upstream one: every channel
// and global request that either side opens or sends is offered to the
// guard and, if allowed, opened or sent on the other side, until both
// connections are gone. It closes both connections before it returns.
//
// When either connection ends, the other is closed too: a person whose
// instance went away is disconnected, and an instance is never left with a
// session nobody is attached to.
func splice(ctx context.Context, person, up peer, g guard, log *zap.Logger) {
	var wg sync.WaitGroup
	closeBoth := func() {
		person.conn.Close()
		up.conn.Close()
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()

	// One loop per side takes both its channel opens and its global
	// requests: two goroutines per splice rather than four. A global
	// request waits for the other side's reply in the loop, which keeps
	// the side's requests in order (as before) and delays that side's
	// next channel open by one round trip at most; channel opens go to
	// goroutines of their own at once.
	pump := func(dir direction, from, to peer) {
		defer wg.Done()
		var chwg sync.WaitGroup
		chans, reqs := from.chans, from.reqs
		for chans != nil {
			select {
			case nc, ok := <-chans:
				if !ok {
					chans = nil
					continue
				}
				chwg.Add(1)
				go func() {
					defer chwg.Done()
					spliceChannel(dir, nc, to.conn, g, log)
				}()
			case req, ok := <-reqs:
				if !ok {
					reqs = nil
					continue
				}
				forwardGlobal(dir, req, to.conn, g)
			}
		}
		// from's channel stream ended: its connection is gone. Its
		// channels get a grace period to pass on what they had
		// received (the last output, an exit status); a copy blocked
		// on the other side's window would wait forever, so then both
		// connections are closed, which ends every channel.
		drained := make(chan struct{})
		go func() {
			chwg.Wait()
			close(drained)
		}()
		grace := upstreamGoneGrace
		if dir == fromPerson {
			grace = personGoneGrace
		}
		t := time.NewTimer(grace)
		select {
		case <-drained:
		case <-t.C:
		}
		t.Stop()
		closeBoth()
		<-drained
		// The requests of a closed connection end too; drain what is
		// left so that its reader never blocks.
		if reqs != nil {
			for req := range reqs {
				if req.WantReply {
					req.Reply(false, nil)
				}
			}
		}
	}
	wg.Add(2)
	go pump(fromPerson, person, up)
	// The caller's goroutine pumps the upstream side rather than wait.
	pump(fromUpstream, up, person)
	wg.Wait()
}

// forwardGlobal sends req on to and relays the reply, or refuses it.
func forwardGlobal(dir direction, req *ssh.Request, to ssh.Conn, g guard) {
	if !g.allowGlobal(dir, req) {
		if req.WantReply {
			req.Reply(false, nil)
		}
		return
	}
	ok, payload, err := to.SendRequest(req.Type, req.WantReply, req.Payload)
	if err != nil {
		ok, payload = false, nil
	}
	if req.WantReply {
		req.Reply(ok, payload)
	}
}

// spliceChannel opens nc's twin on to, accepts nc and copies everything
// between the two until both are closed.
func spliceChannel(dir direction, nc ssh.NewChannel, to ssh.Conn, g guard, log *zap.Logger) {
	typ := nc.ChannelType()
	if ok, msg := g.allowChannel(dir, typ, nc.ExtraData()); !ok {
		nc.Reject(ssh.Prohibited, msg)
		return
	}
	dst, dstReqs, err := to.OpenChannel(typ, nc.ExtraData())
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			nc.Reject(oce.Reason, oce.Message)
		} else {
			nc.Reject(ssh.ConnectionFailed, "bastion: could not open the channel upstream")
		}
		log.Debug("channel_open_failed", zap.String("type", typ), zap.Stringer("dir", dir), zap.Error(err))
		return
	}
	src, srcReqs, err := nc.Accept()
	if err != nil {
		dst.Close()
		go ssh.DiscardRequests(dstReqs)
		return
	}
	s := &channelSplice{typ: typ, g: g, log: log}
	if dir == fromPerson {
		src = personSide(src)
		s.obs = g.observe(dir, typ, nc.ExtraData(), src)
		s.pipe(src, srcReqs, dst, dstReqs)
	} else {
		dst = personSide(dst)
		s.obs = g.observe(dir, typ, nc.ExtraData(), dst)
		s.pipe(dst, dstReqs, src, srcReqs)
	}
}

// channelSplice is the splice of one channel: its type, the guard that
// rules its requests, the observer that sees them and its bytes (nil for
// none), and the log that receives relay failures.
type channelSplice struct {
	typ string
	g   guard
	obs channelObserver
	log *zap.Logger
}

// pipe copies data, extended data, requests, EOF and close between
// the person's end of a channel and the upstream end, in both directions.
//
// Ordering (RFC 4254 §5.3, §6.10): within one direction, data and stderr
// are copied until EOF (or close), and only then is EOF sent on; an
// exit-status or exit-signal is held until the data before it has been
// copied, so the person never sees a command end before its last output.
// A side's close is passed on once that side's data and requests are done.
//
// On a session channel the person gets data, then exit-status or
// exit-signal, then EOF, then close, in whichever order the instance sent
// them (OpenSSH's sshd sends EOF before exit-status): the EOF towards the
// person is held until the exit status has been relayed, or the instance
// closed the channel without one. A client may answer EOF with CLOSE at
// once (PuTTY does, when its own side is done), and x/crypto then refuses
// to send anything more on the channel: a status relayed after the EOF
// would be lost.
//
// s.obs, if non-nil, sees every request and byte, and is told when the
// channel is done.
func (s *channelSplice) pipe(person ssh.Channel, personReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request) {
	// Extended data is stderr, which only session channels carry (RFC
	// 4254 §5.2); other channels skip its copy loops.
	stderr := s.typ == chanSession
	toUp := newCopier(person, up, fromPerson, s.obs, stderr)
	toPerson := newCopier(up, person, fromUpstream, s.obs, stderr)
	// exited is closed once the instance's exit status is on its way to
	// the person, or its requests have ended (it closed the channel).
	exited := make(chan struct{})
	exit := sync.OnceFunc(func() { close(exited) })
	if s.typ == chanSession {
		toPerson.hold = exited
	}
	personEnd := &channelEnd{Channel: person}
	upEnd := &channelEnd{Channel: up}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); toUp.run() }()
	go func() { defer wg.Done(); toPerson.run() }()
	go func() {
		defer wg.Done()
		s.forwardRequests(fromPerson, personReqs, upEnd, personEnd, toUp, func() {})
	}()
	// The fourth loop runs on the caller's goroutine, which would
	// otherwise only wait.
	s.forwardRequests(fromUpstream, upReqs, personEnd, upEnd, toPerson, exit)
	wg.Wait()
	person.Close()
	up.Close()
	if s.obs != nil {
		s.obs.closed(toUp.bytes(), toPerson.bytes())
	}
}

// channelEnd is one end of a spliced channel. Its replying lock is held
// while a request that arrived on it waits for the other side's answer, and
// closing takes it: a channel must not be closed under a request whose
// reply is still to come (an instance that answers exec and closes at once
// would otherwise race its own reply to the person).
// personChannel is the person's end of a spliced channel. Besides the
// splice, which copies the instance's stderr to it and then sends EOF, the
// bastion writes notices of its own on its stderr (link.say, link.end,
// refusals) from other goroutines. x/crypto does not make those safe
// together: WriteExtended reads the EOF flag CloseWrite sets, and reuses
// one packet buffer per stream, without a lock. So stderr writes and
// CloseWrite take mu. (Data and EOF come from one copier goroutine, in
// order, and need no lock.)
type personChannel struct {
	ssh.Channel
	mu sync.Mutex
}

// personSide returns ch as the person's end of a splice.
func personSide(ch ssh.Channel) ssh.Channel {
	if p, ok := ch.(*personChannel); ok {
		return p
	}
	return &personChannel{Channel: ch}
}

func (p *personChannel) Stderr() io.ReadWriter { return personStderr{p} }

func (p *personChannel) CloseWrite() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Channel.CloseWrite()
}

// personStderr is a personChannel's stderr: reads as they are, writes
// under the channel's mu.
type personStderr struct{ p *personChannel }

func (s personStderr) Read(b []byte) (int, error) { return s.p.Channel.Stderr().Read(b) }

func (s personStderr) Write(b []byte) (int, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.p.Channel.Stderr().Write(b)
}

type channelEnd struct {
	ssh.Channel
	replying sync.Mutex
}

// close closes the end once no reply to it is pending.
func (e *channelEnd) close() {
	e.replying.Lock()
	defer e.replying.Unlock()
	e.Channel.Close()
}

// forwardRequests relays the channel requests of one direction in order.
// exited is called once an exit-status or exit-signal has been sent on, and
// when reqs ends (the sender closed its end); then it waits for that
// direction's data and EOF to be copied and closes the receiving end.
func (s *channelSplice) forwardRequests(dir direction, reqs <-chan *ssh.Request, to, from *channelEnd, c *copier, exited func()) {
	for req := range reqs {
		if ok, msg := s.g.allowRequest(dir, s.typ, req); !ok {
			if dir == fromPerson && (req.Type == reqShell || req.Type == reqExec || req.Type == reqSubsystem) {
				refuseSession(req, from, to, msg)
				continue
			}
			if msg != "" && dir == fromPerson {
				io.WriteString(from.Stderr(), msg+"\r\n")
				if req.Type == reqPTY && req.WantReply {
					// ssh -tt closes the session on a failed pty-req,
					// dropping stderr it has read but not yet written;
					// a round trip first lets it write the reason.
					from.SendRequest(reqKeepalive, true, nil)
				}
			}
			if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		}
		isExit := req.Type == reqExitStatus || req.Type == reqExitSignal
		if isExit {
			// After the last data, before the EOF (which c holds
			// until exited is called, on session channels).
			<-c.drained
		}
		if s.obs != nil {
			// Before sending: a shell's first output may follow its
			// reply at once, and the recorder must exist by then.
			if msg := s.obs.request(dir, req); msg != "" {
				refuseSession(req, from, to, msg)
				continue
			}
		}
		var err error
		if !req.WantReply {
			_, err = to.SendRequest(req.Type, false, req.Payload)
		} else {
			from.replying.Lock()
			var ok bool
			ok, err = to.SendRequest(req.Type, true, req.Payload)
			req.Reply(ok && err == nil, nil)
			from.replying.Unlock()
		}
		if err != nil {
			// The other end closed the channel first; for an exit
			// status, the person's client reports no status.
			lvl := zap.DebugLevel
			if isExit {
				lvl = zap.InfoLevel
			}
			s.log.Log(lvl, "channel_request_relay_failed", zap.String("request", req.Type), zap.Stringer("dir", dir), zap.Error(err))
		}
		if isExit {
			exited()
		}
	}
	exited()
	<-c.done
	to.close()
}

// refuseSession ends a session whose shell, exec or subsystem request the
// guard refused. OpenSSH's client exits at once on a failed request,
// before it prints the stderr that came with it; so the request is
// accepted, and the session then ends with the reason on stderr and exit
// status 1, as a command that failed would. Closing the instance's end of
// the channel ends the splice of the channel.
func refuseSession(req *ssh.Request, person, up *channelEnd, msg string) {
	if req.WantReply {
		req.Reply(true, nil)
	}
	if msg != "" {
		io.WriteString(person.Stderr(), msg+"\r\n")
	}
	person.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{1}))
	up.close()
}

// copier copies one direction of a channel: data and extended data until
// the source's EOF, then EOF (CloseWrite) to the destination. drained is
// closed when both streams are drained, and done once EOF has been passed
// on too. If hold is set, EOF waits for it to be closed.
type copier struct {
	src, dst ssh.Channel
	dir      direction
	obs      channelObserver // may be nil
	stderr   bool            // copy extended data too
	drained  chan struct{}
	hold     <-chan struct{} // may be nil
	done     chan struct{}
	// n counts the bytes of data and of extended data, each written by
	// its own goroutine and read after done.
	n [2]int64
}

func newCopier(src, dst ssh.Channel, dir direction, obs channelObserver, stderr bool) *copier {
	return &copier{src: src, dst: dst, dir: dir, obs: obs, stderr: stderr, drained: make(chan struct{}), done: make(chan struct{})}
}

func (c *copier) run() {
	defer close(c.done)
	var wg sync.WaitGroup
	if c.stderr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// x/crypto delivers extended data of type 1 (stderr) only
			// through Stderr(); other types are dropped by the library.
			c.copy(c.dst.Stderr(), c.src.Stderr(), true)
		}()
	}
	c.copy(c.dst, c.src, false)
	// Extended data may not follow EOF, so wait for stderr too.
	wg.Wait()
	close(c.drained)
	if c.hold != nil {
		<-c.hold
	}
	c.dst.CloseWrite()
}

// bytes returns the payload bytes copied; valid once done is closed.
func (c *copier) bytes() int64 { return c.n[0] + c.n[1] }

// Copy buffers. A copy loop holds its buffer while it waits for data, which
// for an idle interactive session is most of its life; so a loop starts
// with a small buffer and takes a large one from the pool only while reads
// fill the small one (bulk transfer), handing it back once reads are small
// again.
//
// The large buffer is a little under the 32 KiB maximum packet that
// x/crypto and OpenSSH advertise. In ProxyJump the person's side is an
// inner SSH connection carried in a channel of the outer one: a full 32 KiB
// write would make an inner packet of 32 KiB plus its header, padding and
// MAC, which the outer channel must split in two packets; 32 KiB - 256
// keeps each inner packet within one outer packet (half the packets, MACs
// and writes on the outer leg).
const (
	smallBuf = 512
	largeBuf = 32<<10 - 256
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, largeBuf); return &b }}
)

// copy copies src to dst until either fails, showing each chunk to the
// observer before it is written. (ssh.Channel has neither WriteTo nor
// ReadFrom, so io.CopyBuffer would do the same loop.)
func (c *copier) copy(dst io.Writer, src io.Reader, ext bool) {
	idx := 0
	if ext {
		idx = 1
	}
	small := smallPool.Get().(*[]byte)
	defer smallPool.Put(small)
	var large *[]byte
	defer func() {
		if large != nil {
			largePool.Put(large)
		}
	}()
	buf := *small
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c.n[idx] += int64(n)
			if c.obs != nil {
				c.obs.data(c.dir, ext, buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		switch {
		case large == nil && n == len(buf):
			large = largePool.Get().(*[]byte)
			buf = *large
		case large != nil && n < smallBuf:
			largePool.Put(large)
			large = nil
			buf = *small
		}
	}
}
