package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/fleet"
)

// Peers. A replica with fleet.advertise listens there for the other
// replicas of its fleet, for one thing: `watch` of a link it holds, asked
// by a person on another replica. The replicas share the host key, and
// that key is both sides' credential: the peer listener admits only a
// client that proves it holds the host key, and the dialing replica
// accepts only a server that presents it. The replica that took the
// person's command checks that they may watch the link (from the fleet
// listing, as for a local link); the holding replica trusts that check
// from its authenticated peer, streams the link's output and tells the
// watched person.

const (
	// peerWatchChannel is the channel type of a watch between replicas;
	// its extra data is a peerWatch.
	peerWatchChannel = "watch@bastion"
	// peerUser is the user name replicas log in to each other with.
	peerUser = "bastion-peer"
	// maxPeerConns bounds the peer connections a replica serves at once.
	maxPeerConns = 64
	// peerHandshakeTimeout bounds a peer's handshake, and the dial of one.
	peerHandshakeTimeout = 5 * time.Second
)

// peerWatch is the request of a watch between replicas.
type peerWatch struct {
	// ID is the link, By the watching person, Who how the watched person
	// is told of them, Replica the asking replica, NL the watcher's line
	// end.
	ID, By, Who, Replica, NL string
}

// peerServerConfig admits only clients holding the host key.
func (s *Server) peerServerConfig() *ssh.ServerConfig {
	want := string(s.HostKey.PublicKey().Marshal())
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() != peerUser || string(key.Marshal()) != want {
				return nil, errors.New("not a replica of this bastion")
			}
			return &ssh.Permissions{}, nil
		},
		MaxAuthTries: 1,
	}
	cfg.AddHostKey(s.HostKey)
	return cfg
}

// ServePeers serves the other replicas' watch requests on l until the
// server is shut down or closed.
func (s *Server) ServePeers(l net.Listener) error {
	s.init()
	cfg := s.peerServerConfig()
	slots := make(chan struct{}, maxPeerConns)
	return s.acceptLoop(l, func(nc net.Conn) {
		select {
		case slots <- struct{}{}:
		default:
			nc.Close()
			return
		}
		if !s.trackPeer(nc) {
			<-slots
			nc.Close()
			return
		}
		s.bg.Go(func() {
			defer func() { <-slots }()
			defer s.untrackPeer(nc)
			s.servePeer(nc, cfg)
		})
	})
}

// trackPeer adds a peer connection, to be closed with the listeners.
func (s *Server) trackPeer(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.peers == nil {
		s.peers = map[net.Conn]struct{}{}
	}
	s.peers[nc] = struct{}{}
	return true
}

func (s *Server) untrackPeer(nc net.Conn) {
	s.mu.Lock()
	delete(s.peers, nc)
	s.mu.Unlock()
	nc.Close()
}

// servePeer serves one peer connection: watch channels only.
func (s *Server) servePeer(nc net.Conn, cfg *ssh.ServerConfig) {
	nc.SetDeadline(time.Now().Add(peerHandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		s.log().Info("peer_refused", clippedError(err))
		return
	}
	nc.SetDeadline(time.Time{})
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		if nch.ChannelType() != peerWatchChannel {
			nch.Reject(ssh.UnknownChannelType, "only watch")
			continue
		}
		var req peerWatch
		if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil || len(req.ID) > maxLinkIDLen {
			nch.Reject(ssh.ConnectionFailed, "malformed watch request")
			continue
		}
		e := s.localEntry(req.ID)
		switch {
		case e == nil:
			nch.Reject(ssh.ConnectionFailed, watchRefusal)
			continue
		case !e.pty.Load():
			nch.Reject(ssh.ConnectionFailed, "that session has no terminal to watch")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go ssh.DiscardRequests(creqs)
		wg.Go(func() {
			defer ch.Close()
			nl := "\n"
			if req.NL == "\r\n" {
				nl = req.NL
			}
			by := printable(req.By) + "@" + printable(req.Replica)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				// The peer connection ending ends the watch.
				sc.Wait()
				cancel()
			}()
			if why := s.streamWatch(ctx, ch, e, by, printable(req.Who), nl, e.l.audit); why != "" {
				fmt.Fprintf(ch.Stderr(), "bastion: %s%s", why, nl)
			}
		})
	}
}

// dialPeer connects to the replica at addr, proving this replica holds the
// host key and accepting only a server that presents it.
func (s *Server) dialPeer(ctx context.Context, addr string) (*ssh.Client, error) {
	d := net.Dialer{Timeout: peerHandshakeTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dialing replica at %s: %w", addr, err)
	}
	nc.SetDeadline(time.Now().Add(peerHandshakeTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{
		User:              peerUser,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.HostKey)},
		HostKeyCallback:   ssh.FixedHostKey(s.HostKey.PublicKey()),
		HostKeyAlgorithms: []string{s.HostKey.PublicKey().Type()},
		Timeout:           peerHandshakeTimeout,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake with replica at %s: %w", addr, err)
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// watchRemote serves `watch` of l, a link on another replica: it asks
// that replica, through its advertised peer address, to stream the link,
// and passes the stream to the person.
func (c *conn) watchRemote(ch ssh.Channel, l fleet.Link, who, nl string, refuse func(string) int) int {
	if l.Advertise == "" {
		return refuse(fmt.Sprintf("that session runs on replica %s, which does not listen for its peers (fleet.advertise)", printable(l.Replica)))
	}
	pc, err := c.srv.dialPeer(c.ctx, l.Advertise)
	if err != nil {
		c.log.Warn("peer_unreachable", clippedError(err))
		return refuse(fmt.Sprintf("replica %s, which holds that session, could not be reached", printable(l.Replica)))
	}
	defer pc.Close()
	req := peerWatch{ID: l.ID, By: c.identity.User, Who: who, Replica: c.srv.replicaName(), NL: nl}
	pch, reqs, err := pc.OpenChannel(peerWatchChannel, ssh.Marshal(&req))
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return refuse(printable(oce.Message))
		}
		return refuse(fmt.Sprintf("replica %s, which holds that session, could not be asked: %s", printable(l.Replica), printable(err.Error())))
	}
	go ssh.DiscardRequests(reqs)
	start := time.Now()
	c.audit(audit.Event{Type: audit.TypeWatchStart, LinkID: l.ID, By: audit.Clip(c.identity.User), Reason: audit.Clip("held by replica " + l.Replica)})
	// The person's keys go to the holding replica, which ends the watch
	// on Ctrl-C or Ctrl-D; its closing line comes on stderr.
	go func() {
		io.Copy(pch, ch)
		pch.CloseWrite()
	}()
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(ch.Stderr(), pch.Stderr()) })
	sent, _ := io.Copy(ch, pch)
	wg.Wait()
	pch.Close()
	c.audit(audit.Event{Type: audit.TypeWatchEnd, LinkID: l.ID, By: audit.Clip(c.identity.User), BytesDown: sent, DurationMS: time.Since(start).Milliseconds()})
	return 0
}
