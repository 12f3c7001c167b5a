package proxy

import (
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
)

// ownSession serves a session channel opened on the bastion itself (`ssh
// bastion`, no target): it explains how to reach a target and exits.
func (c *conn) ownSession(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case reqShell, reqExec:
			req.Reply(true, nil)
			fmt.Fprintf(ch.Stderr(), "bastion: hello %s. Name a target to reach it:\r\n"+
				"  ssh -J <this bastion> ec2-user@web-1\r\n"+
				"  ssh -p <port> ec2-user+web-1@<this bastion>\r\n", c.identity.User)
			ch.SendRequest(reqExitStatus, false, ssh.Marshal(struct{ Status uint32 }{2}))
			ch.CloseWrite()
			// Drain whatever else the client sends until it closes.
			go ssh.DiscardRequests(reqs)
			io.Copy(io.Discard, ch)
			return
		default:
			// pty-req, env, window-change: accepted and ignored.
			if req.WantReply {
				req.Reply(true, nil)
			}
		}
	}
}
