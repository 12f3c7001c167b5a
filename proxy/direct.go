package proxy

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"bastion/upstream"
)

// errLoginTooLong refuses a login name longer than upstream.MaxNameLen.
var errLoginTooLong = fmt.Errorf("login name is longer than %d bytes", upstream.MaxNameLen)

// parseDirectUser splits a direct-mode login "osuser+target" (or
// "osuser#target"). '+' and '#' survive the command lines of ssh, scp, sftp
// and rsync, unlike ':' or '@'. ok is false for a login without either (a
// ProxyJump login). A login of either kind longer than upstream.MaxNameLen
// is refused with errLoginTooLong, so that the target part is within the
// cap too.
func parseDirectUser(login string) (osUser, typed string, ok bool, err error) {
	if len(login) > upstream.MaxNameLen {
		return "", "", false, errLoginTooLong
	}
	i := strings.IndexAny(login, "+#")
	if i < 0 {
		return "", "", false, nil
	}
	return login[:i], login[i+1:], true, nil
}

// serveDirect serves a connection whose login names the target: the outer
// connection itself is the person's side of the splice.
func (c *conn) serveDirect(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, osUser, typed string) {
	t, err := c.resolve(typed)
	var up *upstreamConn
	var l *link
	if err == nil {
		if osUser == "" {
			err = &publicError{msg: "no OS user given; log in as user+" + printable(typed)}
		} else {
			up, l, err = c.connectUpstream(t, osUser, "direct")
		}
	}
	if err != nil {
		c.refuse(chans, reqs, fmt.Sprintf("bastion: %s: %s", printable(typed), publicMessage(err)))
		return
	}
	c.runLink(l, func() { splice(l.ctx, peer{conn: c.sc, chans: chans, reqs: reqs}, up.peer, l, l.logger()) })
}
