package proxy

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"bastion/audit"
	"bastion/fleet"
)

// Own-session commands on live links.
const (
	cmdSessions = "sessions"
	cmdKill     = "kill"
)

// killRefusal is what a person is told for a kill of a link that does not
// exist and for one they may not end alike, so that ids cannot be probed.
const killRefusal = "no such session of yours"

// controlsSessions reports whether the person is in one of the
// session_control groups, who list and end everyone's links.
func (c *conn) controlsSessions() bool {
	groups := c.srv.currentRules().SessionControl
	id := c.srv.currentRules().Auth.Current(c.identity)
	for _, g := range id.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// visibleLinks returns the live links of this replica the person may see:
// their own, or all of them for session_control groups, oldest first.
func (c *conn) visibleLinks() []fleet.Link {
	all := c.srv.localLinks()
	ctl := c.controlsSessions()
	out := all[:0]
	for _, l := range all {
		if ctl || l.User == c.identity.User {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// sessionsCommand serves `ssh bastion sessions`: a table of the live
// links the person may see.
func (c *conn) sessionsCommand(ch ssh.Channel, nl string) int {
	links := c.visibleLinks()
	var w io.Writer = ch
	if nl != "\n" {
		w = crlfWriter{ch}
	}
	writeSessions(w, links, time.Now())
	c.audit(audit.Event{Type: audit.TypeSessionsListed, By: audit.Clip(c.identity.User), Count: len(links)})
	return 0
}

// writeSessions writes links as a table, every field escaped.
func writeSessions(w io.Writer, links []fleet.Link, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tTARGET\tOS USER\tREPLICA\tSTART\tIDLE\tIN\tOUT\tPTY")
	for _, l := range links {
		pty := "-"
		if l.PTY {
			pty = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", printable(l.ID), printable(l.User), printable(l.Target),
			printable(l.OSUser), printable(l.Replica), l.Start.UTC().Format(time.RFC3339),
			now.Sub(l.LastActive).Truncate(time.Second), l.BytesIn, l.BytesOut, pty)
	}
	tw.Flush()
}

// killCommand serves `ssh bastion kill ID`: it ends the link ID, if it is
// the person's or they are in a session_control group, with a one-line
// reason on the link's sessions.
func (c *conn) killCommand(ch ssh.Channel, arg, nl string) int {
	id := strings.TrimSpace(arg)
	var e *liveEntry
	if id != "" && len(id) <= maxLinkIDLen {
		e = c.srv.localEntry(id)
	}
	if e == nil || (e.user != c.identity.User && !c.controlsSessions()) {
		c.audit(audit.Event{Type: audit.TypeKillRefused, LinkID: audit.Clip(id), By: audit.Clip(c.identity.User), Reason: killRefusal})
		fmt.Fprintf(ch.Stderr(), "bastion: %s%s", killRefusal, nl)
		return 1
	}
	by := "ended by " + c.identity.User
	if e.user != c.identity.User {
		by = "ended by session_control user " + c.identity.User
	}
	// The victim's link is ended in the background: endWith gives the
	// message up to a second to leave, and this command answers at once.
	c.srv.bg.Go(func() { c.srv.endKilled(e, fleet.Kill{LinkID: e.id, By: c.identity.User, Reason: by, At: time.Now()}) })
	fmt.Fprintf(ch, "bastion: ending %s%s", printable(e.id), nl)
	return 0
}
